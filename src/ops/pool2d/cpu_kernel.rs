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
