//! Host kernels for 2-D max and average pooling, one plane (one channel of one image) at a time.
//! The fused conv kernel calls the same plane functions on its output.

use super::{Pool2DGeometry, PoolKind};
use crate::Float;
use rayon::prelude::*;

/// Half-open range of window offsets `k` for which `out * stride + k - pad` lands in `0..n`.
#[inline]
fn window(out: usize, stride: usize, pad: usize, kernel: usize, n: usize) -> (usize, usize) {
    let start = (out * stride) as isize - pad as isize;
    let lo = (-start).max(0) as usize;
    let hi = ((n as isize - start).max(0) as usize).min(kernel);
    (lo.min(hi), hi)
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
    let h = g.input.0;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    for oy in 0..oh {
        let (ky0, ky1) = window(oy, sh, ph, kh, h);
        let iy0 = oy * sh + ky0 - ph;
        for ox in 0..ow {
            let (kx0, kx1) = window(ox, sw, pw, kw, w);
            let ix0 = ox * sw + kx0 - pw;
            let mut best = (iy0 * w + ix0, E::neg_infinity());
            for y in 0..ky1 - ky0 {
                let row = (iy0 + y) * w + ix0;
                for (x, &v) in src[row..][..kx1 - kx0].iter().enumerate() {
                    if beats(v, best.1) {
                        best = (row + x, v);
                    }
                }
            }
            dst[oy * ow + ox] = best.1;
            arg[oy * ow + ox] = (base + best.0) as u32;
        }
    }
}

/// Pools one plane. `src`: (H, W), `dst`: (OH, OW).
pub(crate) fn plane_forward<E: Float>(g: &Pool2DGeometry, src: &[E], dst: &mut [E]) {
    if is_2x2(g) {
        return forward_2x2(g, src, dst);
    }
    let (h, w) = g.input;
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    // PyTorch's count_include_pad: padded zeros count, so the divisor is always the window size.
    let inv = E::one() / E::from_usize(kh * kw).unwrap();
    for oy in 0..oh {
        let (ky0, ky1) = window(oy, sh, ph, kh, h);
        let iy0 = oy * sh + ky0 - ph;
        for ox in 0..ow {
            let (kx0, kx1) = window(ox, sw, pw, kw, w);
            let ix0 = ox * sw + kx0 - pw;
            let v = match g.kind {
                PoolKind::Max => {
                    let mut m = E::neg_infinity();
                    for y in 0..ky1 - ky0 {
                        for &v in &src[(iy0 + y) * w + ix0..][..kx1 - kx0] {
                            if beats(v, m) {
                                m = v;
                            }
                        }
                    }
                    m
                }
                PoolKind::Avg => {
                    let mut s = E::zero();
                    for y in 0..ky1 - ky0 {
                        for &v in &src[(iy0 + y) * w + ix0..][..kx1 - kx0] {
                            s += v;
                        }
                    }
                    s * inv
                }
            };
            dst[oy * ow + ox] = v;
        }
    }
}

/// Adds the gradient of one pooled plane into its input's gradient.
/// `src`: the forward input (H, W) (read for max only), `gout`: (OH, OW), `dsrc`: (H, W).
pub(crate) fn plane_backward<E: Float>(g: &Pool2DGeometry, src: &[E], gout: &[E], dsrc: &mut [E]) {
    if is_2x2(g) {
        return backward_2x2(g, src, gout, dsrc);
    }
    let (h, w) = g.input;
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    let inv = E::one() / E::from_usize(kh * kw).unwrap();
    for oy in 0..oh {
        let (ky0, ky1) = window(oy, sh, ph, kh, h);
        let iy0 = oy * sh + ky0 - ph;
        for ox in 0..ow {
            let (kx0, kx1) = window(ox, sw, pw, kw, w);
            let ix0 = ox * sw + kx0 - pw;
            let go = gout[oy * ow + ox];
            match g.kind {
                PoolKind::Max => {
                    // The gradient goes to the first maximum, as in the forward pass.
                    let mut best = (iy0 * w + ix0, E::neg_infinity());
                    for y in 0..ky1 - ky0 {
                        let row = (iy0 + y) * w + ix0;
                        for (x, &v) in src[row..][..kx1 - kx0].iter().enumerate() {
                            if beats(v, best.1) {
                                best = (row + x, v);
                            }
                        }
                    }
                    dsrc[best.0] += go;
                }
                PoolKind::Avg => {
                    let share = go * inv;
                    for y in 0..ky1 - ky0 {
                        for d in &mut dsrc[(iy0 + y) * w + ix0..][..kx1 - kx0] {
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
            plane_backward(g, src, go, d)
        });
}
