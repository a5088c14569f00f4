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
use crate::size;

pub use crate::fmt::{fmt_dims, fmt_pair};

#[cfg(test)]
pub use layers::LAYERS;

/// The keys of `#[cnn(...)]`, as the "unknown option" error lists them.
pub const OPTIONS: &[&str] = &["input_grad"];

/// Checks every network of the invocation (and the blocks they call).
pub fn net(input: &ast::Input) -> syn::Result<Plan<'_>> {
    let mut errors = Errors::default();
    names::networks(&input.nets, &mut errors);
    let blocks = errors.ok(defs::Blocks::new(&input.blocks));
    // The rows every network may still take: `MAX_INVOCATION_ENTRIES` in all.
    let mut budget = size::MAX_INVOCATION_ENTRIES;
    let nets = match blocks {
        Some(blocks) => input
            .nets
            .iter()
            .filter_map(|net| errors.ok(one_net(net, &blocks, &mut budget)))
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
    if d == 0 {
        return None;
    }
    let span = size::dilated(k, d)?;
    let padded = n.checked_add(p_begin)?.checked_add(p_end)?;
    padded.checked_sub(span)?.checked_div(s)?.checked_add(1)
}

/// Output length along one axis of a transposed convolution:
/// `(n - 1)*s - 2*p + d*(k - 1) + op + 1`. `None` when `k`, `s` or `d` is 0, when `op` is not
/// smaller than `s` or `d` (PyTorch's rule), when the padding removes the whole output, or when
/// the length overflows.
pub fn conv_transpose_out(
    n: usize,
    k: usize,
    s: usize,
    p: usize,
    op: usize,
    d: usize,
) -> Option<usize> {
    if s == 0 || (op >= s && op >= d) {
        return None;
    }
    conv_transpose_full(n, k, s, op, d)?
        .checked_sub(p.checked_mul(2)?)
        .filter(|&out| out > 0)
}

/// `(n - 1)*s + d*(k - 1) + op + 1`: a transposed convolution's output before padding is taken
/// off; `None` when `n`, `k` or `d` is 0 or it overflows.
pub fn conv_transpose_full(n: usize, k: usize, s: usize, op: usize, d: usize) -> Option<usize> {
    if d == 0 {
        return None;
    }
    n.checked_sub(1)?
        .checked_mul(s)?
        .checked_add(size::dilated(k, d)?)?
        .checked_add(op)
}

/// Padding `(begin, end)` of `padding = same` along one axis: the output is `ceil(n / s)`, and
/// an odd total puts the extra row or column at the end (bottom/right), as TensorFlow and Keras.
/// `None` when `s` is 0 or the padded length overflows.
pub fn same_padding(n: usize, k: usize, s: usize, d: usize) -> Option<(usize, usize)> {
    let out = n
        .checked_div(s)?
        .checked_add(usize::from(n.checked_rem(s)? != 0))?;
    let span = size::dilated(k, d)?;
    let total = out
        .saturating_sub(1)
        .checked_mul(s)?
        .checked_add(span)?
        .saturating_sub(n);
    let begin = total / 2;
    Some((begin, total.checked_sub(begin)?))
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The errors of one check, collected so that independent mistakes are reported together
/// (serde_derive's `Ctxt`). Every `Errors` ends in [`finish`](Self::finish) or
/// [`into_error`](Self::into_error), whose result is returned or absorbed into another: one
/// dropped unread would lose its errors silently, so in debug builds (the macro's tests, the
/// fuzz test, and `cargo check` of a crate using it) dropping one unread is a panic, a bug in
/// the macro that every test path would show.
#[derive(Default)]
#[must_use = "errors are reported by `finish` or `into_error`"]
pub struct Errors {
    error: Option<syn::Error>,
    read: bool,
}

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.error {
            Some(all) => all.combine(error),
            None => self.error = Some(error),
        }
    }

    pub fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// Takes in the errors of `other`, which is read.
    pub fn absorb(&mut self, other: Errors) {
        if let Some(error) = other.into_error() {
            self.push(error);
        }
    }

    /// `value`, or every error so far.
    pub fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.into_error() {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }

    /// Every error so far, combined; `None` if there was none.
    pub fn into_error(mut self) -> Option<syn::Error> {
        self.read = true;
        self.error.take()
    }
}

impl Drop for Errors {
    #[allow(clippy::panic)]
    fn drop(&mut self) {
        if cfg!(debug_assertions) && !self.read && !std::thread::panicking() {
            panic!("cnn!: a check's errors were dropped without being read (a bug in the macro)");
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
    /// The receptive field after a window `kernel` (dilated by `dilation`) moved by `stride`;
    /// an overflow is an error at `span` (the layer).
    pub fn through(
        &mut self,
        span: Span,
        kernel: (usize, usize),
        dilation: (usize, usize),
        stride: (usize, usize),
    ) -> syn::Result<()> {
        let Some(f) = self.field else {
            return Ok(());
        };
        let axis = |r: usize, j: usize, k: usize, d: usize, s: usize| {
            let grow = size::dilated(k, d).and_then(|k_eff| k_eff.checked_sub(1)?.checked_mul(j));
            Some((r.checked_add(grow?)?, j.checked_mul(s)?))
        };
        let (Some((rh, jh)), Some((rw, jw))) = (
            axis(f.r.0, f.j.0, kernel.0, dilation.0, stride.0),
            axis(f.r.1, f.j.1, kernel.1, dilation.1, stride.1),
        ) else {
            return Err(error(
                span,
                format!(
                    "the receptive field overflows here: {} pixels with units {} pixels apart, \
                     through kernel {}, dilation {}, stride {}",
                    fmt_pair(f.r),
                    fmt_pair(f.j),
                    fmt_pair(kernel),
                    fmt_pair(dilation),
                    fmt_pair(stride)
                ),
            ));
        };
        self.field = Some(Field2 {
            r: (rh, rw),
            j: (jh, jw),
        });
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// One network

fn one_net<'a>(
    net: &'a ast::Net,
    blocks: &defs::Blocks<'_>,
    budget: &mut usize,
) -> syn::Result<NetPlan<'a>> {
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
    let walked = walk::network(net, blocks, flow, input_grad, *budget);
    *budget = budget.saturating_sub(walked.rows.len());
    errors.absorb(walked.errors);

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
    let total = |what: &str, f: fn(&crate::ir::Row) -> usize| {
        let terms: Vec<usize> = rows.iter().filter(|r| r.depth == 0).map(f).collect();
        size::sum(
            format_args!("the {what} of `{}`", net.ident),
            net.ident.span(),
            &terms,
        )
    };
    let params = errors.ok(total("parameter count", |r| r.params));
    let non_trainable = errors.ok(total("non-trainable parameter count", |r| r.non_trainable));
    let macs = errors.ok(total("multiply-add count", |r| r.macs));
    // The summary adds both kinds of parameters.
    if let (Some(params), Some(non_trainable)) = (params, non_trainable) {
        errors.ok(size::sum(
            format_args!(
                "the parameter count of `{}` with its running statistics",
                net.ident
            ),
            net.ident.span(),
            &[params, non_trainable],
        ));
    }
    errors.finish(())?;
    // (No error, so every one of these is known; `None` only after an error.)
    let (Some(input), Some(output), Some(params), Some(non_trainable), Some(macs)) =
        (input, walked.output, params, non_trainable, macs)
    else {
        return Err(error(net.ident.span(), "the network's shapes are unknown"));
    };
    Ok(NetPlan {
        attrs: &net.attrs,
        vis: &net.vis,
        ident: &net.ident,
        input,
        input_span: net.input.span(),
        output: output.dims(),
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
        // Rule: every dimension is at least 1, and one image fits in a tensor.
        [c, h, w] if c > 0 && h > 0 && w > 0 => {
            size::elements(
                format_args!("the input image {}", fmt_dims(&values)),
                dims.span(),
                &values,
            )?;
            Ok([c, h, w])
        }
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

#[cfg(test)]
mod tests;
