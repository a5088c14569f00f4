//! Shapes and rules: the only place that decides. It reads the syntax tree, works out every
//! expression and argument, walks the shapes from the input to the output through blocks and
//! branches, and returns a [`Plan`] in which every number `expand` writes is already known.
//! Errors point at the user's tokens and quote the numbers.
//!
//! Independent mistakes (an unknown layer, an unknown or duplicated argument, a name used twice)
//! are collected and reported together; the shape walk stops at its first shape error, since
//! every later shape would depend on it (later layers' own arguments are still checked).
//!
//! Where each rule lives:
//! - [`expr`]: expressions and the names in them (block parameters, `C`, `H`, `W`).
//! - [`args`]: reading a layer's arguments: known names, given once, of the right kind.
//! - [`layers`]: the keyword table, each layer's arguments and its shape rule.
//! - [`blocks`]: `residual`/`shortcut`, `concat`, `sum`, `scale`, `repeat`: where shapes meet.
//! - [`defs`]: user blocks: parameters, defaults, calls, recursion, one struct per instance.
//! - [`names`]: fields and checkpoint keys, unique per scope.
//! - [`walk`]: the recursive walk that applies all of them in order, and the summary rows.
//! - [`fuse`]: which layers of one stack run as one fused op.
//! - here: the network itself (options, input shape, declared output) and the size formulas.

mod args;
mod blocks;
mod defs;
mod expr;
mod fuse;
mod layers;
mod names;
mod walk;

use proc_macro2::Span;

use crate::ast::{self};
use crate::ir::{Mode, NetPlan, Plan};

#[cfg(test)]
pub use layers::LAYERS;

/// The keys of `#[cnn(...)]`, as the "unknown option" error lists them.
pub const OPTIONS: &[&str] = &["input_grad"];

/// Checks every network of the invocation (and the blocks they call).
pub fn net(input: &ast::Input) -> syn::Result<Plan<'_>> {
    let mut errors = Errors::default();
    let blocks = errors.ok(defs::Blocks::new(&input.blocks));
    let nets = match blocks {
        Some(blocks) => input
            .nets
            .iter()
            .filter_map(|net| errors.ok(one_net(net, &blocks)))
            .collect(),
        None => Vec::new(),
    };
    errors.finish(Plan { nets })
}

// ---------------------------------------------------------------------------------------------
// Size arithmetic. The library's `src/shape.rs` has the same formulas; both are tested against
// `tests/shape_cases.in`.

/// Output length along one axis of a convolution or pooling window:
/// `(n + p_begin + p_end - (d*(k-1) + 1)) / s + 1`, rounded down (PyTorch's floor mode).
/// `None` when `k`, `s` or `d` is 0 or when the dilated kernel is longer than the padded input
/// (which is exactly when the output would be empty).
pub fn conv_out(
    n: usize,
    k: usize,
    s: usize,
    p_begin: usize,
    p_end: usize,
    d: usize,
) -> Option<usize> {
    if k == 0 || s == 0 || d == 0 {
        return None;
    }
    let span = d.checked_mul(k - 1)?.checked_add(1)?;
    let padded = n.checked_add(p_begin)?.checked_add(p_end)?;
    padded.checked_sub(span).map(|room| room / s + 1)
}

/// Output length along one axis of a transposed convolution:
/// `(n - 1)*s - 2*p + d*(k - 1) + op + 1`. `None` when `k`, `s` or `d` is 0, when `op` is not
/// smaller than `s` or `d` (PyTorch's rule), or when the padding removes the whole output.
pub fn conv_transpose_out(
    n: usize,
    k: usize,
    s: usize,
    p: usize,
    op: usize,
    d: usize,
) -> Option<usize> {
    if n == 0 || k == 0 || s == 0 || d == 0 || (op >= s && op >= d) {
        return None;
    }
    let full = (n - 1)
        .checked_mul(s)?
        .checked_add(d.checked_mul(k - 1)?)?
        .checked_add(op + 1)?;
    full.checked_sub(p.checked_mul(2)?).filter(|&out| out > 0)
}

/// Padding `(begin, end)` of `padding = same` along one axis: the output is `ceil(n / s)`, and
/// an odd total puts the extra row or column at the end (bottom/right), as TensorFlow and Keras.
pub fn same_padding(n: usize, k: usize, s: usize, d: usize) -> (usize, usize) {
    let out = n.div_ceil(s);
    let span = d * (k - 1) + 1;
    let total = ((out - 1) * s + span).saturating_sub(n);
    (total / 2, total - total / 2)
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

pub fn error(span: Span, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, message)
}

// ---------------------------------------------------------------------------------------------
// Shapes and what flows with them

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Image { c: usize, h: usize, w: usize },
    Flat(usize),
}

impl Shape {
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Image { c, h, w } => vec![c, h, w],
            Shape::Flat(n) => vec![n],
        }
    }
}

/// Receptive field `(r_h, r_w)` of one unit and the distance `(j_h, j_w)` between neighbouring
/// units, both in input pixels: `r' = r + (k_eff - 1) * j`, `j' = j * s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field2 {
    pub r: (usize, usize),
    pub j: (usize, usize),
}

/// What flows from one entry to the next.
#[derive(Clone)]
pub struct Flow {
    /// `None` after a shape error: later entries are still read, but no shape is checked.
    pub shape: Option<Shape>,
    /// What made the current channel or feature count, for "differ from the actual" errors.
    pub made_by: String,
    /// The receptive field, `None` once it is not one number (after `flatten`).
    pub field: Option<Field2>,
    /// Whether training and inference differ, from the layers so far.
    pub mode: Mode,
}

impl Flow {
    pub fn through(
        &mut self,
        kernel: (usize, usize),
        dilation: (usize, usize),
        stride: (usize, usize),
    ) {
        let k_eff = |k: usize, d: usize| d * (k - 1) + 1;
        self.field = self.field.map(|f| Field2 {
            r: (
                f.r.0 + (k_eff(kernel.0, dilation.0) - 1) * f.j.0,
                f.r.1 + (k_eff(kernel.1, dilation.1) - 1) * f.j.1,
            ),
            j: (f.j.0 * stride.0, f.j.1 * stride.1),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// One network

fn one_net<'a>(net: &'a ast::Net, blocks: &defs::Blocks<'_>) -> syn::Result<NetPlan<'a>> {
    let mut errors = Errors::default();

    // Rule: the network is not named `E` or `D`, the struct's own type parameters
    // (`LeNet<E = f32, D = Cpu>`): inside the struct and its derives the name would mean the
    // parameter.
    if net.ident == "E" || net.ident == "D" {
        errors.push(error(
            net.ident.span(),
            format!(
                "a network cannot be named `{0}`: `{0}` is a type parameter of the generated \
                 struct (`{0}<E = f32, D = Cpu>`); choose another name",
                net.ident
            ),
        ));
    }

    let options = errors.ok(options(net));
    // The input is one image: `[C, H, W]`, none of them 0.
    let input = errors.ok(input_shape(&net.input));

    let [c, h, w] = input.unwrap_or([1, 1, 1]);
    let flow = Flow {
        shape: input.map(|_| Shape::Image { c, h, w }),
        made_by: format!("the network's input {}", fmt_dims(&[c, h, w])),
        field: Some(Field2 {
            r: (1, 1),
            j: (1, 1),
        }),
        mode: Mode::Same,
    };
    let input_grad = options
        .as_ref()
        .is_none_or(|options| options.no_input_grad.is_none());
    let walked = walk::network(net, blocks, flow, input_grad);
    if let Some(e) = walked.errors.0 {
        errors.push(e);
    }

    // Rule: `input_grad = false` needs a conv2d first, the one layer that can skip its input's
    // gradient.
    if let Some(Options {
        no_input_grad: Some(span),
    }) = options
    {
        if !walked.starts_with_conv {
            errors.push(error(
                span,
                "`input_grad = false` needs conv2d as the first layer, the only layer that can \
                 skip its input's gradient",
            ));
        }
    }

    // Rule: the network's declared output shape is its actual one.
    if let (Some(declared), Some(output)) = (&net.output, &walked.output) {
        if let Some(expected) = errors.ok(dims_values(declared)) {
            if expected != output.dims() {
                errors.push(error(
                    declared.span(),
                    format!(
                        "declared output {} differs from the actual {}",
                        fmt_dims(&expected),
                        fmt_dims(&output.dims())
                    ),
                ));
            }
        }
    }

    let rows = walked.rows;
    let total = |f: fn(&crate::ir::Row) -> usize| {
        rows.iter()
            .filter(|r| r.depth == 0)
            .map(f)
            .try_fold(0usize, usize::checked_add)
    };
    let (Some(params), Some(non_trainable), Some(macs)) = (
        total(|r| r.params),
        total(|r| r.non_trainable),
        total(|r| r.macs),
    ) else {
        return Err(error(
            net.ident.span(),
            "the parameter or multiply-add count overflows usize",
        ));
    };
    errors.finish(())?;
    Ok(NetPlan {
        attrs: &net.attrs,
        vis: &net.vis,
        ident: &net.ident,
        input: input.expect("no error, so the input was read"),
        input_span: net.input.span(),
        output: walked
            .output
            .expect("no error, so the shapes are known")
            .dims(),
        fields: walked.fields,
        scopes: walked.scopes,
        steps: walked.steps,
        rows,
        params,
        non_trainable,
        macs,
        mode: walked.mode,
        input_grad,
    })
}

/// What `#[cnn(...)]` asked for.
struct Options {
    /// Where `input_grad = false` was written, if it was.
    no_input_grad: Option<Span>,
}

fn options(net: &ast::Net) -> syn::Result<Options> {
    let mut errors = Errors::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut no_input_grad = None;
    for option in &net.options {
        let key = option.key.to_string();
        // Rule: every option is one the macro knows, given once.
        if !OPTIONS.contains(&key.as_str()) {
            errors.push(error(
                option.key.span(),
                format!(
                    "unknown option `{key}` in #[cnn(...)]; expected one of: {}",
                    OPTIONS.join(", ")
                ),
            ));
            continue;
        }
        if !seen.insert(key.clone()) {
            errors.push(error(
                option.key.span(),
                format!("duplicate option `{key}`"),
            ));
            continue;
        }
        // `input_grad`, the only option so far.
        match &option.value {
            ast::Expr::Bool(b) if !b.value => no_input_grad = Some(option.key.span()),
            ast::Expr::Bool(_) => {}
            value => errors.push(error(
                value.span(),
                format!("expected `true` or `false` for `{key}`"),
            )),
        }
    }
    errors.finish(Options { no_input_grad })
}

fn input_shape(dims: &ast::Dims) -> syn::Result<[usize; 3]> {
    let values = dims_values(dims)?;
    match values[..] {
        // Rule: every dimension is at least 1.
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        [_, _, _] => Err(error(
            dims.span(),
            format!(
                "input dimensions must be at least 1, not {}",
                fmt_dims(&values)
            ),
        )),
        _ => Err(error(
            dims.span(),
            format!(
                "the input must be one image [C, H, W], not {}",
                fmt_dims(&values)
            ),
        )),
    }
}

fn dims_values(dims: &ast::Dims) -> syn::Result<Vec<usize>> {
    dims.dims.iter().map(|lit| lit.base10_parse()).collect()
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// `[16, 5, 5]`
pub fn fmt_dims(dims: &[usize]) -> String {
    let inner: Vec<_> = dims.iter().map(usize::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// `5` for a square window, `3x5` (height x width) otherwise.
pub fn fmt_pair((h, w): (usize, usize)) -> String {
    if h == w {
        h.to_string()
    } else {
        format!("{h}x{w}")
    }
}

#[cfg(test)]
mod tests;
