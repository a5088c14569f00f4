//! A forward kernel for convolutions of one input channel (a network's first layer on
//! grey-scale images, such as LeNet's `conv2d(6, kernel = 5, padding = 2)` on 28x28), f32 with
//! AVX2 and FMA, stride 1, dilation 1, one group.
//!
//! im2col + gemm writes each image 25 times over (its 5x5 patches) and then multiplies a 6 x 25
//! matrix by them: with one input channel there is nothing to reuse across channels, and in a
//! profile of `infer_sigmoid_b256` im2col and the gemm were 29% of the time. Here the image is
//! copied once into a zero-padded plane and each output row is a sum of `KH * KW` shifted rows
//! of it times a weight: 3 output channels by 32 columns (12 accumulators) at a time, each tap
//! loading 4 input vectors and 3 weights for 12 multiply-adds.

use super::Conv2DGeometry;

/// Output channels per pass over a row (3 x 4 accumulators, 3 weights and 1 input vector in
/// 16 registers).
const CH: usize = 3;
/// Output columns per pass: 4 vectors of 8.
const COLS: usize = 32;

/// Whether `g` runs here for element type `E`: one input channel (one group), stride 1,
/// dilation 1, a kernel of at most 7x7, on a CPU with AVX2 and FMA, f32.
pub(super) fn fits<E: crate::Float>(g: &Conv2DGeometry) -> bool {
    g.in_channels == 1
        && g.groups == 1
        && g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.kernel.0 <= 7
        && g.kernel.1 <= 7
        && super::direct::simd::<E>()
}

/// The zero-padded plane's row length: every pass reads `COLS` values from column `c0 + kj`,
/// `c0` a multiple of `COLS` below the output width, `kj < KW`.
fn padded_width(g: &Conv2DGeometry) -> usize {
    g.output.1.div_ceil(COLS) * COLS + g.kernel.1 - 1
}

/// Length of the scratch [`conv`] needs: the padded plane, and one block of output rows.
pub(super) fn scratch_len(g: &Conv2DGeometry) -> usize {
    (g.output.0 + g.kernel.0 - 1) * padded_width(g) + CH * COLS
}

/// `y` (O, OH, OW) = the convolution of one image `x` (1, H, W) with `w` (O, 1, KH, KW),
/// without bias. `work` holds at least [`scratch_len`] values (overwritten).
///
/// # Panics
/// If `g` does not [`fits`] or a slice is too short.
pub(super) fn conv(g: &Conv2DGeometry, x: &[f32], w: &[f32], y: &mut [f32], work: &mut [f32]) {
    assert!(fits::<f32>(g));
    let (h, wd) = g.input;
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (ph, pw) = g.padding;
    let o_n = g.out_channels;
    assert!(x.len() >= h * wd && w.len() >= o_n * kh * kw && y.len() >= o_n * oh * ow);
    let wp = padded_width(g);
    let rows = oh + kh - 1;
    let (xp, tail) = work.split_at_mut(rows * wp);
    assert!(tail.len() >= CH * COLS);
    // xp[r][c] = xpad[r][c]: the image, zero outside it (and past the columns any output reads)
    for (r, row) in xp.chunks_exact_mut(wp).enumerate() {
        row.fill(0.0);
        let Some(iy) = r.checked_sub(ph).filter(|&iy| iy < h) else {
            continue;
        };
        let (lo, hi) = (pw.min(wp), (pw + wd).min(wp));
        row[lo..hi].copy_from_slice(&x[iy * wd..][..hi - lo]);
    }
    for o0 in (0..o_n).step_by(CH) {
        let chans = (o_n - o0).min(CH);
        for oy in 0..oh {
            for c0 in (0..ow).step_by(COLS) {
                let cols = (ow - c0).min(COLS);
                // SAFETY: the CPU has AVX2 and FMA (`fits`); reads of `xp` stay inside rows
                // `oy .. oy + kh` at columns `c0 + kj .. c0 + kj + COLS <= wp`; `w` holds
                // `o_n * kh * kw` weights (asserted) and only `chans` channels from `o0` are
                // read; `tail` holds CH * COLS values.
                let block = unsafe {
                    block_avx2(
                        xp.as_ptr().add(oy * wp + c0),
                        wp,
                        w.as_ptr().add(o0 * kh * kw),
                        (kh, kw),
                        chans,
                        tail.as_mut_ptr(),
                    );
                    &tail[..CH * COLS]
                };
                for (c, vals) in block.chunks_exact(COLS).take(chans).enumerate() {
                    y[((o0 + c) * oh + oy) * ow + c0..][..cols].copy_from_slice(&vals[..cols]);
                }
            }
        }
    }
}

/// `out[c][j] = sum_{ki, kj} w[c][ki][kj] * x[ki * wp + kj + j]` for `c < chans` (at most
/// [`CH`]) and `j < COLS`.
///
/// # Safety
/// The CPU has AVX2 and FMA; `x` has `kh` rows of `COLS + kw - 1` readable values, `wp`
/// apart; `w` has `chans * kh * kw` readable values; `out` has `CH * COLS` writable values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(
    x: *const f32,
    wp: usize,
    w: *const f32,
    (kh, kw): (usize, usize),
    chans: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract; weights of channels past `chans` are never read (their
    // accumulators take a weight of 0).
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); COLS / 8]; CH];
        for ki in 0..kh {
            for kj in 0..kw {
                let mut wv = [_mm256_setzero_ps(); CH];
                for (c, v) in wv.iter_mut().enumerate().take(chans) {
                    *v = _mm256_broadcast_ss(&*w.add((c * kh + ki) * kw + kj));
                }
                let row = x.add(ki * wp + kj);
                // (index loops: the accumulators are addressed by both indices)
                #[allow(clippy::needless_range_loop)]
                for v in 0..COLS / 8 {
                    let xv = _mm256_loadu_ps(row.add(8 * v));
                    for c in 0..CH {
                        acc[c][v] = _mm256_fmadd_ps(wv[c], xv, acc[c][v]);
                    }
                }
            }
        }
        for (c, a) in acc.iter().enumerate() {
            for (v, &val) in a.iter().enumerate() {
                _mm256_storeu_ps(out.add(c * COLS + 8 * v), val);
            }
        }
    }
}

/// Without AVX2 nothing [`fits`]; this keeps the call sites compiling.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn block_avx2(
    _: *const f32,
    _: usize,
    _: *const f32,
    _: (usize, usize),
    _: usize,
    _: *mut f32,
) {
    unreachable!("one_channel::fits is false without AVX2")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution against its definition (f64), for LeNet's first layer and odd shapes:
    /// widths over 32 and not multiples of 8, channel counts not multiples of 3, paddings
    /// 0 to 3, kernels 1x1 to 7x7.
    #[test]
    fn matches_the_definition() {
        if !super::super::direct::simd::<f32>() {
            return;
        }
        for &(o_n, (h, wd), (kh, kw), (ph, pw)) in &[
            (6, (28, 28), (5, 5), (2, 2)),
            (4, (9, 37), (3, 3), (1, 0)),
            (1, (5, 5), (1, 1), (0, 0)),
            (7, (12, 70), (7, 7), (3, 3)),
            (2, (8, 3), (2, 4), (0, 2)),
        ] {
            let (oh, ow) = (h + 2 * ph - kh + 1, wd + 2 * pw - kw + 1);
            let g = Conv2DGeometry {
                batch: 1,
                in_channels: 1,
                out_channels: o_n,
                groups: 1,
                input: (h, wd),
                output: (oh, ow),
                kernel: (kh, kw),
                stride: (1, 1),
                padding: (ph, pw),
                dilation: (1, 1),
            };
            let x: Vec<f32> = (0..h * wd)
                .map(|i| ((i * 7919) % 13) as f32 - 6.0)
                .collect();
            let w: Vec<f32> = (0..o_n * kh * kw)
                .map(|i| ((i * 104_729) % 11) as f32 * 0.25 - 1.25)
                .collect();
            let mut y = vec![f32::NAN; o_n * oh * ow];
            let mut work = vec![f32::NAN; scratch_len(&g)];
            conv(&g, &x, &w, &mut y, &mut work);
            for o in 0..o_n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0.0f64;
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let (iy, ix) = (oy + ki, ox + kj);
                                if iy < ph || ix < pw || iy - ph >= h || ix - pw >= wd {
                                    continue;
                                }
                                s += f64::from(x[(iy - ph) * wd + ix - pw])
                                    * f64::from(w[(o * kh + ki) * kw + kj]);
                            }
                        }
                        // small integers and quarters: exact in f32
                        let got = y[(o * oh + oy) * ow + ox];
                        assert_eq!(f64::from(got), s, "{g:?} at ({o}, {oy}, {ox})");
                    }
                }
            }
        }
    }
}
