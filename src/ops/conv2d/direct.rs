//! Direct ("implicit gemm") convolution for layers with many output channels: the 3x3 and 1x1
//! convolutions of VGG- and ResNet-style networks.
//!
//! im2col + gemm copies each input value `KH * KW` times into a column buffer, and the gemm
//! crate then packs that buffer once more; for a 32-channel 3x3 layer on 28x28 images that is
//! 0.9 MB written and read twice per image, for a gemm whose M (32 output channels) is too
//! small to hide it. Here the input is copied once, zero-padded, into *phase planes*, and the
//! microkernel reads its operands straight out of them:
//!
//! - With stride `(SH, SW)` the padded input splits into `SH * SW` phase planes,
//!   `plane[a][b][r][q] = xpad[r * SH + a][q * SW + b]`, all `HR x WQ` (for stride 1: the padded
//!   input itself). Tap `(ki, kj)` of output pixel `(oy, ox)` then reads phase
//!   `((ki*DH) % SH, (kj*DW) % SW)` at row `oy + ki*DH / SH`, column `ox + kj*DW / SW`.
//! - Numbering output pixels `p = oy * WQ + ox` (`WQ >= OW`: each row has a few junk pixels,
//!   computed and thrown away), every tap `k = (c, ki, kj)` is one constant offset `off[k]`:
//!   it reads `buf[off[k] + p]`. So 16 consecutive output pixels of one tap are 16
//!   consecutive input values, a plain vector load, for any stride, dilation and padding.
//! - The microkernel keeps a 4 output channels x 16 pixels tile in registers (8 AVX2
//!   vectors) and runs over all `K = C/G * KH * KW` taps: per tap 2 loads, 4 broadcasts of the
//!   weight, 8 FMAs.
//!
//! The same layout gives the weight gradient (`dw[o][k] = sum_p dy[o][p] * buf[off[k] + p]`,
//! with `dy` laid out on the same `p` and zero at the junk pixels), and for stride 1 the input
//! gradient is a direct convolution of `dy` with the flipped, transposed kernel.
//!
//! Layouts (row-major, one image and one group):
//! - `buf`: (C/G, SH, SW, HR, WQ) phase planes, then `NT + WQ` zeros of slack
//! - `wpack`: (ceil(O/G / MR), K, MR), output channels past O/G zero
//! - `yflat`: (ceil(O/G / MR) * MR, NP) with `NP` = `OH * WQ` rounded up to `NT`

use super::Conv2DGeometry;
use crate::Float;

/// Output pixels per microkernel tile: two 8-lane vectors.
pub(super) const NT: usize = 16;
/// 8-lane vectors per tile row.
const NV: usize = NT / 8;
/// Output channels per microkernel tile.
pub(super) const MR: usize = 4;
/// Taps per weight-gradient tile (MR x KB accumulators: 4 x 3 spilled, as 4 x 24 did).
const KB: usize = 2;

/// Whether [`Plan`] should be used for one group's convolution `g`: once a layer has enough
/// output channels to fill the 4-channel tiles, and more than one tap per input channel.
/// Measured on 2 cores (min of 6-8 calls, batch 128): 3x3 stride 1 32 -> 32 channels on
/// 28x28 forward 2x as fast as im2col + gemm, forward + backward 1.6x; 64 -> 64 on 14x14
/// 1.5x / 1.4x; LeNet's 5x5 6 -> 16 faster too; but 1x1 convolutions (a copy for im2col, and
/// only 32-64 taps to spread the tile's overhead over) even or slower, so they keep the gemm.
pub(super) fn worth_it(g: &Conv2DGeometry) -> bool {
    let og = g.out_channels / g.groups;
    og >= 16 && g.kernel.0 * g.kernel.1 > 1
}

/// Whether a layer's weight gradient may run on the direct kernel's planes (then
/// [`weight_grad_worth_it`] decides by image size): from 4 output channels per group, not 16
/// as the forward pass. LeNet's first layer (1 -> 6 channels, 5x5) computed its weight
/// gradient with im2col and a gemm of 6 x 25 outputs over 784 pixels, which the gemm crate
/// runs poorly: a quarter of `train_relu_b256`. On its planes (two 4-channel tiles, a quarter
/// of them padding) the same steps took 12–15% less CPU time in `train_relu_b256`,
/// `train_sigmoid_b256` and `train_sigmoid_b64` (`perf stat`, alternated); `vggbn` and
/// `resnet` unchanged (their layers all have 32+ channels).
pub(super) fn weight_grad_layer(g: &Conv2DGeometry) -> bool {
    let og = g.out_channels / g.groups;
    og >= MR && g.kernel.0 * g.kernel.1 > 1
}

/// Whether the weight gradient should run on the direct kernel's planes too: its tiles sum
/// over the flat pixels and then across the vector's lanes, so on small images (7x7: 64 flat
/// pixels, 8 steps per tile) the horizontal sums dominate and im2col + gemm is faster.
pub(super) fn weight_grad_worth_it(plan: &Plan) -> bool {
    plan.np >= 128
}

/// The layout of one group's input in phase planes, and where each tap reads.
pub(super) struct Plan {
    /// Phase-plane width `WQ` and height `HR`.
    wq: usize,
    hr: usize,
    /// Flat output pixels computed, `OH * WQ` rounded up to [`NT`].
    pub(super) np: usize,
    /// `off[k]` for `k = (c, ki, kj)`: where tap `k` of output pixel 0 reads in the buffer.
    off: Vec<usize>,
    /// The buffer's length: the phase planes and `NT + WQ` zeros of slack for the last tile.
    pub(super) len: usize,
    /// Output channels of the group, and that rounded up to [`MR`].
    og: usize,
    og_pad: usize,
    /// Taps per output channel, `C/G * KH * KW`.
    k: usize,
    /// Whether the AVX2/FMA microkernels run (f32 on a CPU that has them).
    simd: bool,
}

impl Plan {
    /// The plan for one group of `g` (whose batch is ignored).
    pub(super) fn new<E: Float>(g: &Conv2DGeometry) -> Plan {
        let (oh, ow) = g.output;
        let (kh, kw) = g.kernel;
        let (sh, sw) = g.stride;
        let (dh, dw) = g.dilation;
        let cg = g.in_channels / g.groups;
        let og = g.out_channels / g.groups;
        let wq = ow + (kw - 1) * dw / sw;
        let hr = oh + (kh - 1) * dh / sh;
        let ps = hr * wq;
        let np = (oh * wq).div_ceil(NT) * NT;
        let mut off = Vec::with_capacity(cg * kh * kw);
        for c in 0..cg {
            for ki in 0..kh {
                for kj in 0..kw {
                    let (a, b) = ((ki * dh) % sh, (kj * dw) % sw);
                    let plane = ((c * sh + a) * sw + b) * ps;
                    off.push(plane + (ki * dh / sh) * wq + kj * dw / sw);
                }
            }
        }
        // The largest read, `off[k] + np - 1`, stays below `cg * sh * sw * ps + NT + wq`:
        // `off[k] <= plane + (hr - oh) * wq + (wq - ow)` and `np < oh * wq + NT`.
        Plan {
            wq,
            hr,
            np,
            off,
            len: cg * sh * sw * ps + NT + wq,
            og,
            og_pad: og.div_ceil(MR) * MR,
            k: cg * kh * kw,
            simd: simd::<E>(),
        }
    }

    /// Length of a packed weight of one group, (ceil(O/G / MR), K, MR).
    pub(super) fn wpack_len(&self) -> usize {
        self.og_pad * self.k
    }

    /// Length of a flat output of one group, (ceil(O/G / MR) * MR, NP).
    pub(super) fn flat_len(&self) -> usize {
        self.og_pad * self.np
    }

    /// Lays out one group of one image, `x`: (C/G, H, W), in phase planes in `buf` (every
    /// element written: padding and slack are zeros).
    pub(super) fn fill<E: Float>(&self, g: &Conv2DGeometry, x: &[E], buf: &mut [E]) {
        let (h, w) = g.input;
        let (sh, sw) = g.stride;
        let (ph, pw) = g.padding;
        let cg = g.in_channels / g.groups;
        let ps = self.hr * self.wq;
        let (planes, slack) = buf[..self.len].split_at_mut(cg * sh * sw * ps);
        slack.fill(E::zero());
        let mut planes = planes.chunks_exact_mut(ps);
        for src in x.chunks_exact(h * w).take(cg) {
            for a in 0..sh {
                for b in 0..sw {
                    let plane = planes.next().expect("cg * sh * sw planes");
                    let x_off = b as isize - pw as isize;
                    let (lo, hi) = super::cpu_kernel::valid_range(x_off, sw, w, self.wq);
                    let start = (lo as isize * sw as isize + x_off).max(0) as usize;
                    for (r, row) in plane.chunks_exact_mut(self.wq).enumerate() {
                        let iy = (r * sh + a) as isize - ph as isize;
                        if iy < 0 || iy >= h as isize || lo == hi {
                            row.fill(E::zero());
                            continue;
                        }
                        let s = &src[iy as usize * w..][..w];
                        row[..lo].fill(E::zero());
                        row[hi..].fill(E::zero());
                        if sw == 1 {
                            row[lo..hi].copy_from_slice(&s[start..start + hi - lo]);
                        } else {
                            for (i, v) in row[lo..hi].iter_mut().enumerate() {
                                *v = s[start + i * sw];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Packs one group's weight `w`: (O/G, K) into `wpack`: (ceil(O/G / MR), K, MR).
    pub(super) fn pack<E: Float>(&self, w: &[E], wpack: &mut [E]) {
        for (ob, blk) in wpack[..self.wpack_len()]
            .chunks_exact_mut(self.k * MR)
            .enumerate()
        {
            for (k, col) in blk.chunks_exact_mut(MR).enumerate() {
                for (i, v) in col.iter_mut().enumerate() {
                    let o = ob * MR + i;
                    *v = if o < self.og {
                        w[o * self.k + k]
                    } else {
                        E::zero()
                    };
                }
            }
        }
    }

    /// Packs the weight of a convolution's input gradient (stride 1): for `g`'s weight
    /// `w`: (O/G, C/G, KH, KW) of one group, the weight of the convolution that maps `dy` (O/G
    /// channels) to `dx` (C/G channels), `wt[c][o][KH-1-ki][KW-1-kj] = w[o][c][ki][kj]`, packed
    /// for `self` (the plan of [`transposed`]).
    pub(super) fn pack_transposed<E: Float>(&self, g: &Conv2DGeometry, w: &[E], wpack: &mut [E]) {
        let (kh, kw) = g.kernel;
        let (cg, og) = (g.in_channels / g.groups, g.out_channels / g.groups);
        debug_assert_eq!((self.og, self.k), (cg, og * kh * kw));
        for (cb, blk) in wpack[..self.wpack_len()]
            .chunks_exact_mut(self.k * MR)
            .enumerate()
        {
            for (k, col) in blk.chunks_exact_mut(MR).enumerate() {
                let (o, ki, kj) = (k / (kh * kw), k / kw % kh, k % kw);
                for (i, v) in col.iter_mut().enumerate() {
                    let c = cb * MR + i;
                    *v = if c < cg {
                        w[((o * cg + c) * kh + kh - 1 - ki) * kw + kw - 1 - kj]
                    } else {
                        E::zero()
                    };
                }
            }
        }
    }

    /// `yflat`: (ceil(O/G / MR) * MR, NP) = `wpack` * the taps of `buf`.
    pub(super) fn conv<E: Float>(&self, buf: &[E], wpack: &[E], yflat: &mut [E]) {
        assert!(buf.len() >= self.len && wpack.len() >= self.wpack_len());
        assert!(yflat.len() >= self.flat_len());
        let np = self.np;
        let tile = |p0: usize, ob: usize, yflat: &mut [E]| {
            let wb = &wpack[ob * self.k * MR..][..self.k * MR];
            let y = &mut yflat[ob * MR * np + p0..];
            #[cfg(target_arch = "x86_64")]
            if self.simd {
                // SAFETY: `simd` is only set for f32 (so the casts are identities) on a CPU
                // with AVX2 and FMA. Reads: `off[k] + p0 + NT - 1 < len <= buf.len()` (see
                // `new`); `wb` holds K * MR weights; writes: MR rows of NT at stride `np`
                // from `ob * MR * np + p0`, inside `flat_len()`.
                unsafe {
                    conv_tile_avx2(
                        &self.off,
                        (buf.as_ptr() as *const f32).add(p0),
                        wb.as_ptr() as *const f32,
                        y.as_mut_ptr() as *mut f32,
                        np,
                    );
                }
                return;
            }
            conv_tile(&self.off, &buf[p0..], wb, y, np);
        };
        let blocks = self.og_pad / MR;
        // Whichever operand is larger stays put while the smaller one is swept over it: the
        // pixels' taps outside (a tile's K x 16 inputs are reused by every channel block) unless
        // the weight outgrows the input (512 channels on 7x7: 9 MB of weight per tile).
        if self.wpack_len() <= self.len {
            for p0 in (0..np).step_by(NT) {
                (0..blocks).for_each(|ob| tile(p0, ob, yflat));
            }
        } else {
            for ob in 0..blocks {
                (0..np).step_by(NT).for_each(|p0| tile(p0, ob, yflat));
            }
        }
    }

    /// Hands `yflat`'s valid pixels to `f(o, row of y, the same row of yflat)`, for each row of
    /// `y`: (O/G, OH * OW), to write or add them there (with the bias and activation).
    pub(super) fn unflatten<E: Float>(
        &self,
        (oh, ow): (usize, usize),
        yflat: &[E],
        y: &mut [E],
        mut f: impl FnMut(usize, &mut [E], &[E]),
    ) {
        for (o, plane) in y.chunks_exact_mut(oh * ow).take(self.og).enumerate() {
            let src = &yflat[o * self.np..][..self.np];
            for (row, s) in plane.chunks_exact_mut(ow).zip(src.chunks(self.wq)) {
                f(o, row, &s[..ow]);
            }
        }
    }

    /// Lays out one group's output gradient `dy`: (O/G, OH * OW) on the flat pixels: `dyflat`:
    /// (ceil(O/G / MR) * MR, NP), zero at the junk pixels and past O/G.
    pub(super) fn flatten<E: Float>(&self, (oh, ow): (usize, usize), dy: &[E], dyflat: &mut [E]) {
        let dyflat = &mut dyflat[..self.flat_len()];
        dyflat.fill(E::zero());
        for (o, plane) in dy.chunks_exact(oh * ow).take(self.og).enumerate() {
            let dst = &mut dyflat[o * self.np..][..self.np];
            for (row, d) in plane.chunks_exact(ow).zip(dst.chunks_mut(self.wq)) {
                d[..ow].copy_from_slice(row);
            }
        }
    }

    /// `dw`: (O/G, K) += `dyflat` * the taps of `buf` (summed over the pixels).
    pub(super) fn weight_grad<E: Float>(&self, buf: &[E], dyflat: &[E], dw: &mut [E]) {
        assert!(buf.len() >= self.len && dyflat.len() >= self.flat_len());
        assert!(dw.len() >= self.og * self.k);
        let np = self.np;
        for ob in 0..self.og_pad / MR {
            let dy = &dyflat[ob * MR * np..][..MR * np];
            for k0 in (0..self.k).step_by(KB) {
                // The last block may repeat the last tap; its sums are dropped.
                let ks: [usize; KB] = std::array::from_fn(|j| (k0 + j).min(self.k - 1));
                let offs = ks.map(|k| self.off[k]);
                let mut sums = [[E::zero(); KB]; MR];
                #[cfg(target_arch = "x86_64")]
                let done = self.simd && {
                    // SAFETY: f32 only (see `conv`); reads `dy`'s MR rows of `np` and
                    // `buf[offs[j]..offs[j] + np]`, inside `len`; `np` is a multiple of 8.
                    let s = unsafe {
                        dw_tile_avx2(
                            dy.as_ptr() as *const f32,
                            np,
                            offs.map(|o| (buf.as_ptr() as *const f32).add(o)),
                        )
                    };
                    for (d, s) in sums.iter_mut().zip(s) {
                        for (d, s) in d.iter_mut().zip(s) {
                            *d = <E as num_traits::NumCast>::from(s).expect("f32 is E");
                        }
                    }
                    true
                };
                #[cfg(not(target_arch = "x86_64"))]
                let done = false;
                if !done {
                    for (i, row) in dy.chunks_exact(np).enumerate() {
                        for (j, &o) in offs.iter().enumerate() {
                            let x = &buf[o..][..np];
                            sums[i][j] = row.iter().zip(x).fold(E::zero(), |s, (&a, &b)| s + a * b);
                        }
                    }
                }
                for (i, s) in sums.iter().enumerate() {
                    let o = ob * MR + i;
                    if o >= self.og {
                        break;
                    }
                    for (j, &k) in ks.iter().enumerate() {
                        if k0 + j < self.k {
                            dw[o * self.k + k] += s[j];
                        }
                    }
                }
            }
        }
    }
}

/// The geometry of `g`'s input gradient for one group as a convolution (stride 1 only): `dy`
/// (O/G channels, OH x OW) convolved with the flipped, transposed kernel, padded by
/// `DH * (KH - 1) - PH`, gives `dx` (C/G channels, H x W). `None` where that padding would be
/// negative or the stride is not 1.
pub(super) fn transposed(g: &Conv2DGeometry) -> Option<Conv2DGeometry> {
    let (kh, kw) = g.kernel;
    let (dh, dw) = g.dilation;
    let ph = (dh * (kh - 1)).checked_sub(g.padding.0)?;
    let pw = (dw * (kw - 1)).checked_sub(g.padding.1)?;
    (g.stride == (1, 1)).then_some(Conv2DGeometry {
        batch: g.batch,
        in_channels: g.out_channels / g.groups,
        out_channels: g.in_channels / g.groups,
        groups: 1,
        input: g.output,
        output: g.input,
        kernel: g.kernel,
        stride: (1, 1),
        padding: (ph, pw),
        dilation: g.dilation,
    })
}

/// Whether the AVX2/FMA microkernels run for `E` ([`crate::ops::simd`]).
pub(super) fn simd<E: Float>() -> bool {
    crate::ops::simd::<E>()
}

/// The portable microkernel (f64, or a CPU without AVX2): `y[i][p]` for MR rows at stride
/// `ys` and NT pixels = sum over taps `k` of `w[k][i] * x[off[k] + p]`.
pub(super) fn conv_tile<E: Float>(off: &[usize], x: &[E], w: &[E], y: &mut [E], ys: usize) {
    let mut acc = [[E::zero(); NT]; MR];
    for (&o, wk) in off.iter().zip(w.chunks_exact(MR)) {
        let xs = &x[o..][..NT];
        for (a, &wv) in acc.iter_mut().zip(wk) {
            for (a, &xv) in a.iter_mut().zip(xs) {
                *a += wv * xv;
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        y[i * ys..][..NT].copy_from_slice(a);
    }
}

/// [`conv_tile`] for f32 with AVX2 and FMA, the tile in 8 registers. (A 4 x 24 tile in 12
/// registers would do 12 FMAs per 7 loads instead of 8 per 6, but with intrinsics LLVM kept
/// two broadcasts live and spilled an accumulator, a store-to-load chain through the loop
/// that made it slower than im2col + gemm; the same loop in `asm!` measured no better than
/// this one on the benchmark's layers.)
///
/// # Safety
/// The CPU has AVX2 and FMA; `x + off[k] .. + NT` is readable for every `k`; `w` holds
/// `off.len() * MR` values; `y + i * ys .. + NT` is writable for `i < MR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn conv_tile_avx2(
    off: &[usize],
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    ys: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        for (k, &o) in off.iter().enumerate() {
            let p = x.add(o);
            let xv: [__m256; NV] = std::array::from_fn(|j| _mm256_loadu_ps(p.add(8 * j)));
            let wk = w.add(k * MR);
            for (i, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_broadcast_ss(&*wk.add(i));
                for (a, &xv) in a.iter_mut().zip(&xv) {
                    *a = _mm256_fmadd_ps(wv, xv, *a);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            for (j, &a) in a.iter().enumerate() {
                _mm256_storeu_ps(y.add(i * ys + j * 8), a);
            }
        }
    }
}

/// The weight gradient's microkernel: for MR rows of `dy` (stride `np`) and KB taps, the sums
/// over `np` pixels of `dy[i][p] * x[j][p]`.
///
/// # Safety
/// The CPU has AVX2 and FMA; `np` is a multiple of 8; `dy + i * np .. + np` for `i < MR` and
/// `x[j] .. + np` are readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_tile_avx2(dy: *const f32, np: usize, x: [*const f32; KB]) -> [[f32; KB]; MR] {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); KB]; MR];
        for p in (0..np).step_by(8) {
            let xv: [__m256; KB] = std::array::from_fn(|j| _mm256_loadu_ps(x[j].add(p)));
            for (i, a) in acc.iter_mut().enumerate() {
                let d = _mm256_loadu_ps(dy.add(i * np + p));
                for (a, &xv) in a.iter_mut().zip(&xv) {
                    *a = _mm256_fmadd_ps(d, xv, *a);
                }
            }
        }
        let mut out = [[0.0; KB]; MR];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (o, &a) in o.iter_mut().zip(a) {
                let mut lanes = [0.0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), a);
                *o = lanes.iter().sum();
            }
        }
        out
    }
}
