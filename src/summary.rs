//! The layer table of a network, as `Net::summary()` returns it: like torchinfo's or Keras's
//! `summary`, a row per layer and the totals.
//!
//! The `cnn!` macro works every number out at expansion time and writes them as constants; this
//! module only holds and renders them. The same table, as Markdown, is in the generated struct's
//! documentation.
//!
//! ```
//! use cnn::prelude::*;
//! cnn! {
//!     struct Tiny: [1, 8, 8] -> [4] {
//!         conv2d(2, kernel = 3), relu, max_pool2d(kernel = 2),
//!         flatten,
//!         linear(4),
//!     }
//! }
//! let summary = Tiny::summary();
//! assert_eq!(summary.params(), Tiny::PARAMS);
//! assert_eq!(summary.output(), &[4]);
//! assert_eq!(summary.to_string(), "\
//! Tiny: [1, 8, 8] -> [4]
//! layer  kind                  output     params  mult-adds  receptive field
//! -----  --------------------  ---------  ------  ---------  ---------------
//! 0      conv2d(2, kernel=3)   [2, 6, 6]      20        648  3x3
//!        relu                  [2, 6, 6]       0          0  3x3
//!        max_pool2d(kernel=2)  [2, 3, 3]       0          0  4x4
//!        flatten               [18]            0          0  -
//! 4      linear(4)             [4]            76         72  -
//! --------------------------------------------------------------------------
//! params: 96 (trainable 96, non-trainable 0)
//! mult-adds per image: 720
//! output: [4]");
//! ```
//!
//! The params column counts every parameter of the layer, trainable or not; the totals split
//! them.

use std::fmt;

/// The layer table of a network made by `cnn!`; [`Display`](fmt::Display) renders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The network's name, the struct's.
    pub name: &'static str,
    /// The shape of one input image, `[C, H, W]`.
    pub input: &'static [usize],
    /// One row per layer, in order.
    pub rows: &'static [LayerRow],
}

/// One layer of a [`Summary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerRow {
    /// The layer's key in its scope (the network, a block, a group): its name, or its
    /// position (`0`) when unnamed; empty for a stateless layer that was not named, which has
    /// no field.
    pub name: &'static str,
    /// The dotted path of keys from the network (`net.b3.0.conv1`): the prefix of the layer's
    /// checkpoint keys (`net.b3.0.conv1.weight`); empty where `name` is.
    pub path: &'static str,
    /// How deeply the row is nested: 0 for the network's own entries, one more inside each
    /// block, group, repeat or branch construct (whose own row, before its contents, holds
    /// their totals).
    pub depth: usize,
    /// The layer as written in the macro, normalised: `conv2d(6, kernel=5, padding=2)`.
    pub kind: &'static str,
    /// The shape of the layer's output for one image.
    pub output: &'static [usize],
    /// Trainable parameters: what the optimiser updates and `num_trainable_params` counts.
    pub params: usize,
    /// Parameters the optimiser does not update: batch norm's running mean and variance.
    pub non_trainable: usize,
    /// Multiply-adds for one image. A convolution counts
    /// `OUT * OH * OW * (IN / GROUPS) * KH * KW`, a linear layer `IN * OUT`; every other layer
    /// (activations, pooling, batch norm, bias additions) counts 0.
    pub macs: usize,
    /// The receptive field `(height, width)` of one output unit on the input image:
    /// `r_out = r_in + (k_eff - 1) * j_in` and `j_out = j_in * stride` per axis, with
    /// `k_eff = dilation * (kernel - 1) + 1`, starting from `r = j = 1`. Convolutions and
    /// pooling grow it; other layers keep it; `None` from `flatten` on, where every unit sees
    /// the whole image.
    pub receptive_field: Option<(usize, usize)>,
}

impl Summary {
    /// Trainable parameters of the network, the sum of the top-level rows' (the network's
    /// `PARAMS`).
    pub const fn params(&self) -> usize {
        let mut total = 0;
        let mut i = 0;
        while i < self.rows.len() {
            if self.rows[i].depth == 0 {
                total += self.rows[i].params;
            }
            i += 1;
        }
        total
    }

    /// Parameters the optimiser does not update.
    pub const fn non_trainable(&self) -> usize {
        let mut total = 0;
        let mut i = 0;
        while i < self.rows.len() {
            if self.rows[i].depth == 0 {
                total += self.rows[i].non_trainable;
            }
            i += 1;
        }
        total
    }

    /// Multiply-adds for one image (the network's `MACS`).
    pub const fn macs(&self) -> usize {
        let mut total = 0;
        let mut i = 0;
        while i < self.rows.len() {
            if self.rows[i].depth == 0 {
                total += self.rows[i].macs;
            }
            i += 1;
        }
        total
    }

    /// The network's own entries, without what blocks, groups and branches hold (their rows
    /// are one level deeper): what a loop over PyTorch's `nn.Sequential` children would see.
    pub fn top_level(&self) -> impl Iterator<Item = &'static LayerRow> {
        self.rows.iter().filter(|row| row.depth == 0)
    }

    /// The entries directly inside the construct whose row has the dotted `path` (a group, a
    /// block call, a repeat: `"net"`, `"net.b3"`), without what they hold in turn: what a loop
    /// over that PyTorch module's children would see. Empty when no row has that path.
    pub fn inside(&self, path: &str) -> impl Iterator<Item = &'static LayerRow> {
        let rows: &'static [LayerRow] = self.rows;
        let (start, depth) = rows
            .iter()
            .position(|row| row.path == path && !path.is_empty())
            .map_or((rows.len(), 0), |i| (i + 1, rows[i].depth));
        rows[start..]
            .iter()
            .take_while(move |row| row.depth > depth)
            .filter(move |row| row.depth == depth + 1)
    }

    /// The shape of the network's output for one image: the last top-level row's, or the
    /// input's for a network without layers.
    pub const fn output(&self) -> &'static [usize] {
        let mut i = self.rows.len();
        while i > 0 {
            i -= 1;
            if self.rows[i].depth == 0 {
                return self.rows[i].output;
            }
        }
        self.input
    }
}

const HEADERS: [&str; 6] = [
    "layer",
    "kind",
    "output",
    "params",
    "mult-adds",
    "receptive field",
];
/// Which columns are numbers, aligned right.
const RIGHT: [bool; 6] = [false, false, false, true, true, false];

impl fmt::Display for Summary {
    /// An aligned text table: a header line, a row per layer, and the totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} -> {}",
            self.name,
            dims(self.input),
            dims(self.output())
        )?;
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|row| {
                // Nesting shows as indentation of the name and the kind.
                let indent = "  ".repeat(row.depth);
                [
                    format!("{indent}{}", row.name),
                    format!("{indent}{}", row.kind),
                    dims(row.output),
                    thousands(row.params + row.non_trainable),
                    thousands(row.macs),
                    row.receptive_field
                        .map_or_else(|| "-".to_string(), |(h, w)| format!("{h}x{w}")),
                ]
            })
            .collect();
        let mut widths = HEADERS.map(str::len);
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, row: [&str; 6]| -> fmt::Result {
            let mut text = String::new();
            for (i, cell) in row.iter().enumerate() {
                let sep = if i == 0 { "" } else { "  " };
                let width = widths[i];
                if RIGHT[i] {
                    text += &format!("{sep}{cell:>width$}");
                } else {
                    text += &format!("{sep}{cell:<width$}");
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        line(f, HEADERS)?;
        line(
            f,
            widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str),
        )?;
        for row in &cells {
            line(f, row.each_ref().map(String::as_str))?;
        }
        let total_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        writeln!(f, "{}", "-".repeat(total_width))?;
        writeln!(
            f,
            "params: {} (trainable {}, non-trainable {})",
            thousands(self.params() + self.non_trainable()),
            thousands(self.params()),
            thousands(self.non_trainable()),
        )?;
        writeln!(f, "mult-adds per image: {}", thousands(self.macs()))?;
        write!(f, "output: {}", dims(self.output()))
    }
}

/// `[16, 5, 5]`
fn dims(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(usize::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// `61706` -> `61,706`
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: Summary = Summary {
        name: "Tiny",
        input: &[1, 8, 8],
        rows: &[
            LayerRow {
                name: "conv1",
                path: "conv1",
                depth: 0,
                kind: "conv2d(2, kernel=3)",
                output: &[2, 6, 6],
                params: 20,
                non_trainable: 0,
                macs: 648,
                receptive_field: Some((3, 3)),
            },
            LayerRow {
                name: "bn1",
                path: "bn1",
                depth: 0,
                kind: "batch_norm2d",
                output: &[2, 6, 6],
                params: 4,
                non_trainable: 4,
                macs: 0,
                receptive_field: Some((3, 3)),
            },
            LayerRow {
                name: "",
                path: "",
                depth: 0,
                kind: "max_pool2d(kernel=2)",
                output: &[2, 3, 3],
                params: 0,
                non_trainable: 0,
                macs: 0,
                receptive_field: Some((4, 4)),
            },
            LayerRow {
                name: "",
                path: "",
                depth: 0,
                kind: "flatten",
                output: &[18],
                params: 0,
                non_trainable: 0,
                macs: 0,
                receptive_field: None,
            },
            LayerRow {
                name: "linear1",
                path: "linear1",
                depth: 0,
                kind: "linear(4000)",
                output: &[4000],
                params: 76_000,
                non_trainable: 0,
                macs: 72_000,
                receptive_field: None,
            },
        ],
    };

    #[test]
    fn totals() {
        assert_eq!(TINY.params(), 20 + 4 + 76_000);
        assert_eq!(TINY.non_trainable(), 4);
        assert_eq!(TINY.macs(), 648 + 72_000);
        assert_eq!(TINY.output(), &[4000]);
        let empty = Summary {
            name: "Id",
            input: &[3, 2, 2],
            rows: &[],
        };
        assert_eq!(empty.output(), &[3, 2, 2]);
        assert_eq!(empty.params(), 0);
    }

    #[test]
    fn layout() {
        let expected = "\
Tiny: [1, 8, 8] -> [4000]
layer    kind                  output     params  mult-adds  receptive field
-------  --------------------  ---------  ------  ---------  ---------------
conv1    conv2d(2, kernel=3)   [2, 6, 6]      20        648  3x3
bn1      batch_norm2d          [2, 6, 6]       8          0  3x3
         max_pool2d(kernel=2)  [2, 3, 3]       0          0  4x4
         flatten               [18]            0          0  -
linear1  linear(4000)          [4000]     76,000     72,000  -
----------------------------------------------------------------------------
params: 76,028 (trainable 76,024, non-trainable 4)
mult-adds per image: 72,648
output: [4000]";
        assert_eq!(TINY.to_string(), expected);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(61_706), "61,706");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
