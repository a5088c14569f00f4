//! Host kernels for 2-D max and average pooling, one plane (one channel of one image) at a time.
//! The fused conv kernel calls the same plane functions on its output.

use super::{Pool2DGeometry, Pool2DKernel, PoolKind};
use crate::Float;
use crate::ops::buffer::{Buffer, map_for_writing};
use crate::ops::to_host;
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, Tensor, TensorFromVec};
use rayon::prelude::*;

/// Half-open range of window offsets `k` for which `out * stride + k - pad` lands in `0..n`.
#[inline]
fn window(out: usize, stride: usize, pad: usize, kernel: usize, n: usize) -> (usize, usize) {
    let start = (out * stride) as isize - pad as isize;
    let lo = (-start).max(0) as usize;
    let hi = ((n as isize - start).max(0) as usize).min(kernel);
    (lo.min(hi), hi)
}

/// The in-bounds part of output `(oy, ox)`'s window: its first position in the (H, W) plane,
/// its number of rows and its row length (padding is outside, so never read).
#[inline]
fn bounds(g: &Pool2DGeometry, oy: usize, ox: usize) -> (usize, usize, usize) {
    let (h, w) = g.input;
    let (ky0, ky1) = window(oy, g.stride.0, g.padding.0, g.kernel.0, h);
    let (kx0, kx1) = window(ox, g.stride.1, g.padding.1, g.kernel.1, w);
    let start = (oy * g.stride.0 + ky0 - g.padding.0) * w + ox * g.stride.1 + kx0 - g.padding.1;
    (start, ky1 - ky0, kx1 - kx0)
}

/// The first maximum of a window given by [`bounds`], and its position in the plane.
#[inline]
fn window_max<E: Float>(
    src: &[E],
    w: usize,
    (start, rows, cols): (usize, usize, usize),
) -> (usize, E) {
    let mut best = (start, E::neg_infinity());
    for y in 0..rows {
        let row = start + y * w;
        for (x, &v) in src[row..][..cols].iter().enumerate() {
            if beats(v, best.1) {
                best = (row + x, v);
            }
        }
    }
    best
}

/// The window of LeNet, VGG and most CNNs: 2x2, stride 2, no padding. It gets its own loops
/// (a third of the time of the general ones): every window is four in-bounds values.
fn is_2x2(g: &Pool2DGeometry) -> bool {
    g.kernel == (2, 2) && g.stride == (2, 2) && g.padding == (0, 0)
}

/// Whether `new` replaces `old` as a window's maximum: larger, or the first NaN (a NaN anywhere
/// in the window makes its maximum NaN, as in PyTorch). Written without branches so that loops
/// of it vectorise.
#[inline(always)]
fn beats<E: Float>(new: E, old: E) -> bool {
    (new > old) | (new.is_nan() & !old.is_nan())
}

/// The maximum of the 2x2 window `[a, b; c, d]` and its position 0..4 in row-major order (the
/// first maximum, as the general loop finds it).
#[inline(always)]
fn max4<E: Float>(a: E, b: E, c: E, d: E) -> (E, usize) {
    let top = beats(b, a);
    let bottom = beats(d, c);
    let (m1, i1) = if top { (b, 1) } else { (a, 0) };
    let (m2, i2) = if bottom { (d, 3) } else { (c, 2) };
    if beats(m2, m1) { (m2, i2) } else { (m1, i1) }
}

fn forward_2x2<E: Float>(g: &Pool2DGeometry, src: &[E], dst: &mut [E]) {
    let w = g.input.1;
    let (oh, ow) = g.output;
    let quarter = E::from_f64(0.25).unwrap();
    for oy in 0..oh {
        let r0 = &src[2 * oy * w..][..2 * ow];
        let r1 = &src[(2 * oy + 1) * w..][..2 * ow];
        let d = &mut dst[oy * ow..][..ow];
        match g.kind {
            PoolKind::Avg => {
                for (ox, d) in d.iter_mut().enumerate() {
                    *d = (r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1]) * quarter;
                }
            }
            PoolKind::Max => {
                for (ox, d) in d.iter_mut().enumerate() {
                    *d = max4(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]).0;
                }
            }
        }
    }
}

fn backward_2x2<E: Float>(g: &Pool2DGeometry, src: &[E], gout: &[E], dsrc: &mut [E]) {
    let w = g.input.1;
    let (oh, ow) = g.output;
    let quarter = E::from_f64(0.25).unwrap();
    let zero = E::zero();
    for oy in 0..oh {
        let go = &gout[oy * ow..][..ow];
        let (top, bottom) = dsrc[2 * oy * w..].split_at_mut(w);
        let (d0, d1) = (&mut top[..2 * ow], &mut bottom[..2 * ow]);
        match g.kind {
            PoolKind::Avg => {
                for (ox, &go) in go.iter().enumerate() {
                    let share = go * quarter;
                    d0[2 * ox] += share;
                    d0[2 * ox + 1] += share;
                    d1[2 * ox] += share;
                    d1[2 * ox + 1] += share;
                }
            }
            PoolKind::Max => {
                let r0 = &src[2 * oy * w..][..2 * ow];
                let r1 = &src[(2 * oy + 1) * w..][..2 * ow];
                let windows = d0.chunks_exact_mut(2).zip(d1.chunks_exact_mut(2));
                let inputs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
                for (((d0, d1), (r0, r1)), &go) in windows.zip(inputs).zip(go) {
                    let (a, b, c, d) = (r0[0], r0[1], r1[0], r1[1]);
                    let m = max4(a, b, c, d).0;
                    // The first position holding the maximum, as masks: no branches, so the
                    // loop vectorises (a branch on the position is unpredictable).
                    let same = |x: E| (x == m) | (x.is_nan() & m.is_nan());
                    let e0 = same(a);
                    let e1 = same(b) & !e0;
                    let e2 = same(c) & !(e0 | e1);
                    let e3 = !(e0 | e1 | e2);
                    d0[0] += if e0 { go } else { zero };
                    d0[1] += if e1 { go } else { zero };
                    d1[0] += if e2 { go } else { zero };
                    d1[1] += if e3 { go } else { zero };
                }
            }
        }
    }
}

/// Max-pools one plane and records where each maximum came from: `arg[i]` is `base` plus the
/// position of output `i`'s maximum in `src` (H*W row-major). The fused conv saves these
/// instead of its whole activation, and its backward pass scatters through them.
pub(crate) fn plane_max_with_arg<E: Float>(
    g: &Pool2DGeometry,
    src: &[E],
    dst: &mut [E],
    arg: &mut [u32],
    base: usize,
) {
    let w = g.input.1;
    let (oh, ow) = g.output;
    if is_2x2(g) {
        for oy in 0..oh {
            let (r0, r1) = (2 * oy * w, (2 * oy + 1) * w);
            #[cfg(target_arch = "x86_64")]
            if crate::ops::simd::<E>() {
                let (src, dst) = (&src[r0..r0 + w + 2 * ow], &mut dst[oy * ow..][..ow]);
                // SAFETY: `simd` holds only for f32 (the casts are identities) on a CPU with
                // AVX2; `src` holds both input rows' first `2 * ow` values (`2 * ow <= w`),
                // `dst` and `arg` the row's `ow` outputs; indices are `u32`, as in the
                // scalar path.
                unsafe {
                    max_2x2_row_avx2(
                        src.as_ptr().cast(),
                        w,
                        dst.as_mut_ptr().cast(),
                        arg[oy * ow..][..ow].as_mut_ptr(),
                        ow,
                        (base + r0) as u32,
                    )
                };
                continue;
            }
            for ox in 0..ow {
                let at = [r0 + 2 * ox, r0 + 2 * ox + 1, r1 + 2 * ox, r1 + 2 * ox + 1];
                let (m, i) = max4(src[at[0]], src[at[1]], src[at[2]], src[at[3]]);
                dst[oy * ow + ox] = m;
                arg[oy * ow + ox] = (base + at[i]) as u32;
            }
        }
        return;
    }
    for oy in 0..oh {
        for ox in 0..ow {
            let (at, m) = window_max(src, w, bounds(g, oy, ox));
            dst[oy * ow + ox] = m;
            arg[oy * ow + ox] = (base + at) as u32;
        }
    }
}

/// One output row of [`plane_max_with_arg`]'s 2x2 case, 8 windows per step: the input rows
/// `src[0..2n]` and `src[w..w + 2n]`, the maxima into `dst[..n]`, and into `arg[..n]` the
/// index `a0 + offset in src` of each: the first maximum, or the first NaN, as [`max4`]
/// picks. The last step's missing windows are masked off. The scalar loop's branches
/// mispredicted about once per window: a quarter of a LeNet (ReLU, max pool) training step
/// went to this function.
///
/// # Safety
/// The CPU has AVX2; `src[..w + 2n]` is readable, `dst[..n]` and `arg[..n]` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_2x2_row_avx2(
    src: *const f32,
    w: usize,
    dst: *mut f32,
    arg: *mut u32,
    n: usize,
    a0: u32,
) {
    use std::arch::x86_64::*;
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let first = |m: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(m as i32), lane);
    // `new` beats `old` (see `beats`): larger, or the first NaN.
    let beats = |new: __m256, old: __m256| {
        let nan_first = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_UNORD_Q>(new, new),
            _mm256_cmp_ps::<_CMP_ORD_Q>(old, old),
        );
        _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(new, old), nan_first)
    };
    // Even and odd elements of the 16 values `lo ++ hi`, in order.
    let split = |lo: __m256, hi: __m256| {
        let order =
            |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
        (
            order(_mm256_shuffle_ps::<0x88>(lo, hi)),
            order(_mm256_shuffle_ps::<0xDD>(lo, hi)),
        )
    };
    let sel = |m: __m256, a: __m256i, b: __m256i| {
        _mm256_castps_si256(_mm256_blendv_ps(
            _mm256_castsi256_ps(a),
            _mm256_castsi256_ps(b),
            m,
        ))
    };
    for ox in (0..n).step_by(8) {
        let k = (n - ox).min(8);
        let (m_lo, m_hi) = (first(2 * k), first((2 * k).saturating_sub(8)));
        // SAFETY: the masks enable `2k` values from `2 * ox`: inside both rows.
        let (a, b, c, d) = unsafe {
            let r0 = src.add(2 * ox);
            let r1 = r0.add(w);
            let (a, b) = split(
                _mm256_maskload_ps(r0, m_lo),
                _mm256_maskload_ps(r0.add(8), m_hi),
            );
            let (c, d) = split(
                _mm256_maskload_ps(r1, m_lo),
                _mm256_maskload_ps(r1.add(8), m_hi),
            );
            (a, b, c, d)
        };
        // Window j's top-left index: a0 + 2 (ox + j).
        let ia = _mm256_add_epi32(
            _mm256_set1_epi32((a0 as usize + 2 * ox) as i32),
            _mm256_add_epi32(lane, lane),
        );
        let one = _mm256_set1_epi32(1);
        let ic = _mm256_add_epi32(ia, _mm256_set1_epi32(w as i32));
        let top = beats(b, a);
        let (m1, i1) = (
            _mm256_blendv_ps(a, b, top),
            sel(top, ia, _mm256_add_epi32(ia, one)),
        );
        let bottom = beats(d, c);
        let (m2, i2) = (
            _mm256_blendv_ps(c, d, bottom),
            sel(bottom, ic, _mm256_add_epi32(ic, one)),
        );
        let second = beats(m2, m1);
        let out = first(k);
        // SAFETY: the mask enables the row's `k` outputs from `ox`.
        unsafe {
            _mm256_maskstore_ps(dst.add(ox), out, _mm256_blendv_ps(m1, m2, second));
            _mm256_maskstore_epi32(arg.add(ox).cast(), out, sel(second, i1, i2));
        }
    }
}

/// Pools one plane. `src`: (H, W), `dst`: (OH, OW).
pub(crate) fn plane_forward<E: Float>(g: &Pool2DGeometry, src: &[E], dst: &mut [E]) {
    if is_2x2(g) {
        return forward_2x2(g, src, dst);
    }
    let w = g.input.1;
    let (oh, ow) = g.output;
    // PyTorch's count_include_pad: padded zeros count, so the divisor is always the window size.
    let inv = E::one() / E::from_usize(g.kernel.0 * g.kernel.1).unwrap();
    for oy in 0..oh {
        for ox in 0..ow {
            let b @ (start, rows, cols) = bounds(g, oy, ox);
            dst[oy * ow + ox] = match g.kind {
                PoolKind::Max => window_max(src, w, b).1,
                PoolKind::Avg => {
                    let rows = (0..rows).map(|y| &src[start + y * w..][..cols]);
                    rows.flatten().fold(E::zero(), |s, &v| s + v) * inv
                }
            };
        }
    }
}

/// Adds the gradient of one pooled plane into its input's gradient.
/// `src`: the forward input (H, W) (read for max only), `gout`: (OH, OW), `dsrc`: (H, W).
pub(crate) fn plane_backward<E: Float>(g: &Pool2DGeometry, src: &[E], gout: &[E], dsrc: &mut [E]) {
    if is_2x2(g) {
        return backward_2x2(g, src, gout, dsrc);
    }
    let w = g.input.1;
    let (oh, ow) = g.output;
    let inv = E::one() / E::from_usize(g.kernel.0 * g.kernel.1).unwrap();
    for oy in 0..oh {
        for ox in 0..ow {
            let b @ (start, rows, cols) = bounds(g, oy, ox);
            let go = gout[oy * ow + ox];
            match g.kind {
                // The gradient goes to the first maximum, as in the forward pass.
                PoolKind::Max => dsrc[window_max(src, w, b).0] += go,
                PoolKind::Avg => {
                    let share = go * inv;
                    for y in 0..rows {
                        for d in &mut dsrc[start + y * w..][..cols] {
                            *d += share;
                        }
                    }
                }
            }
        }
    }
}

/// Pools `planes` planes: `x`: (planes, H, W) -> `out`: (planes, OH, OW), in parallel.
pub(crate) fn forward<E: Float>(g: &Pool2DGeometry, x: &[E], out: &mut [E]) {
    let (per_in, per_out) = (g.input.0 * g.input.1, g.output.0 * g.output.1);
    out.par_chunks_mut(per_out)
        .zip(x.par_chunks(per_in))
        .with_min_len(16)
        .for_each(|(o, i)| plane_forward(g, i, o));
}

/// Gradient of [`forward`]: adds into `dx`: (planes, H, W).
pub(crate) fn backward<E: Float>(g: &Pool2DGeometry, x: &[E], gout: &[E], dx: &mut [E]) {
    let (per_in, per_out) = (g.input.0 * g.input.1, g.output.0 * g.output.1);
    dx.par_chunks_mut(per_in)
        .zip(gout.par_chunks(per_out))
        .enumerate()
        .with_min_len(16)
        .for_each(|(p, (d, go))| {
            let src = if g.kind == PoolKind::Max {
                &x[p * per_in..][..per_in]
            } else {
                &[][..]
            };
            map_for_writing(d);
            plane_backward(g, src, go, d)
        });
}

/// The input, kept for max pooling (average pooling's gradient does not depend on it).
pub struct CpuPool2DSaved<E: Float>(Buffer<E>);

impl<E: Float> Pool2DKernel<E> for Cpu {
    type Pool2DSaved = CpuPool2DSaved<E>;

    fn pool2d_forward<Sx: Shape, So: Shape>(
        &self,
        geom: &Pool2DGeometry,
        x: &Tensor<Sx, E, Self>,
        out_shape: So,
        save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::Pool2DSaved), Self::Err> {
        let xh = to_host(x);
        // every element is written by the kernel
        let mut out = Buffer::for_overwrite(out_shape.num_elements());
        forward(geom, &xh, &mut out);
        let out = self.try_tensor_from_vec(out.into_vec(), out_shape)?;
        let keep = save && geom.kind == PoolKind::Max;
        Ok((
            out,
            CpuPool2DSaved(if keep { xh } else { Buffer::zeroed(0) }),
        ))
    }

    fn pool2d_backward(
        &self,
        geom: &Pool2DGeometry,
        saved: Self::Pool2DSaved,
        gout: &Self::Vec,
        dx: &mut Self::Vec,
    ) -> Result<(), Self::Err> {
        backward(geom, &saved.0, gout, dx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The 2x2 case with indices (in f32, the AVX2 rows where the CPU has AVX2, with their
    /// masked last step) against the general window loop: the same maxima, bit for bit, and
    /// the same indices, on values drawn from four levels (ties everywhere) with NaNs and
    /// infinities, for rows of 1 to 20 windows and odd widths.
    #[test]
    fn max_2x2_with_indices_matches_the_window_loop() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (h, w) in [(2, 2), (4, 17), (5, 33), (6, 30), (3, 41), (8, 16), (2, 3)] {
            let g = Pool2DGeometry {
                kind: PoolKind::Max,
                input: (h, w),
                output: (h / 2, w / 2),
                kernel: (2, 2),
                stride: (2, 2),
                padding: (0, 0),
            };
            let src: Vec<f32> = (0..h * w)
                .map(|_| match rng.gen_range(0..12) {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    k => (k % 4) as f32,
                })
                .collect();
            let n = (h / 2) * (w / 2);
            let (mut dst, mut arg) = (vec![0.0f32; n], vec![0u32; n]);
            plane_max_with_arg(&g, &src, &mut dst, &mut arg, 1000);
            for oy in 0..h / 2 {
                for ox in 0..w / 2 {
                    let (at, m) = window_max(&src, w, bounds(&g, oy, ox));
                    let i = oy * (w / 2) + ox;
                    assert_eq!(
                        arg[i],
                        1000 + at as u32,
                        "index of window ({oy}, {ox}), {h}x{w}"
                    );
                    assert_eq!(
                        dst[i].to_bits(),
                        m.to_bits(),
                        "window ({oy}, {ox}), {h}x{w}"
                    );
                }
            }
        }
    }
}
