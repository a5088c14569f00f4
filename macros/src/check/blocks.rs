//! Where shapes meet: the rules of `residual`/`shortcut`, `concat`, `sum`, `scale` and
//! `repeat`, and the context an error inside a call or a repetition carries.

use proc_macro2::Span;

use super::expr::{Spanned, Val};
use super::{Shape, conv_out, error, fmt_dims};

/// Rule: a residual's body and shortcut give the same shape (they are added). When the body
/// changes the shape and the shortcut is the identity, say so, and suggest a 1x1 convolution
/// that would fit.
pub fn residual(
    at: Span,
    input: &Shape,
    body: &Shape,
    shortcut: &Shape,
    has_shortcut: bool,
) -> syn::Result<()> {
    if body == shortcut {
        return Ok(());
    }
    if has_shortcut {
        return Err(error(
            at,
            format!(
                "the residual body gives {} but the shortcut gives {}; they are added, so they must agree",
                fmt_dims(&body.dims()),
                fmt_dims(&shortcut.dims())
            ),
        ));
    }
    let mut message = format!(
        "the residual body changes the shape from {} to {}, but the shortcut is the identity \
         (it gives {}); they are added, so they must agree",
        fmt_dims(&input.dims()),
        fmt_dims(&body.dims()),
        fmt_dims(&input.dims()),
    );
    if let Some(fix) = shortcut_fix(input, body) {
        message += &format!(": add `shortcut {{ {fix} }}`");
    }
    Err(error(at, message))
}

/// A 1x1 convolution from `input` to `output`, when one exists.
fn shortcut_fix(input: &Shape, output: &Shape) -> Option<String> {
    let (
        &Shape::Image { h, w, .. },
        &Shape::Image {
            c: oc,
            h: oh,
            w: ow,
        },
    ) = (input, output)
    else {
        return None;
    };
    // The smallest stride s with (n - 1) / s == o - 1: s > (n - 1) / o, so s = (n - 1) / o + 1,
    // which fits when the quotient is right (no table of strides, so no loop over `n`).
    let stride = |n: usize, o: usize| {
        let s = n.checked_sub(1)?.checked_div(o)?.checked_add(1)?;
        (conv_out(n, 1, s, 0, 0, 1) == Some(o)).then_some(s)
    };
    let (sh, sw) = (stride(h, oh)?, stride(w, ow)?);
    Some(match (sh, sw) {
        (1, 1) => format!("conv2d({oc}, kernel = 1)"),
        (s, t) if s == t => format!("conv2d({oc}, kernel = 1, stride = {s})"),
        (s, t) => format!("conv2d({oc}, kernel = 1, stride = ({s}, {t}))"),
    })
}

/// A branch's output, with what names it in errors.
pub struct Branch {
    /// `branch 2` or `branch 2 (`b3`)`.
    pub label: String,
    pub span: Span,
    pub shape: Shape,
}

/// Rule: the branches of a `concat` give images of one height and width (their channels are
/// stacked) or all give vectors (their features are). Returns the stacked shape.
pub fn concat(at: Span, branches: &[Branch]) -> syn::Result<Shape> {
    let Some(first) = branches.first() else {
        return Err(error(at, "concat needs at least two branches"));
    };
    let mut total = 0usize;
    for branch in branches {
        let fits = match (&first.shape, &branch.shape) {
            (Shape::Image { h, w, .. }, Shape::Image { h: bh, w: bw, .. }) => (h, w) == (bh, bw),
            (Shape::Flat(_), Shape::Flat(_)) => true,
            _ => false,
        };
        if !fits {
            let what = match (&first.shape, &branch.shape) {
                (Shape::Image { h, w, .. }, Shape::Image { h: bh, w: bw, .. }) => format!(
                    "{} gives {bh}x{bw} images ({}) but {} gives {h}x{w} ({}); concat stacks \
                     channels, so every branch must give the same height and width",
                    branch.label,
                    fmt_dims(&branch.shape.dims()),
                    first.label,
                    fmt_dims(&first.shape.dims()),
                ),
                _ => format!(
                    "{} gives {} but {} gives {}; concat stacks images with images or vectors with vectors",
                    branch.label,
                    fmt_dims(&branch.shape.dims()),
                    first.label,
                    fmt_dims(&first.shape.dims()),
                ),
            };
            return Err(error(branch.span, what));
        }
        let c = match branch.shape {
            Shape::Image { c, .. } | Shape::Flat(c) => c,
        };
        total = crate::size::sum(
            format_args!("the channel count of `concat` after {}", branch.label),
            branch.span,
            &[total, c],
        )?;
    }
    let shape = match first.shape {
        Shape::Image { h, w, .. } => Shape::Image { c: total, h, w },
        Shape::Flat(_) => Shape::Flat(total),
    };
    // Rule: the stacked output fits in a tensor.
    crate::size::elements(
        format_args!("the output {} of `concat`", fmt_dims(&shape.dims())),
        at,
        &shape.dims(),
    )?;
    Ok(shape)
}

/// Rule: the branches of a `sum` give one shape (they are added).
pub fn sum(at: Span, branches: &[Branch]) -> syn::Result<Shape> {
    let Some((first, rest)) = branches.split_first() else {
        return Err(error(at, "sum needs at least two branches"));
    };
    for branch in rest {
        if branch.shape != first.shape {
            return Err(error(
                branch.span,
                format!(
                    "{} gives {} but {} gives {}; sum adds the branches, so they must agree",
                    branch.label,
                    fmt_dims(&branch.shape.dims()),
                    first.label,
                    fmt_dims(&first.shape.dims()),
                ),
            ));
        }
    }
    Ok(first.shape.clone())
}

/// Rule: `concat` and `sum` have at least two branches.
pub fn at_least_two(at: Span, keyword: &str, count: usize) -> syn::Result<()> {
    if count < 2 {
        return Err(error(
            at,
            format!(
                "{keyword} needs at least two branches, not {count}; write them as `{keyword} {{ identity, {{ ... }} }}`"
            ),
        ));
    }
    Ok(())
}

/// Rule: a `scale` gate gives one value per channel of its input, `[C]` or `[C, 1, 1]` (one
/// per feature, `[N]`, on a vector). Returns whether the gate is `[C, 1, 1]`, to be flattened.
pub fn scale(at: Span, input: &Shape, gate: &Shape) -> syn::Result<bool> {
    match (input, gate) {
        (Shape::Image { c, .. }, Shape::Flat(g)) if g == c => Ok(false),
        (Shape::Image { c, .. }, Shape::Image { c: g, h: 1, w: 1 }) if g == c => Ok(true),
        (Shape::Flat(n), Shape::Flat(g)) if g == n => Ok(false),
        (Shape::Image { c, .. }, _) => Err(error(
            at,
            format!(
                "the scale gate gives {} but must give one value per input channel, [{c}] or [{c}, 1, 1] \
                 (the input is {})",
                fmt_dims(&gate.dims()),
                fmt_dims(&input.dims())
            ),
        )),
        (Shape::Flat(n), _) => Err(error(
            at,
            format!(
                "the scale gate gives {} but must give one value per input feature, [{n}]",
                fmt_dims(&gate.dims())
            ),
        )),
    }
}

/// Rule: a repeat count is an integer, at least 1 and at most `MAX_REPEAT` (see `size`).
pub fn repeat_count(count: &Spanned) -> syn::Result<usize> {
    use crate::size::MAX_REPEAT;
    match count.val {
        Val::Int(n) if n >= 1 => match usize::try_from(n) {
            Ok(n) if n <= MAX_REPEAT => Ok(n),
            _ => Err(error(
                count.span,
                format!(
                    "repeat count {n} is more than {MAX_REPEAT}, the limit (real networks repeat \
                     a block a few dozen times at most)"
                ),
            )),
        },
        Val::Int(n) => Err(error(
            count.span,
            format!("repeat count must be at least 1, not {n}"),
        )),
        ref other => Err(error(
            count.span,
            format!("expected an integer count for repeat, not {other}"),
        )),
    }
}

/// An error inside one repetition, with which one it was and its input.
pub fn in_repetition(
    mut error: syn::Error,
    at: Span,
    i: usize,
    n: usize,
    input: &Option<Shape>,
) -> syn::Error {
    let input = input
        .as_ref()
        .map_or_else(String::new, |s| format!(" (input {})", fmt_dims(&s.dims())));
    error.combine(syn::Error::new(
        at,
        format!("in repetition {} of {n}{input}", crate::size::ordinal(i)),
    ));
    error
}

/// An error inside a block's body, with the call it was checked for.
pub fn in_call(mut error: syn::Error, at: Span, call: &str, input: &Option<Shape>) -> syn::Error {
    let input = input.as_ref().map_or_else(String::new, |s| {
        format!(" on input {}", fmt_dims(&s.dims()))
    });
    error.combine(syn::Error::new(
        at,
        format!("in this call, `{call}`{input}"),
    ));
    error
}
