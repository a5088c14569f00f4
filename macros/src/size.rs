//! Checked arithmetic and the limits of what the macro accepts: the one place where the macro
//! computes with sizes. Every sum and product of sizes goes through here, so an overflow is an
//! error at the user's tokens naming the quantity and its numbers, in debug and release builds
//! of the macro alike (the crate's clippy lints refuse bare `+ - * /` on integers elsewhere).
//!
//! The limits bound the macro's own time, memory and stack (and rustc's recursion) on any
//! input; each is far above any real network, and each is reported as a spanned error.

use std::fmt::Display;

use proc_macro2::Span;

fn error(span: Span, message: String) -> syn::Error {
    syn::Error::new(span, message)
}

/// The most elements one tensor may have, per image and for a weight: a tensor's buffer is at
/// most `isize::MAX` bytes (Rust's limit on one allocation), and an element is at most 8 bytes
/// (`f64`). A network past it could never be built, and the library's own size arithmetic
/// (`C * H * W` in const asserts) could overflow.
pub const MAX_ELEMENTS: usize = (isize::MAX as usize) / 8;

/// The most rows one network's summary may have: its layers, block calls, groups, constructs
/// and the copies of repeats, as expanded. The largest torchvision classifiers have under 1,000
/// layers; this is ten times that. It bounds the
/// macro's time and memory on `repeat(100000) { relu }` or blocks that call each other 2^20
/// times, and the size of the generated code.
pub const MAX_ENTRIES: usize = 10_000;

/// The most rows all the networks of one invocation may have together: five networks at
/// [`MAX_ENTRIES`] (a crate holding many large networks writes them in several invocations).
/// Without it, a thousand short networks each calling a block that fans out would each be
/// within their own limit, and together exhaust memory.
pub const MAX_INVOCATION_ENTRIES: usize = 5 * MAX_ENTRIES;

/// The largest `repeat(n)` count. Real networks repeat a block a few dozen times at most
/// (DenseNet's largest dense block has 48 layers); a larger count is an error at its tokens,
/// before any copy is walked.
pub const MAX_REPEAT: usize = 1_000;

/// The deepest nesting of groups, block calls, repeats and the other constructs, counted as
/// expanded (a block's body is one level inside its call, a named repeat's copies two). Real
/// networks nest 3 to 6 levels (torchvision's EfficientNet: `features.1.0.block.0.0`). The
/// bound keeps the macro's recursion within its stack, and the generated structs (each level a
/// struct holding the next) well under rustc's default recursion limit of 128.
pub const MAX_DEPTH: usize = 32;

/// The deepest nesting of brackets (`{}`, `()`, `[]`) in an invocation, checked on the tokens
/// before anything is parsed: every later stage recurses at most this deep. Twice
/// [`MAX_DEPTH`], since one level of a network can take two brackets (`{ conv2d((3, 3)) }`).
pub const MAX_BRACKETS: usize = 2 * MAX_DEPTH;

/// The most operators and parentheses in one expression (`(c.0 + c.1) * 2` has 3). It bounds
/// the depth of the expression's tree, which is walked recursively.
pub const MAX_EXPR_OPS: usize = 64;

/// `a x b x c` for an error message.
fn join(numbers: &[usize], sep: &str) -> String {
    numbers
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// The product of `factors`, or an error at `span`: "`what` overflows: a x b x c".
pub fn product(what: impl Display, span: Span, factors: &[usize]) -> syn::Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            error(
                span,
                format!(
                    "{what} overflows: {} is more than usize holds",
                    join(factors, " x ")
                ),
            )
        })
}

/// The sum of `terms`, or an error at `span`: "`what` overflows: a + b".
pub fn sum(what: impl Display, span: Span, terms: &[usize]) -> syn::Result<usize> {
    terms
        .iter()
        .try_fold(0usize, |acc, &t| acc.checked_add(t))
        .ok_or_else(|| {
            error(
                span,
                format!(
                    "{what} overflows: {} is more than usize holds",
                    join(terms, " + ")
                ),
            )
        })
}

/// The number of elements of a tensor of shape `dims`, at most [`MAX_ELEMENTS`].
pub fn elements(what: impl Display, span: Span, dims: &[usize]) -> syn::Result<usize> {
    let n = dims.iter().try_fold(1usize, |acc, &f| acc.checked_mul(f));
    match n {
        Some(n) if n <= MAX_ELEMENTS => Ok(n),
        _ => Err(error(
            span,
            format!(
                "{what} has {} elements, more than a tensor can hold ({MAX_ELEMENTS}: \
                 isize::MAX bytes of 8-byte elements)",
                match n {
                    Some(n) => n.to_string(),
                    None => format!("{} (more than usize holds)", join(dims, " x ")),
                }
            ),
        )),
    }
}

/// `d * (k - 1) + 1`, the extent of a dilated kernel; `None` when `k` is 0 or it overflows.
pub fn dilated(k: usize, d: usize) -> Option<usize> {
    d.checked_mul(k.checked_sub(1)?)?.checked_add(1)
}

/// `n / g`, for a count split into `g` groups (checked to be at least 1 and to divide it); 0 if
/// `g` is 0.
pub fn per_group(n: usize, g: usize) -> usize {
    n.checked_div(g).unwrap_or(0)
}

/// The largest of adaptive average pooling's windows along one axis of length `n` split into
/// `o` cells (PyTorch's: cell `i` takes `floor(i*n/o) .. ceil((i+1)*n/o)`), without a table of
/// them: cell `i` spans `ceil(f_i + n/o)` where `f_i` is the fractional part of `i*n/o`, which
/// is at most `(o - gcd(n, o)) / o`; so the largest is `ceil((n + o - gcd(n, o)) / o)`. 1 when
/// `o` is 0 or it overflows (it cannot for `o <= n <= MAX_ELEMENTS`).
pub fn adaptive_window(n: usize, o: usize) -> usize {
    let (mut a, mut b) = (n, o);
    while let Some(r) = a.checked_rem(b) {
        (a, b) = (b, r);
    }
    // (`a` is now gcd(n, o).)
    n.checked_add(o)
        .and_then(|t| t.checked_sub(a))
        .and_then(|t| t.checked_add(o.checked_sub(1)?))
        .and_then(|t| t.checked_div(o))
        .unwrap_or(1)
}

/// `n + 1` for messages that count from 1 ("repetition 3 of 4"); never overflows an index.
pub fn ordinal(i: usize) -> usize {
    i.saturating_add(1)
}
