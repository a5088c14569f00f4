//! Output-size formulas, one line each, as `const fn`s.
//!
//! The layers use them in const assertions, so a hand-written stack with a wrong declared size
//! fails to compile. The `cnn!` macro carries its own copy of the same arithmetic (a proc macro
//! cannot call into the crate it expands for); `tests/shape.rs` checks both against shared tables,
//! `tests/shape_cases.in` and `tests/conv_transpose_cases.in`.
//!
//! All sizes are per axis and use floor division, as PyTorch does.

/// Output size of a convolution or pooling window sliding over `n` positions:
/// `(n + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride + 1`.
///
/// Returns 0 where the (dilated) kernel does not fit the padded input or where `stride`,
/// `kernel` or `dilation` is 0: no layer has an output of size 0, so 0 means "impossible".
pub const fn conv_out(
    n: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
) -> usize {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return 0;
    }
    let padded = n + pad_begin + pad_end;
    let span = dilation * (kernel - 1) + 1;
    if span > padded {
        return 0;
    }
    (padded - span) / stride + 1
}

/// Output size of a pooling window (PyTorch's floor mode, dilation 1):
/// `(n + 2 * padding - kernel) / stride + 1`, or 0 where it cannot work.
pub const fn pool_out(n: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    conv_out(n, kernel, stride, padding, padding, 1)
}

/// Output size of a transposed convolution:
/// `(n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1`, or 0 where
/// it cannot work (the padding removes everything, or `output_padding` is not smaller than
/// `stride` or `dilation`, as PyTorch requires).
pub const fn conv_transpose_out(
    n: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
    dilation: usize,
) -> usize {
    if n == 0 || kernel == 0 || stride == 0 || dilation == 0 {
        return 0;
    }
    if output_padding >= stride && output_padding >= dilation {
        return 0;
    }
    let full = (n - 1) * stride + dilation * (kernel - 1) + output_padding + 1;
    if 2 * padding >= full {
        return 0;
    }
    full - 2 * padding
}

/// Total padding `(begin, end)` that makes a convolution's output `ceil(n / stride)` long
/// (TensorFlow's and Keras's `padding = "same"`): the odd one goes at the end (bottom/right).
pub const fn same_padding(
    n: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> (usize, usize) {
    if stride == 0 {
        return (0, 0);
    }
    let out = n.div_ceil(stride);
    let span = dilation * (kernel.saturating_sub(1)) + 1;
    let needed = (out.saturating_sub(1)) * stride + span;
    let total = needed.saturating_sub(n);
    (total / 2, total - total / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d2l_6_3_examples() {
        // d2l 6.3: 8x8, kernel 3, padding 1 -> 8x8
        assert_eq!(conv_out(8, 3, 1, 1, 1, 1), 8);
        // kernel (5, 3), padding (2, 1) -> 8x8
        assert_eq!(conv_out(8, 5, 1, 2, 2, 1), 8);
        assert_eq!(conv_out(8, 3, 1, 1, 1, 1), 8);
        // kernel 3, padding 1, stride 2 -> 4x4
        assert_eq!(conv_out(8, 3, 2, 1, 1, 1), 4);
        // kernel (3, 5), padding (0, 1), stride (3, 4) -> 2x2
        assert_eq!(conv_out(8, 3, 3, 0, 0, 1), 2);
        assert_eq!(conv_out(8, 5, 4, 1, 1, 1), 2);
    }

    #[test]
    fn impossible_is_zero() {
        assert_eq!(conv_out(4, 5, 1, 0, 0, 1), 0);
        assert_eq!(conv_out(4, 3, 1, 0, 0, 2), 0); // dilated span 5 > 4
        assert_eq!(conv_out(4, 3, 0, 0, 0, 1), 0);
        assert_eq!(pool_out(4, 0, 1, 0), 0);
    }

    #[test]
    fn same_padding_gives_ceil() {
        for n in 1..20 {
            for k in 1..6 {
                for s in 1..4 {
                    let (b, e) = same_padding(n, k, s, 1);
                    assert!(e == b || e == b + 1);
                    assert_eq!(
                        conv_out(n, k, s, b, e, 1),
                        n.div_ceil(s),
                        "n={n} k={k} s={s}"
                    );
                }
            }
        }
    }

    #[test]
    fn transposed() {
        // d2l 14.10: 2x2 input, 2x2 kernel -> 3x3; stride 2 -> 4x4
        assert_eq!(conv_transpose_out(2, 2, 1, 0, 0, 1), 3);
        assert_eq!(conv_transpose_out(2, 2, 2, 0, 0, 1), 4);
        // PyTorch: 5x5, kernel 3, stride 2, padding 1, output_padding 1 -> 10x10
        assert_eq!(conv_transpose_out(5, 3, 2, 1, 1, 1), 10);
    }
}
