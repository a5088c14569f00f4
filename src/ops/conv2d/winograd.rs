//! Winograd minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2015) for 3x3 convolutions at stride 1: the forward pass, the input gradient,
//! which at stride 1 is itself a 3x3 stride-1 convolution of `dy` with the flipped, transposed
//! kernel (see [`direct::transposed`]), and the weight gradient ([`Wino::weight_grad`]: the
//! same tiles, the products summed over tiles instead of channels).
//!
//! F(m x m, 3 x 3) computes an `m x m` output tile from an `a x a` input tile (`a = m + 2`) as
//! `Y = A^T [ (G g G^T) . (B^T d B) ] A`: the `a * a` element-wise products replace
//! `9 * m * m` multiply-adds. Summed over the input channels, each of the `a * a` positions is
//! one matrix product, `M[pos] = U[pos] * V[pos]`, with
//! - `U[pos]`: (O, C), the transformed filter, once per call,
//! - `V[pos]`: (C, T), the transformed input tiles of a block of `T` tiles,
//! - `M[pos]`: (O, T), transformed back by `A` into the output.
//!
//! F(2x2) does 16 products per 4 outputs (2.25x fewer than 3x3's 9 each), F(4x4) 36 per 16
//! (4x fewer), at the price of larger transforms and larger rounding error (its transforms
//! hold factors up to 8 and 1/24). See [`worth_it`] for which runs where.
//!
//! The products run on the direct kernel's AVX2 microkernel ([`direct::conv_tile_avx2`]): it
//! computes `y[i][p] = sum_k w[k][i] * x[off[k] + p]` for 4 rows and 16 columns, which is
//! `M[pos] = U[pos] * V[pos]` with `off[c] = c * T` and `U[pos]` packed as (O/4, C, 4).
//!
//! The transforms are vectorised over tiles: each (image, channel) plane is copied, zero
//! padded, into `m` phase planes `P[a][r][q] = xpad[r][m * q + a]`, so the `j`-th column of
//! tile `tx` is `P[j % m][r][tx + j / m]`, contiguous over `tx`. The column transform then runs
//! over whole planes, the row transform over runs of tiles.
//!
//! Layouts (row-major), for one group (`groups == 1`):
//! - `u`: (a*a, ceil(O/4), C, 4), output channels past O zero
//! - `v`: (a*a, C, TB); `mm`: (a*a, ceil(O/4)*4, TB); `TB` = `Wino::tb`, a block's tiles
//!   rounded up to 16, and 16 more
//! - tile `t` of a block: tile rows `(image, ty)` in order, `ntx` tiles each; past the last
//!   row, junk columns (computed and thrown away)
//! - `p`: (m, HP, NTX + 1) phase planes of one channel; `s`: (a, HP, NTX + 1) after the column
//!   transform, `HP = m * (tile rows) + 2`

use super::Activation;
use super::Conv2DGeometry;
use super::cpu_kernel::{bias_act_into, copy_short};
use super::direct::{self, MR, NT};
use crate::Float;
use crate::ops::{as_f32, as_f32_mut};
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};

/// The matrices of one F(m x m, 3 x 3), row-major.
#[cfg_attr(not(test), allow(dead_code))] // `bt` and `at` are written out in `Kind`'s impls
pub(super) struct Transform {
    /// Output tile side `m`.
    m: usize,
    /// Input tile side `a = m + 2`.
    a: usize,
    /// `B^T`: (a, a).
    bt: &'static [f64],
    /// `G`: (a, 3).
    g: &'static [f64],
    /// `A^T`: (m, a).
    at: &'static [f64],
}

/// F(2x2, 3x3), interpolation points 0, 1, -1 and infinity.
pub(super) const F2: Transform = Transform {
    m: 2,
    a: 4,
    #[rustfmt::skip]
    bt: &[
        1.0, 0.0, -1.0, 0.0,
        0.0, 1.0, 1.0, 0.0,
        0.0, -1.0, 1.0, 0.0,
        0.0, 1.0, 0.0, -1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

/// F(4x4, 3x3), interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray's).
pub(super) const F4: Transform = Transform {
    m: 4,
    a: 6,
    #[rustfmt::skip]
    bt: &[
        4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
        0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
        0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
        0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
        0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0 / 4.0, 0.0, 0.0,
        -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
        -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
        1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
        1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
};

/// Whether `g` can run on Winograd at all: a 3x3 kernel at stride 1 and dilation 1, one group.
fn fits(g: &Conv2DGeometry) -> bool {
    g.kernel == (3, 3) && g.stride == (1, 1) && g.dilation == (1, 1) && g.groups == 1
}

/// `CNN_WINOGRAD`, read once: `off` keeps every layer on the direct kernel, `f2` or `f4`
/// forces that transform wherever Winograd applies; unset: [`worth_it`]'s rule (anything
/// else warns once on stderr and keeps the rule). For measuring one against the other in the
/// same build.
static CHOICE: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 0;
const AUTO: u8 = 1;
const OFF: u8 = 2;
const FORCE_F2: u8 = 3;
const FORCE_F4: u8 = 4;

fn choice() -> u8 {
    match CHOICE.load(Ordering::Relaxed) {
        UNSET => {
            let c = match std::env::var("CNN_WINOGRAD").as_deref() {
                Ok("off") => OFF,
                Ok("f2") => FORCE_F2,
                Ok("f4") => FORCE_F4,
                Err(std::env::VarError::NotPresent) => AUTO,
                Ok(other) => {
                    // A typo must not pass for a measurement of the path it meant.
                    eprintln!(
                        "warning: CNN_WINOGRAD={other:?} is not one of off, f2, f4; \
                         Winograd is chosen per layer as usual"
                    );
                    AUTO
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    eprintln!(
                        "warning: CNN_WINOGRAD is not UTF-8, so not one of off, f2, f4; \
                         Winograd is chosen per layer as usual"
                    );
                    AUTO
                }
            };
            CHOICE.store(c, Ordering::Relaxed);
            c
        }
        c => c,
    }
}

/// The transform [`Wino`] should use for `g` (forward, or the input gradient's
/// [`direct::transposed`] geometry), or `None` where the direct kernel is as fast or Winograd
/// does not apply. Only f32 with AVX2 and FMA runs it (f64 keeps the direct kernel).
///
/// Measured on the 2-core development machine (`tests::timing`: f32, padding 1, all threads,
/// median of 9 alternated calls, ms; busy machine, so +-10%):
///
/// | layer | batch | forward: direct / F2 / F4 | input gradient: direct / F2 / F4 |
/// |---|---|---|---|
/// | 32 -> 32, 28x28 | 128 | 23.6 / 19.1 / 16.5 | 24.0 / 21.7 / 19.5 |
/// | 32 -> 64, 14x14 | 128 | 11.4 / 9.2 / 12.0 | 12.8 / 12.0 / 17.9 |
/// | 64 -> 64, 14x14 | 128 | 26.4 / 18.8 / 23.3 | 25.2 / 20.2 / 26.9 |
/// | 16 -> 16, 28x28 | 128 | 6.2 / 6.6 / 6.0 | 6.5 / 7.6 / 6.4 |
/// | 3 -> 32, 28x28 | 128 | 1.7 / 7.7 / 7.6 | 4.1 / 8.6 / 8.5 |
/// | 64 -> 64, 24x24 | 32 | 16.0 / 14.5 / 11.1 | 17.9 / 13.1 / 10.1 |
/// | 128 -> 128, 12x12 | 32 | 21.2 / 12.0 / 13.5 | 19.0 / 10.7 / 13.4 |
/// | 256 -> 256, 6x6 | 32 | 18.1 / 15.9 / 33.3 | 19.5 / 15.4 / 32.2 |
/// | 512 -> 512, 3x3 | 32 | 27.3 / 40.8 / 86.3 | 37.7 / 36.2 / 76.8 |
/// | 128 -> 128, 7x7 | 32 | 6.3 / 5.4 / 7.9 | 6.6 / 5.4 / 7.9 |
/// | 256 -> 256, 7x7 | 32 | 26.1 / 21.7 / 33.4 | 31.4 / 31.7 / 36.0 |
/// | 512 -> 512, 7x7 | 32 | 108.9 / 98.6 / 93.6 | 110.7 / 80.0 / 103.3 |
/// | 256 -> 256, 14x14 | 32 | 98.0 / 56.0 / 70.6 | 95.7 / 60.4 / 68.8 |
/// | 128 -> 128, 28x28 | 32 | 89.2 / 58.3 / 42.2 | 90.3 / 58.5 / 43.5 |
///
/// Hence: F(4x4) from 20x20 outputs up (its 4x4 tiles waste little there; on 14x14 they
/// compute 16x16), F(2x2) below, nothing for 3x3 outputs (a 4x4 tile for 9 values) or where
/// the channels are few (16 -> 16: even; 3 -> 32: the products have K = 3).
pub(super) fn worth_it<E: Float>(g: &Conv2DGeometry) -> Option<&'static Transform> {
    if !(fits(g) && direct::simd::<E>()) {
        return None;
    }
    let (c, o) = (g.in_channels, g.out_channels);
    let (oh, ow) = g.output;
    match choice() {
        OFF => None,
        FORCE_F2 => Some(&F2),
        FORCE_F4 => Some(&F4),
        _ if c.min(o) < 16 || c.max(o) < 32 || oh * ow < 16 => None,
        _ if oh >= 20 && ow >= 20 => Some(&F4),
        _ => Some(&F2),
    }
}

/// What [`Wino::run`] does with each output value.
#[derive(Clone, Copy)]
pub(super) enum Finish<'a, E> {
    /// Adds it into the output (the input gradient).
    Add,
    /// Writes `act(value + bias[o])` (the forward pass, fused as the direct kernel's is).
    Set {
        /// The bias, (O), if any.
        bias: Option<&'a [E]>,
        /// The activation.
        act: Activation,
    },
}

/// A Winograd convolution for one geometry (one group; its batch is ignored).
pub(super) struct Wino {
    t: &'static Transform,
    /// Input and output channels, the latter rounded up to [`MR`].
    c: usize,
    o: usize,
    o_pad: usize,
    input: (usize, usize),
    output: (usize, usize),
    padding: (usize, usize),
    /// Tile rows and columns per image.
    nty: usize,
    ntx: usize,
    /// Tile rows per block.
    rows: usize,
    /// The row stride of V and M: a block's tiles rounded up to [`NT`] (the columns the
    /// products compute), and [`NT`] more for the last group of 8 tiles to spill into.
    tb: usize,
    /// `off[c] = c * tb`: where channel `c`'s row of `V[pos]` starts.
    off: Vec<usize>,
    /// Whether the AVX2/FMA code runs (f32 on a CPU that has them).
    simd: bool,
}

impl Wino {
    /// The plan for `g` (whose `groups` must be 1 and kernel 3x3 at stride 1) with transform
    /// `t`, for element type `E`.
    pub(super) fn new<E: Float>(g: &Conv2DGeometry, t: &'static Transform) -> Wino {
        // A block's V and M stay in L2: a * a * (C + O) values per tile, ~384 KB in all.
        Wino::with_block::<E>(g, t, 384 * 1024)
    }

    /// The plan for [`Wino::weight_grad`]: blocks of about 1.5 MB, larger than the forward
    /// pass's, as each position's products end in a sum across 8 lanes per block, and a
    /// profile of them had half their time in those sums at 384 KB. Alone, 64 images of 32 ->
    /// 32 channels at 28x28 took 10.7 ms at 384 KB and 9.3 ms at 1.5 MB (one thread, a loaded
    /// machine); in a whole `resnet` step, 384 KB to 4 MB were within the noise.
    pub(super) fn for_weight_grad<E: Float>(g: &Conv2DGeometry, t: &'static Transform) -> Wino {
        Wino::with_block::<E>(g, t, 1536 * 1024)
    }

    /// The plan with blocks of about `block` bytes of V and M.
    fn with_block<E: Float>(g: &Conv2DGeometry, t: &'static Transform, block: usize) -> Wino {
        debug_assert!(fits(g));
        let (oh, ow) = g.output;
        let nty = oh.div_ceil(t.m);
        let ntx = ow.div_ceil(t.m);
        let o_pad = g.out_channels.div_ceil(MR) * MR;
        let per_tile = t.a * t.a * (g.in_channels + o_pad) * std::mem::size_of::<E>();
        let want = (block / per_tile).clamp(64, 2048);
        let rows = (want / ntx).clamp(1, nty * 8);
        let tb = (rows * ntx).div_ceil(NT) * NT + NT;
        Wino {
            t,
            c: g.in_channels,
            o: g.out_channels,
            o_pad,
            input: g.input,
            output: g.output,
            padding: g.padding,
            nty,
            ntx,
            rows,
            tb,
            off: (0..g.in_channels).map(|c| c * tb).collect(),
            simd: direct::simd::<E>(),
        }
    }

    /// Length of the transformed filter `u`, (a*a, ceil(O/4), C, 4).
    pub(super) fn u_len(&self) -> usize {
        self.t.a * self.t.a * self.o_pad * self.c
    }

    /// Width of the padded input rows the tiles read: the tiles' `M * NTX + 2` columns, and
    /// room for the last group of 8 tiles to read past them.
    fn padded_width(&self) -> usize {
        self.t.m * (self.ntx + 8) + self.t.a
    }

    /// Length of the scratch [`Wino::run`] needs: V, M, and one channel's padded rows.
    pub(super) fn scratch_len(&self) -> usize {
        let (m, a) = (self.t.m, self.t.a);
        let hp = m * self.rows.min(self.nty) + 2;
        a * a * (self.c + self.o_pad) * self.tb + hp * self.padded_width()
    }

    /// Transforms the filter: `w`: (O, C, 3, 3) into `u`: (a*a, ceil(O/4), C, 4). With
    /// `transposed`, `w` is the forward weight (C, O, 3, 3) of the convolution whose input
    /// gradient this is, and the kernel used is `w[c][o]` flipped,
    /// `k[o][c][ki][kj] = w[c][o][2-ki][2-kj]`.
    pub(super) fn filter<E: Float>(&self, w: &[E], transposed: bool, u: &mut [E]) {
        let (a, c_n, o_pad) = (self.t.a, self.c, self.o_pad);
        let u = &mut u[..self.u_len()];
        if o_pad > self.o {
            u.fill(E::zero());
        }
        let g = self.t.g;
        let f = |v: E| v.to_f64().expect("a float converts to f64");
        let mut k = [[0.0f64; 3]; 3];
        // gk = G k: (a, 3)
        let mut gk = [[0.0f64; 3]; 6];
        for o in 0..self.o {
            for c in 0..c_n {
                for (ki, row) in k.iter_mut().enumerate() {
                    for (kj, v) in row.iter_mut().enumerate() {
                        *v = f(if transposed {
                            w[((c * self.o + o) * 3 + 2 - ki) * 3 + 2 - kj]
                        } else {
                            w[((o * c_n + c) * 3 + ki) * 3 + kj]
                        });
                    }
                }
                for (gi, row) in g.chunks_exact(3).zip(gk.iter_mut()) {
                    for (kj, v) in row.iter_mut().enumerate() {
                        *v = gi[0] * k[0][kj] + gi[1] * k[1][kj] + gi[2] * k[2][kj];
                    }
                }
                // U[i * a + j][o][c] = (G k G^T)[i][j]
                let at = (o / MR * c_n + c) * MR + o % MR;
                for (i, gki) in gk.iter().take(a).enumerate() {
                    for (j, gj) in g.chunks_exact(3).enumerate() {
                        let v = gki[0] * gj[0] + gki[1] * gj[1] + gki[2] * gj[2];
                        u[(i * a + j) * o_pad * c_n + at] =
                            E::from(v).expect("f64 converts to a float");
                    }
                }
            }
        }
    }

    /// Convolves `n` images, `x`: (n, C, H, W), with the filter `u` from [`Wino::filter`] into
    /// `y`: (n, O, OH, OW), as `finish` says. `work` holds at least [`Wino::scratch_len`]
    /// values (overwritten).
    pub(super) fn run<E: Float>(
        &self,
        x: &[E],
        u: &[E],
        y: &mut [E],
        finish: Finish<'_, E>,
        work: &mut [E],
    ) {
        let (h, w) = self.input;
        let (oh, ow) = self.output;
        let n = x.len() / (self.c * h * w);
        assert!(x.len() == n * self.c * h * w && y.len() == n * self.o * oh * ow);
        assert!(u.len() >= self.u_len() && work.len() >= self.scratch_len());
        #[cfg(target_arch = "x86_64")]
        if self.simd {
            // `simd` is only set for E = f32
            let f32s = |v| as_f32(v).expect("simd implies f32");
            let f32s_mut = |v| as_f32_mut(v).expect("simd implies f32");
            let (x, u, y, work) = (f32s(x), f32s(u), f32s_mut(y), f32s_mut(work));
            let finish = match finish {
                Finish::Add => Finish::Add,
                Finish::Set { bias, act } => Finish::Set {
                    bias: bias.map(f32s),
                    act,
                },
            };
            // SAFETY: `simd` is only set on a CPU with AVX2 and FMA.
            unsafe {
                match self.t.m {
                    2 => self.run_avx2::<K2, 2, 4>(n, x, u, y, finish, work),
                    _ => self.run_avx2::<K4, 4, 6>(n, x, u, y, finish, work),
                }
            }
            return;
        }
        match self.t.m {
            2 => self.run_body::<E, S<E>, K2, 2, 4>(n, x, u, y, finish, work),
            _ => self.run_body::<E, S<E>, K4, 4, 6>(n, x, u, y, finish, work),
        }
    }

    /// [`Wino::run_body`] on 8-lane AVX2 vectors.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_avx2<K: Kind<M, A>, const M: usize, const A: usize>(
        &self,
        n: usize,
        x: &[f32],
        u: &[f32],
        y: &mut [f32],
        finish: Finish<'_, f32>,
        work: &mut [f32],
    ) {
        self.run_body::<f32, V8, K, M, A>(n, x, u, y, finish, work);
    }

    /// The body of [`Wino::run`]: block by block of tile rows, transform the input, multiply
    /// per position, transform the output; the transforms on `L::W` tiles at once.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run_body<E: Float, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize>(
        &self,
        n: usize,
        x: &[E],
        u: &[E],
        y: &mut [E],
        finish: Finish<'_, E>,
        work: &mut [E],
    ) {
        let (h, w) = self.input;
        let (oh, ow) = self.output;
        let tb = self.tb;
        let (v, rest) = work.split_at_mut(A * A * self.c * tb);
        let (mm, rest) = rest.split_at_mut(A * A * self.o_pad * tb);
        let rows = n * self.nty;
        let per_block = self.rows;
        for r0 in (0..rows).step_by(per_block) {
            let r1 = (r0 + per_block).min(rows);
            // The block's tile rows as runs within one image: (image, ty range, first tile).
            let segs: Vec<(usize, Range<usize>, usize)> = self.segments(r0..r1).collect();
            // (segment by segment, so each channel's padded rows reuse the zeros of the last)
            for (img, tys, t0) in &segs {
                for c in 0..self.c {
                    let plane = &x[(img * self.c + c) * h * w..][..h * w];
                    let fresh = c == 0;
                    self.input_tiles::<E, L, K, M, A>(plane, tys.clone(), v, c, *t0, rest, fresh);
                }
            }
            // the columns the products compute: the block's tiles, rounded up to NT
            self.multiply(u, v, mm, ((r1 - r0) * self.ntx).div_ceil(NT) * NT);
            for o in 0..self.o {
                for (img, tys, t0) in &segs {
                    let plane = &mut y[(img * self.o + o) * oh * ow..][..oh * ow];
                    self.output_tiles::<E, L, K, M, A>(mm, o, tys.clone(), *t0, plane, finish);
                }
            }
        }
    }

    /// A block of tile rows `rows` (counted across the images) as runs within one image:
    /// `(image, its tile rows, the block's tile where they start)`.
    fn segments(&self, rows: Range<usize>) -> impl Iterator<Item = (usize, Range<usize>, usize)> {
        let (nty, ntx) = (self.nty, self.ntx);
        (rows.start / nty..(rows.end - 1) / nty + 1).map(move |img| {
            let lo = rows.start.max(img * nty);
            let hi = rows.end.min((img + 1) * nty);
            (img, lo - img * nty..hi - img * nty, (lo - rows.start) * ntx)
        })
    }

    /// Transforms the tiles of rows `tys` of one channel's `plane`: (H, W) into `V[pos][c]`
    /// from tile `t0` on, `L::W` tiles at a time. The last group of a row writes past it,
    /// into the next row's tiles (written after it) or the block's junk tiles.
    ///
    /// The zero-padded rows are built in `work`: zeroed whole when `fresh`, else only the
    /// image's part is copied over those of the last call, which must have had the same
    /// `tys` (its zeros are where these go). Zeroing row pieces channel by channel had been
    /// a `memset` call per piece, 4% of an `infer_resnet` profile.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn input_tiles<E: Float, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize>(
        &self,
        plane: &[E],
        tys: Range<usize>,
        v: &mut [E],
        c: usize,
        t0: usize,
        work: &mut [E],
        fresh: bool,
    ) {
        let (h, w) = self.input;
        let (ph, pw) = self.padding;
        let ntx = self.ntx;
        let hp = M * tys.len() + 2;
        let wp = self.padded_width();
        // xp: (hp, wp), the zero-padded rows the tiles read, xp[r][x] = xpad[M * ty0 + r][x]
        let xp = &mut work[..hp * wp];
        if fresh {
            xp.fill(E::zero());
        }
        for (r, row) in xp.chunks_exact_mut(wp).enumerate() {
            let iy = (M * tys.start + r) as isize - ph as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            // (the image's columns past `wp`, if any, are read by no tile)
            // (short rows: `copy_short`, not a call to memcpy)
            let (lo, hi) = (pw.min(wp), (pw + w).min(wp));
            copy_short(&mut row[lo..hi], &plane[iy as usize * w..][..hi - lo]);
        }
        let plane_stride = self.c * self.tb;
        // Every write below lands at `pos * plane_stride + c * tb + t` with
        // `t < t0 + tys.len() * ntx + W <= tb` (see `new`), inside `v`.
        assert!(v.len() >= A * A * plane_stride && t0 + tys.len() * ntx + L::W <= self.tb);
        let vc = c * self.tb + t0;
        self.map_tiles::<E, L, InputMap<K, M>, M, A, A>(
            xp,
            wp,
            tys.len(),
            &mut v[vc..],
            plane_stride,
        );
    }

    /// Transforms `rows` rows of tiles, `L::W` tiles at a time, from the padded rows `src`
    /// (`wp` values each; tile row `ty` starts at row `M * ty`, tile `tx` at column `M * tx`):
    /// a group's `N x N` values, mapped by `T` to `A x A`, go to
    /// `dst[(i * A + k) * stride + ty * ntx + tx]`. The last group of a row writes past it,
    /// into the next row's tiles or past the last.
    #[inline(always)]
    fn map_tiles<E, L, T, const M: usize, const N: usize, const A: usize>(
        &self,
        src: &[E],
        wp: usize,
        rows: usize,
        dst: &mut [E],
        stride: usize,
    ) where
        L: Lanes<E>,
        T: TileMap<E, L, N, A>,
    {
        let ntx = self.ntx;
        if rows == 0 {
            return;
        }
        // The reads below: `src[(M * ty + r) * wp + M * tx0 + j ..][..M * W]` with `r, j < N`,
        // `tx0 < ntx`; the writes: `dst[(i * A + k) * stride + ty * ntx + tx0 ..][..W]`.
        assert!(M * (ntx + L::W) + N <= wp && src.len() >= (M * (rows - 1) + N) * wp);
        assert!(dst.len() >= (A * A - 1) * stride + rows * ntx + L::W);
        for ty in 0..rows {
            for tx0 in (0..ntx).step_by(L::W) {
                // SAFETY: inside `src` and `dst` by the asserts above.
                unsafe {
                    let mut d = [[L::zero(); N]; N];
                    for (r, row) in d.iter_mut().enumerate() {
                        for (j, dj) in row.iter_mut().enumerate() {
                            let at = (M * ty + r) * wp + M * tx0 + j;
                            *dj = L::load_every::<M>(src.as_ptr().add(at));
                        }
                    }
                    let out = T::map(d);
                    let to = dst.as_mut_ptr().add(ty * ntx + tx0);
                    for (i, row) in out.iter().enumerate() {
                        for (k, &val) in row.iter().enumerate() {
                            val.store(to.add((i * A + k) * stride));
                        }
                    }
                }
            }
        }
    }

    /// `M[pos] = U[pos] * V[pos]` for every position: (O_pad, np) = (O_pad, C) x (C, np), the
    /// first `np` (a multiple of [`NT`], at most `tb - NT`) columns of each.
    #[inline(always)]
    fn multiply<E: Float>(&self, u: &[E], v: &[E], mm: &mut [E], np: usize) {
        let (a, c, tb, o_pad) = (self.t.a, self.c, self.tb, self.o_pad);
        for pos in 0..a * a {
            let vp = &v[pos * c * tb..][..c * tb];
            let up = &u[pos * o_pad * c..][..o_pad * c];
            let mp = &mut mm[pos * o_pad * tb..][..o_pad * tb];
            let tile = |p0: usize, ob: usize, mp: &mut [E]| {
                let wb = &up[ob * c * MR..][..c * MR];
                let out = &mut mp[ob * MR * tb + p0..];
                #[cfg(target_arch = "x86_64")]
                if self.simd {
                    // SAFETY: `simd` is only set for f32 (the casts are identities) on a CPU
                    // with AVX2 and FMA. Reads: `off[c] + p0 + NT <= c * tb + np` inside `vp`;
                    // `wb` holds C * MR weights; writes: MR rows of NT at stride `tb` from
                    // `ob * MR * tb + p0`, inside `mp`.
                    unsafe {
                        direct::conv_tile_avx2(
                            &self.off,
                            (vp.as_ptr() as *const f32).add(p0),
                            wb.as_ptr() as *const f32,
                            out.as_mut_ptr() as *mut f32,
                            tb,
                        );
                    }
                    return;
                }
                direct::conv_tile(&self.off, &vp[p0..], wb, out, tb);
            };
            // As in the direct kernel: the larger of U[pos] and V[pos] stays put while the
            // smaller is swept over it.
            if o_pad <= np {
                for p0 in (0..np).step_by(NT) {
                    (0..o_pad / MR).for_each(|ob| tile(p0, ob, mp));
                }
            } else {
                for ob in 0..o_pad / MR {
                    (0..np).step_by(NT).for_each(|p0| tile(p0, ob, mp));
                }
            }
        }
    }

    /// Transforms output channel `o`'s tiles of rows `tys` (from tile `t0` of the block's
    /// `mm`) back into `plane`: (OH, OW), as `finish` says, `L::W` tiles at a time.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn output_tiles<E: Float, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize>(
        &self,
        mm: &[E],
        o: usize,
        tys: Range<usize>,
        t0: usize,
        plane: &mut [E],
        finish: Finish<'_, E>,
    ) {
        let ntx = self.ntx;
        let (oh, ow) = self.output;
        let stride = self.o_pad * self.tb;
        // Reads `mm[pos * stride + o * tb + t ..][..W]`, `t + W <= tb` (see `new`).
        assert!(mm.len() >= A * A * stride && t0 + tys.len() * ntx + L::W <= self.tb);
        assert!(plane.len() >= oh * ow);
        let base = o * self.tb + t0;
        // One group's outputs: tmp[r][lane][k], the output pixel (M * ty + r, M * tx + k).
        // (On the stack: a `vec!` here was a `calloc` and a `memset` per call, 2% of a
        // `resnet` training step.)
        let mut tmp = [E::zero(); 4 * 4 * 8];
        assert!(M * M * L::W <= tmp.len());
        for (ty_i, ty) in tys.enumerate() {
            for tx0 in (0..ntx).step_by(L::W) {
                // SAFETY: reads inside `mm` and writes inside `tmp` (M * M * W values), see
                // the asserts above.
                unsafe {
                    let src = mm.as_ptr().add(base + ty_i * ntx + tx0);
                    let mut d = [[L::zero(); A]; A];
                    for (i, row) in d.iter_mut().enumerate() {
                        for (k, dk) in row.iter_mut().enumerate() {
                            *dk = L::load(src.add((i * A + k) * stride));
                        }
                    }
                    let yt = output_2d::<E, L, K, M, A>(d);
                    for (r, &row) in yt.iter().enumerate() {
                        L::interleave::<M>(row, tmp.as_mut_ptr().add(r * M * L::W));
                    }
                }
                let x0 = M * tx0;
                let cnt = (ow - x0).min(M * L::W);
                for r in 0..M.min(oh - M * ty) {
                    let dst = &mut plane[(M * ty + r) * ow + x0..][..cnt];
                    let src = &tmp[r * M * L::W..][..cnt];
                    match finish {
                        Finish::Add => dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s),
                        Finish::Set { bias, act } => {
                            bias_act_into(act, bias.map_or(E::zero(), |b| b[o]), dst, src)
                        }
                    }
                }
            }
        }
    }
}

impl Wino {
    /// Length of the weight gradient in the transformed domain, `du`: (a*a, O, C).
    pub(super) fn grad_u_len(&self) -> usize {
        self.t.a * self.t.a * self.o * self.c
    }

    /// Adds the weight gradient of `n` images into `du` (see [`Wino::add_weight_grad`]):
    /// `x`: (n, C, H, W) the convolution's input, `dy`: (n, O, OH, OW) the gradient at its
    /// output. With `Y = A^T [U . V] A` per tile, the gradient of `U` is
    /// `sum over tiles of (A dY A^T) . V`: each position's `du[pos]` (O, C) gains
    /// `DY[pos] * V[pos]^T`, `DY[pos]`: (O, T) the transformed `dy` tiles, `V[pos]`: (C, T)
    /// the input tiles as the forward pass transforms them. `work` holds at least
    /// [`Wino::scratch_len`] values (overwritten).
    pub(super) fn weight_grad<E: Float>(&self, x: &[E], dy: &[E], du: &mut [E], work: &mut [E]) {
        let (h, w) = self.input;
        let (oh, ow) = self.output;
        let n = x.len() / (self.c * h * w);
        assert!(x.len() == n * self.c * h * w && dy.len() == n * self.o * oh * ow);
        assert!(du.len() == self.grad_u_len() && work.len() >= self.scratch_len());
        #[cfg(target_arch = "x86_64")]
        if self.simd {
            // `simd` is only set for E = f32
            let f32s = |v| as_f32(v).expect("simd implies f32");
            let f32s_mut = |v| as_f32_mut(v).expect("simd implies f32");
            let (x, dy, du, work) = (f32s(x), f32s(dy), f32s_mut(du), f32s_mut(work));
            // SAFETY: `simd` is only set on a CPU with AVX2 and FMA.
            unsafe {
                match self.t.m {
                    2 => self.grad_avx2::<K2, 2, 4>(n, x, dy, du, work),
                    _ => self.grad_avx2::<K4, 4, 6>(n, x, dy, du, work),
                }
            }
            return;
        }
        match self.t.m {
            2 => self.grad_body::<E, S<E>, K2, 2, 4>(n, x, dy, du, work),
            _ => self.grad_body::<E, S<E>, K4, 4, 6>(n, x, dy, du, work),
        }
    }

    /// [`Wino::grad_body`] on 8-lane AVX2 vectors.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn grad_avx2<K: Kind<M, A>, const M: usize, const A: usize>(
        &self,
        n: usize,
        x: &[f32],
        dy: &[f32],
        du: &mut [f32],
        work: &mut [f32],
    ) {
        self.grad_body::<f32, V8, K, M, A>(n, x, dy, du, work);
    }

    /// The body of [`Wino::weight_grad`]: block by block of tile rows, transform the input
    /// and `dy` tiles, then multiply per position.
    #[inline(always)]
    fn grad_body<E: Float, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize>(
        &self,
        n: usize,
        x: &[E],
        dy: &[E],
        du: &mut [E],
        work: &mut [E],
    ) {
        let (h, w) = self.input;
        let (oh, ow) = self.output;
        let tb = self.tb;
        let (v, rest) = work.split_at_mut(A * A * self.c * tb);
        // DY[pos]: (O, tb), in the space of the forward pass's M
        let (dyt, rest) = rest.split_at_mut(A * A * self.o_pad * tb);
        let rows = n * self.nty;
        for r0 in (0..rows).step_by(self.rows) {
            let r1 = (r0 + self.rows).min(rows);
            for (img, tys, t0) in self.segments(r0..r1) {
                for c in 0..self.c {
                    let plane = &x[(img * self.c + c) * h * w..][..h * w];
                    let fresh = c == 0;
                    self.input_tiles::<E, L, K, M, A>(plane, tys.clone(), v, c, t0, rest, fresh);
                }
                for o in 0..self.o {
                    let plane = &dy[(img * self.o + o) * oh * ow..][..oh * ow];
                    let fresh = o == 0;
                    self.grad_tiles::<E, L, K, M, A>(plane, tys.clone(), dyt, o, t0, rest, fresh);
                }
            }
            // The block's tiles, rounded up to 8 (the products' step): past the last tile
            // both are zeroed (the transforms may not have reached those columns, and
            // scratch may hold anything, NaN included), so those columns add nothing.
            let nt = (r1 - r0) * self.ntx;
            let np = nt.div_ceil(8) * 8;
            for row in dyt.chunks_exact_mut(tb).chain(v.chunks_exact_mut(tb)) {
                row[nt..np].iter_mut().for_each(|v| *v = E::zero());
            }
            self.grad_products(dyt, v, du, np);
        }
    }

    /// Transforms output channel `o`'s `dy` tiles of rows `tys` of `plane`: (OH, OW) into
    /// `DY[pos][o]` from tile `t0` on, `L::W` tiles at a time; outputs past the plane's edge
    /// count as 0. The last group of a row writes past it, as in [`Wino::input_tiles`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn grad_tiles<E: Float, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize>(
        &self,
        plane: &[E],
        tys: Range<usize>,
        dyt: &mut [E],
        o: usize,
        t0: usize,
        work: &mut [E],
        fresh: bool,
    ) {
        let (oh, ow) = self.output;
        let ntx = self.ntx;
        let hp = M * tys.len();
        let wp = self.padded_width();
        // dp: (hp, wp), dp[r][x] = dy[M * ty0 + r][x], zero past the plane (as in
        // `input_tiles`: zeroed when `fresh`, else the zeros of the last call are kept)
        let dp = &mut work[..hp * wp];
        if fresh {
            dp.fill(E::zero());
        }
        for (r, row) in dp.chunks_exact_mut(wp).enumerate() {
            let iy = M * tys.start + r;
            if iy >= oh {
                continue;
            }
            let cnt = ow.min(wp);
            copy_short(&mut row[..cnt], &plane[iy * ow..][..cnt]);
        }
        let plane_stride = self.o_pad * self.tb;
        // Every write lands at `pos * plane_stride + o * tb + t`, `t + W <= tb` (see `new`).
        assert!(dyt.len() >= A * A * plane_stride && t0 + tys.len() * ntx + L::W <= self.tb);
        let base = o * self.tb + t0;
        self.map_tiles::<E, L, GradMap<K, A>, M, M, A>(
            dp,
            wp,
            tys.len(),
            &mut dyt[base..],
            plane_stride,
        );
    }

    /// `du[pos] += DY[pos] * V[pos]^T` for every position: (O, C) from (O, np) and (C, np),
    /// the first `np` columns (a multiple of 8) of each.
    #[inline(always)]
    fn grad_products<E: Float>(&self, dyt: &[E], v: &[E], du: &mut [E], np: usize) {
        let (a, c_n, o_n, tb) = (self.t.a, self.c, self.o, self.tb);
        for pos in 0..a * a {
            let vp = &v[pos * c_n * tb..][..c_n * tb];
            let dp = &dyt[pos * self.o_pad * tb..][..o_n * tb];
            let up = &mut du[pos * o_n * c_n..][..o_n * c_n];
            #[cfg(target_arch = "x86_64")]
            if self.simd {
                // 3 rows of DY by 4 of V: 12 accumulators and 3 rows in 16 registers
                for o0 in (0..o_n).step_by(3) {
                    for c0 in (0..c_n).step_by(4) {
                        let (r, s) = ((o_n - o0).min(3), (c_n - c0).min(4));
                        // SAFETY: `simd` is only set for f32 (the casts are identities) on a
                        // CPU with AVX2 and FMA; rows `o0 .. o0 + r` of `dp` and `c0 .. c0 +
                        // s` of `vp` hold `np <= tb` values each, and the block of `up` is
                        // inside its (O, C).
                        unsafe {
                            let a = (dp.as_ptr() as *const f32).add(o0 * tb);
                            let b = (vp.as_ptr() as *const f32).add(c0 * tb);
                            let out = (up.as_mut_ptr() as *mut f32).add(o0 * c_n + c0);
                            match r {
                                3 => dot_rows_avx2::<3>(a, b, tb, np, out, c_n, s),
                                2 => dot_rows_avx2::<2>(a, b, tb, np, out, c_n, s),
                                _ => dot_rows_avx2::<1>(a, b, tb, np, out, c_n, s),
                            }
                        }
                    }
                }
                continue;
            }
            for (o, drow) in dp.chunks_exact(tb).enumerate() {
                for (c, vrow) in vp.chunks_exact(tb).enumerate() {
                    up[o * c_n + c] += drow[..np]
                        .iter()
                        .zip(&vrow[..np])
                        .fold(E::zero(), |s, (&d, &x)| s + d * x);
                }
            }
        }
    }

    /// Adds the weight gradient that `du` (from [`Wino::weight_grad`]) stands for into `dw`:
    /// (O, C, 3, 3), `G^T du G` per (o, c), in f64.
    pub(super) fn add_weight_grad<E: Float>(&self, du: &[E], dw: &mut [E]) {
        let (a, c_n, o_n) = (self.t.a, self.c, self.o);
        assert!(du.len() == self.grad_u_len() && dw.len() == o_n * c_n * 9);
        let g = self.t.g;
        let f = |v: E| v.to_f64().expect("a float converts to f64");
        for o in 0..o_n {
            for c in 0..c_n {
                // gu[i][q] = sum_p G[p][i] du[p][q]: (3, a)
                let mut gu = [[0.0f64; 6]; 3];
                for (i, row) in gu.iter_mut().enumerate() {
                    for (q, v) in row.iter_mut().take(a).enumerate() {
                        *v = (0..a)
                            .map(|p| g[p * 3 + i] * f(du[((p * a + q) * o_n + o) * c_n + c]))
                            .sum();
                    }
                }
                let at = (o * c_n + c) * 9;
                for (i, row) in gu.iter().enumerate() {
                    for j in 0..3 {
                        let v: f64 = (0..a).map(|q| row[q] * g[q * 3 + j]).sum();
                        let d = &mut dw[at + i * 3 + j];
                        *d += E::from(v).expect("f64 converts to a float");
                    }
                }
            }
        }
    }
}

/// What the transforms compute on: `W` lanes of `E`, one tile per lane.
trait Lanes<E>: Copy {
    /// Lanes.
    const W: usize;
    /// Zeros.
    fn zero() -> Self;
    /// # Safety
    /// `p .. p + W` is readable.
    unsafe fn load(p: *const E) -> Self;
    /// `p[0], p[M], p[2 * M], ...`: one column of `W` tiles `M` apart.
    ///
    /// # Safety
    /// `p .. p + M * W` is readable.
    unsafe fn load_every<const M: usize>(p: *const E) -> Self;
    /// # Safety
    /// `p .. p + W` is writable.
    unsafe fn store(self, p: *mut E);
    /// Writes `p[lane * M + k] = rows[k][lane]`: one output row of `W` tiles.
    ///
    /// # Safety
    /// `p .. p + M * W` is writable.
    unsafe fn interleave<const M: usize>(rows: [Self; M], p: *mut E);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    /// `self * c`.
    fn mul(self, c: f32) -> Self;
    /// `self * c + acc`.
    fn mul_add(self, c: f32, acc: Self) -> Self;
}

/// One lane, any float: the portable path.
#[derive(Clone, Copy)]
struct S<E>(E);

impl<E: Float> Lanes<E> for S<E> {
    const W: usize = 1;
    #[inline(always)]
    fn zero() -> Self {
        S(E::zero())
    }
    #[inline(always)]
    unsafe fn load(p: *const E) -> Self {
        // SAFETY: the caller's contract.
        S(unsafe { *p })
    }
    #[inline(always)]
    unsafe fn load_every<const M: usize>(p: *const E) -> Self {
        // SAFETY: the caller's contract.
        S(unsafe { *p })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut E) {
        // SAFETY: the caller's contract.
        unsafe { *p = self.0 }
    }
    #[inline(always)]
    unsafe fn interleave<const M: usize>(rows: [Self; M], p: *mut E) {
        for (k, v) in rows.iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe { *p.add(k) = v.0 }
        }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        S(self.0 + o.0)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        S(self.0 - o.0)
    }
    #[inline(always)]
    fn mul(self, c: f32) -> Self {
        S(self.0 * E::from(c).expect("f32 converts to a float"))
    }
    #[inline(always)]
    fn mul_add(self, c: f32, acc: Self) -> Self {
        S(self.0 * E::from(c).expect("f32 converts to a float") + acc.0)
    }
}

/// Eight f32 lanes in an AVX register. Its methods are only called from code compiled for
/// AVX2 and FMA (inlined into [`Wino::run_avx2`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct V8(std::arch::x86_64::__m256);

#[cfg(target_arch = "x86_64")]
impl Lanes<f32> for V8 {
    const W: usize = 8;
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: AVX is there (see the type's docs).
        V8(unsafe { std::arch::x86_64::_mm256_setzero_ps() })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's contract; AVX is there (see the type's docs).
        V8(unsafe { std::arch::x86_64::_mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn load_every<const M: usize>(p: *const f32) -> Self {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract; AVX2 is there (see the type's docs).
        unsafe {
            match M {
                2 => {
                    // [a0 a2 b0 b2 | a4 a6 b4 b6], then the middle quarters swapped
                    let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                    let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                    V8(_mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                        _mm256_castps_pd(e),
                    )))
                }
                4 => {
                    // [a0 b0 c0 d0 | a4 b4 c4 d4] from two rounds of shuffles, then
                    // interleaved across the halves
                    let a = _mm256_loadu_ps(p);
                    let b = _mm256_loadu_ps(p.add(8));
                    let c = _mm256_loadu_ps(p.add(16));
                    let d = _mm256_loadu_ps(p.add(24));
                    let ab = _mm256_shuffle_ps::<0b00_00_00_00>(a, b);
                    let cd = _mm256_shuffle_ps::<0b00_00_00_00>(c, d);
                    let abcd = _mm256_shuffle_ps::<0b10_00_10_00>(ab, cd);
                    let idx = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                    V8(_mm256_permutevar8x32_ps(abcd, idx))
                }
                _ => {
                    let v: [f32; 8] = std::array::from_fn(|i| *p.add(i * M));
                    V8(_mm256_loadu_ps(v.as_ptr()))
                }
            }
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's contract; AVX is there (see the type's docs).
        unsafe { std::arch::x86_64::_mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn interleave<const M: usize>(rows: [Self; M], p: *mut f32) {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract; AVX is there (see the type's docs).
        unsafe {
            match M {
                2 => {
                    // [t0 t1 | t4 t5] and [t2 t3 | t6 t7], two values per tile t
                    let lo = _mm256_unpacklo_ps(rows[0].0, rows[1].0);
                    let hi = _mm256_unpackhi_ps(rows[0].0, rows[1].0);
                    _mm256_storeu_ps(p, _mm256_permute2f128_ps::<0x20>(lo, hi));
                    _mm256_storeu_ps(p.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
                }
                4 => {
                    // a 4 x 8 transpose: u[i] = [tile i | tile i + 4], four values each
                    let t0 = _mm256_unpacklo_ps(rows[0].0, rows[1].0);
                    let t1 = _mm256_unpackhi_ps(rows[0].0, rows[1].0);
                    let t2 = _mm256_unpacklo_ps(rows[2].0, rows[3].0);
                    let t3 = _mm256_unpackhi_ps(rows[2].0, rows[3].0);
                    let u0 = _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2);
                    let u1 = _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2);
                    let u2 = _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3);
                    let u3 = _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3);
                    _mm256_storeu_ps(p, _mm256_permute2f128_ps::<0x20>(u0, u1));
                    _mm256_storeu_ps(p.add(8), _mm256_permute2f128_ps::<0x20>(u2, u3));
                    _mm256_storeu_ps(p.add(16), _mm256_permute2f128_ps::<0x31>(u0, u1));
                    _mm256_storeu_ps(p.add(24), _mm256_permute2f128_ps::<0x31>(u2, u3));
                }
                _ => {
                    let mut v = [[0.0f32; 8]; M];
                    for (k, r) in rows.iter().enumerate() {
                        _mm256_storeu_ps(v[k].as_mut_ptr(), r.0);
                    }
                    for lane in 0..8 {
                        for (k, r) in v.iter().enumerate() {
                            *p.add(lane * M + k) = r[lane];
                        }
                    }
                }
            }
        }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: AVX is there (see the type's docs).
        V8(unsafe { std::arch::x86_64::_mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: AVX is there (see the type's docs).
        V8(unsafe { std::arch::x86_64::_mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, c: f32) -> Self {
        use std::arch::x86_64::*;
        // SAFETY: AVX is there (see the type's docs).
        V8(unsafe { _mm256_mul_ps(self.0, _mm256_set1_ps(c)) })
    }
    #[inline(always)]
    fn mul_add(self, c: f32, acc: Self) -> Self {
        use std::arch::x86_64::*;
        // SAFETY: FMA is there (see the type's docs).
        V8(unsafe { _mm256_fmadd_ps(self.0, _mm256_set1_ps(c), acc.0) })
    }
}

/// One F(M x M, 3 x 3)'s 1-D transforms, written out (the matrices of [`Transform`] with
/// their common subexpressions shared).
trait Kind<const M: usize, const A: usize> {
    /// `B^T d`.
    fn bt<E, L: Lanes<E>>(d: [L; A]) -> [L; A];
    /// `A^T m`.
    fn at<E, L: Lanes<E>>(m: [L; A]) -> [L; M];
    /// `A d`: the transpose of [`Kind::at`], for the weight gradient's `dy` tiles.
    fn a<E, L: Lanes<E>>(d: [L; M]) -> [L; A];
}

/// F(2x2, 3x3), see [`F2`].
struct K2;

impl Kind<2, 4> for K2 {
    #[inline(always)]
    fn bt<E, L: Lanes<E>>([d0, d1, d2, d3]: [L; 4]) -> [L; 4] {
        [d0.sub(d2), d1.add(d2), d2.sub(d1), d1.sub(d3)]
    }
    #[inline(always)]
    fn at<E, L: Lanes<E>>([m0, m1, m2, m3]: [L; 4]) -> [L; 2] {
        [m0.add(m1).add(m2), m1.sub(m2).sub(m3)]
    }
    #[inline(always)]
    fn a<E, L: Lanes<E>>([d0, d1]: [L; 2]) -> [L; 4] {
        [d0, d0.add(d1), d0.sub(d1), L::zero().sub(d1)]
    }
}

/// F(4x4, 3x3), see [`F4`].
struct K4;

impl Kind<4, 6> for K4 {
    #[inline(always)]
    fn bt<E, L: Lanes<E>>([d0, d1, d2, d3, d4, d5]: [L; 6]) -> [L; 6] {
        let t1 = d2.mul_add(-4.0, d4);
        let t2 = d1.mul_add(-4.0, d3);
        let t3 = d4.sub(d2);
        let t4 = d3.sub(d1).mul(2.0);
        [
            d0.mul_add(4.0, d2.mul_add(-5.0, d4)),
            t1.add(t2),
            t1.sub(t2),
            t3.add(t4),
            t3.sub(t4),
            d1.mul_add(4.0, d3.mul_add(-5.0, d5)),
        ]
    }
    #[inline(always)]
    fn at<E, L: Lanes<E>>([m0, m1, m2, m3, m4, m5]: [L; 6]) -> [L; 4] {
        let (s1, d1) = (m1.add(m2), m1.sub(m2));
        let (s2, d2) = (m3.add(m4), m3.sub(m4));
        [
            m0.add(s1).add(s2),
            d2.mul_add(2.0, d1),
            s2.mul_add(4.0, s1),
            d2.mul_add(8.0, d1).add(m5),
        ]
    }
    #[inline(always)]
    fn a<E, L: Lanes<E>>([d0, d1, d2, d3]: [L; 4]) -> [L; 6] {
        let (e1, o1) = (d0.add(d2), d1.add(d3));
        let (e2, o2) = (d2.mul_add(4.0, d0), d3.mul_add(4.0, d1).mul(2.0));
        [d0, e1.add(o1), e1.sub(o1), e2.add(o2), e2.sub(o2), d3]
    }
}

/// A group of tiles' transform for [`Wino::map_tiles`]: `N x N` values in, `A x A` out.
trait TileMap<E, L: Lanes<E>, const N: usize, const A: usize> {
    fn map(d: [[L; N]; N]) -> [[L; A]; A];
}

/// The input tiles' `B^T d B` ([`input_2d`]) of F(M x M, 3 x 3) `K`.
struct InputMap<K, const M: usize>(std::marker::PhantomData<K>);

impl<E, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize> TileMap<E, L, A, A>
    for InputMap<K, M>
{
    #[inline(always)]
    fn map(d: [[L; A]; A]) -> [[L; A]; A] {
        input_2d::<E, L, K, M, A>(d)
    }
}

/// The `dy` tiles' `A d A^T` ([`grad_2d`]) of F(M x M, 3 x 3) `K`.
struct GradMap<K, const A: usize>(std::marker::PhantomData<K>);

impl<E, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize> TileMap<E, L, M, A>
    for GradMap<K, A>
{
    #[inline(always)]
    fn map(d: [[L; M]; M]) -> [[L; A]; A] {
        grad_2d::<E, L, K, M, A>(d)
    }
}

/// `B^T d B` of one group of tiles, `d[row][col]`.
#[inline(always)]
fn input_2d<E, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize>(
    d: [[L; A]; A],
) -> [[L; A]; A] {
    // (plain loops: `array::from_fn`'s closures were not inlined, and then neither were the
    // intrinsics inside them)
    // columns first: t[i][j] = (B^T d)[i][j]
    let mut t = [[L::zero(); A]; A];
    let mut col = [L::zero(); A];
    for j in 0..A {
        for r in 0..A {
            col[r] = d[r][j];
        }
        let c = K::bt(col);
        for i in 0..A {
            t[i][j] = c[i];
        }
    }
    // then rows: out[i] = B^T (row i of t), i.e. (B^T d) B
    let mut out = [[L::zero(); A]; A];
    for i in 0..A {
        out[i] = K::bt(t[i]);
    }
    out
}

/// `A^T m A` of one group of tiles, `m[i][k]`.
#[inline(always)]
fn output_2d<E, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize>(
    m: [[L; A]; A],
) -> [[L; M]; M] {
    // rows first: rows[i] = A^T (row i of m), (m A)[i]
    let mut rows = [[L::zero(); M]; A];
    for i in 0..A {
        rows[i] = K::at(m[i]);
    }
    // then columns: out[r][k] = A^T (column k of m A)[r]
    let mut out = [[L::zero(); M]; M];
    let mut col = [L::zero(); A];
    for k in 0..M {
        for i in 0..A {
            col[i] = rows[i][k];
        }
        let c = K::at(col);
        for r in 0..M {
            out[r][k] = c[r];
        }
    }
    out
}

/// `A d A^T` of one group of `dy` tiles, `d[row][col]`: (A, A) from (M, M).
#[inline(always)]
fn grad_2d<E, L: Lanes<E>, K: Kind<M, A>, const M: usize, const A: usize>(
    d: [[L; M]; M],
) -> [[L; A]; A] {
    // columns first: t[i][j] = (A d)[i][j]
    let mut t = [[L::zero(); M]; A];
    let mut col = [L::zero(); M];
    for j in 0..M {
        for r in 0..M {
            col[r] = d[r][j];
        }
        let c = K::a(col);
        for i in 0..A {
            t[i][j] = c[i];
        }
    }
    // then rows: out[i] = A (row i of t), i.e. (A d) A^T
    let mut out = [[L::zero(); A]; A];
    for i in 0..A {
        out[i] = K::a(t[i]);
    }
    out
}

/// `acc[r][s] += sum_t a[r][t] * b[s][t]` for `t < np` (a multiple of 8), rows `tb` apart,
/// then `out[r * ld + s] += acc[r][s]`: an R x S block of the weight gradient's products.
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` and `b` have R and S rows of `np` readable values, `tb`
/// apart; `out` has R rows of S writable values, `ld` apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_block_avx2<const R: usize, const S: usize>(
    a: *const f32,
    b: *const f32,
    tb: usize,
    np: usize,
    out: *mut f32,
    ld: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); S]; R];
        let mut t = 0;
        while t < np {
            let mut ar = [_mm256_setzero_ps(); R];
            for (r, v) in ar.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(a.add(r * tb + t));
            }
            // (index loops: the accumulators are addressed by both indices)
            #[allow(clippy::needless_range_loop)]
            for s in 0..S {
                let bv = _mm256_loadu_ps(b.add(s * tb + t));
                for r in 0..R {
                    acc[r][s] = _mm256_fmadd_ps(ar[r], bv, acc[r][s]);
                }
            }
            t += 8;
        }
        for (r, row) in acc.iter().enumerate() {
            for (s, &v) in row.iter().enumerate() {
                // the 8 lanes' sum
                let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
                let q = _mm_add_ss(q, _mm_movehdup_ps(q));
                *out.add(r * ld + s) += _mm_cvtss_f32(q);
            }
        }
    }
}

/// [`dot_block_avx2`] for the `s` (1 to 4) columns of a block of `R` rows.
///
/// # Safety
/// As [`dot_block_avx2`] with S = `s`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_avx2<const R: usize>(
    a: *const f32,
    b: *const f32,
    tb: usize,
    np: usize,
    out: *mut f32,
    ld: usize,
    s: usize,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match s {
            4 => dot_block_avx2::<R, 4>(a, b, tb, np, out, ld),
            3 => dot_block_avx2::<R, 3>(a, b, tb, np, out, ld),
            2 => dot_block_avx2::<R, 2>(a, b, tb, np, out, ld),
            _ => dot_block_avx2::<R, 1>(a, b, tb, np, out, ld),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(c: usize, o: usize, hw: (usize, usize), pad: usize, n: usize) -> Conv2DGeometry {
        Conv2DGeometry {
            batch: n,
            in_channels: c,
            out_channels: o,
            groups: 1,
            input: hw,
            output: (hw.0 + 2 * pad - 2, hw.1 + 2 * pad - 2),
            kernel: (3, 3),
            stride: (1, 1),
            padding: (pad, pad),
            dilation: (1, 1),
        }
    }

    /// A small deterministic generator (xorshift), values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// The 3x3 cross-correlation from its definition: `y` (n, O, OH, OW).
    fn naive(g: &Conv2DGeometry, x: &[f64], w: &[f64]) -> Vec<f64> {
        let (h, wd) = g.input;
        let (oh, ow) = g.output;
        let (c_n, o_n) = (g.in_channels, g.out_channels);
        let mut y = vec![0.0; g.batch * o_n * oh * ow];
        for n in 0..g.batch {
            for o in 0..o_n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0.0;
                        for c in 0..c_n {
                            for ki in 0..3 {
                                for kj in 0..3 {
                                    let iy = (oy + ki) as isize - g.padding.0 as isize;
                                    let ix = (ox + kj) as isize - g.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((n * c_n + c) * h + iy as usize) * wd + ix as usize;
                                    s += x[xi] * w[((o * c_n + c) * 3 + ki) * 3 + kj];
                                }
                            }
                        }
                        y[((n * o_n + o) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn run_f64(g: &Conv2DGeometry, t: &'static Transform, x: &[f64], w: &[f64]) -> Vec<f64> {
        let plan = Wino::new::<f64>(g, t);
        let mut u = vec![0.0; plan.u_len()];
        plan.filter(w, false, &mut u);
        let mut work = vec![f64::NAN; plan.scratch_len()];
        let mut y = vec![f64::NAN; g.batch * g.out_channels * g.output.0 * g.output.1];
        plan.run(
            x,
            &u,
            &mut y,
            Finish::Set {
                bias: None,
                act: Activation::Identity,
            },
            &mut work,
        );
        y
    }

    fn max_err(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold(0.0, |m, (a, b)| m.max((a - b).abs()))
    }

    /// The weight gradient from its definition: `dw` (O, C, 3, 3),
    /// `dw[o][c][ki][kj] = sum dy[n][o][oy][ox] * xpad[n][c][oy + ki][ox + kj]`.
    fn naive_dw(g: &Conv2DGeometry, x: &[f64], dy: &[f64]) -> Vec<f64> {
        let (h, wd) = g.input;
        let (oh, ow) = g.output;
        let (c_n, o_n) = (g.in_channels, g.out_channels);
        let mut dw = vec![0.0; o_n * c_n * 9];
        for n in 0..g.batch {
            for o in 0..o_n {
                for c in 0..c_n {
                    for ki in 0..3 {
                        for kj in 0..3 {
                            let mut s = 0.0;
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let iy = (oy + ki) as isize - g.padding.0 as isize;
                                    let ix = (ox + kj) as isize - g.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((n * c_n + c) * h + iy as usize) * wd + ix as usize;
                                    s += x[xi] * dy[((n * o_n + o) * oh + oy) * ow + ox];
                                }
                            }
                            dw[((o * c_n + c) * 3 + ki) * 3 + kj] += s;
                        }
                    }
                }
            }
        }
        dw
    }

    /// [`Wino::weight_grad`] then [`Wino::add_weight_grad`] into `dw` filled with 1.
    fn grad_via<E: Float>(
        g: &Conv2DGeometry,
        t: &'static Transform,
        x: &[E],
        dy: &[E],
    ) -> Vec<f64> {
        let plan = Wino::new::<E>(g, t);
        let mut du = vec![E::zero(); plan.grad_u_len()];
        let mut work = vec![E::nan(); plan.scratch_len()];
        plan.weight_grad(x, dy, &mut du, &mut work);
        let mut dw = vec![E::one(); g.out_channels * g.in_channels * 9];
        plan.add_weight_grad(&du, &mut dw);
        dw.iter().map(|&v| v.to_f64().unwrap() - 1.0).collect()
    }

    /// The weight gradient (f64, one lane) is the definition's, to rounding: sizes that are
    /// not multiples of the tile, paddings 0 to 2, blocks that split images, and scratch full
    /// of NaN.
    #[test]
    fn weight_grad_matches_the_definition() {
        for (i, &(c, o, hw, pad, n)) in [
            (3, 5, (4, 4), 0, 1),
            (16, 18, (7, 5), 1, 2),
            (8, 4, (9, 10), 2, 3),
            (5, 7, (3, 3), 1, 2),
            (1, 1, (3, 8), 0, 1),
            (48, 40, (30, 29), 1, 2),
        ]
        .iter()
        .enumerate()
        {
            let g = geom(c, o, hw, pad, n);
            let x = values(n * c * hw.0 * hw.1, 50 + i as u64);
            let dy = values(n * o * g.output.0 * g.output.1, 60 + i as u64);
            let expect = naive_dw(&g, &x, &dy);
            for t in [&F2, &F4] {
                let d = max_err(&grad_via(&g, t, &x, &dy), &expect);
                assert!(d < 1e-10, "F({}) {g:?}: off by {d:e}", t.m);
            }
        }
    }

    /// The f32 AVX2 path (the dot-product blocks of 3 x 4 and their remainders) against the
    /// f64 definition, relative to the largest gradient.
    #[test]
    fn f32_avx2_weight_grad_matches_the_definition() {
        if !direct::simd::<f32>() {
            return;
        }
        for (i, &(c, o, hw, pad, n)) in [
            (16, 16, (7, 5), 1, 2),
            (23, 17, (9, 10), 2, 3),
            (17, 33, (13, 29), 0, 1),
            (32, 16, (3, 3), 1, 2),
            (32, 32, (28, 28), 1, 4),
        ]
        .iter()
        .enumerate()
        {
            let g = geom(c, o, hw, pad, n);
            let f32s = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
            let x = f32s(values(n * c * hw.0 * hw.1, 70 + i as u64));
            let dy = f32s(values(n * o * g.output.0 * g.output.1, 80 + i as u64));
            let f64s = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
            let expect = naive_dw(&g, &f64s(&x), &f64s(&dy));
            let scale = expect.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (t, tol) in [(&F2, 1e-6), (&F4, 1e-5)] {
                let d = max_err(&grad_via(&g, t, &x, &dy), &expect) / scale;
                assert!(d < tol, "F({}) {g:?}: off by {d:e} of the largest", t.m);
            }
        }
    }

    /// The written-out 1-D transforms of `K2` and `K4` are the matrices of `F2` and `F4`:
    /// applied to each unit vector they give the matrix's columns.
    #[test]
    fn written_out_transforms_are_the_matrices() {
        fn check<K: Kind<M, A>, const M: usize, const A: usize>(t: &Transform) {
            for col in 0..A {
                let e: [S<f64>; A] = std::array::from_fn(|i| S(if i == col { 1.0 } else { 0.0 }));
                let b = K::bt::<f64, S<f64>>(e);
                let at = K::at::<f64, S<f64>>(e);
                for (row, v) in b.iter().enumerate() {
                    assert_eq!(v.0, t.bt[row * A + col], "B^T[{row}][{col}] of F({M})");
                }
                for (row, v) in at.iter().enumerate() {
                    assert_eq!(v.0, t.at[row * A + col], "A^T[{row}][{col}] of F({M})");
                }
            }
            // A is A^T transposed: A e_k is row k of A^T
            for k in 0..M {
                let e: [S<f64>; M] = std::array::from_fn(|i| S(if i == k { 1.0 } else { 0.0 }));
                for (i, v) in K::a::<f64, S<f64>>(e).iter().enumerate() {
                    assert_eq!(v.0, t.at[k * A + i], "A[{i}][{k}] of F({M})");
                }
            }
        }
        check::<K2, 2, 4>(&F2);
        check::<K4, 4, 6>(&F4);
    }

    /// One tile, one channel: F(2x2, 3x3) of a 4x4 input is the 3x3 correlation, to the last
    /// bit or nearly (the transforms' factors 1/2 are exact in binary).
    #[test]
    fn one_tile_is_the_correlation() {
        for (t, side) in [(&F2, 4), (&F4, 6)] {
            let g = geom(1, 1, (side, side), 0, 1);
            let x = values(side * side, 1);
            let w = values(9, 2);
            let d = max_err(&run_f64(&g, t, &x, &w), &naive(&g, &x, &w));
            assert!(d < 1e-14, "F({}x{}) off by {d:e}", t.m, t.m);
        }
    }

    /// Many channels, images, sizes that are not multiples of the tile, paddings 0 to 2, and
    /// blocks that split images (48 channels: blocks of fewer tile rows than an image has).
    #[test]
    fn matches_the_correlation() {
        for (i, &(c, o, hw, pad, n)) in [
            (3, 5, (4, 4), 0, 1),
            (16, 18, (7, 5), 1, 2),
            (8, 4, (9, 10), 2, 3),
            (5, 7, (3, 3), 1, 2),
            (1, 1, (3, 8), 0, 1),
            (48, 40, (30, 29), 1, 2),
        ]
        .iter()
        .enumerate()
        {
            let g = geom(c, o, hw, pad, n);
            let x = values(n * c * hw.0 * hw.1, 10 + i as u64);
            let w = values(o * c * 9, 20 + i as u64);
            let expect = naive(&g, &x, &w);
            for t in [&F2, &F4] {
                let d = max_err(&run_f64(&g, t, &x, &w), &expect);
                assert!(d < 1e-12, "F({}) {g:?}: off by {d:e}", t.m);
            }
        }
    }

    /// The flipped, transposed filter: running it on `dy` adds the input gradient into `dx`.
    #[test]
    fn transposed_filter_gives_the_input_gradient() {
        let g = geom(6, 5, (6, 7), 1, 2);
        let gt = direct::transposed(&g).expect("stride 1");
        let w = values(5 * 6 * 9, 3);
        let dy = values(2 * 5 * 6 * 7, 4);
        // dx[n][c][iy][ix] = sum dy[n][o][oy][ox] w[o][c][iy - oy + p][ix - ox + p]
        let mut expect = vec![1.0; 2 * 6 * 6 * 7];
        for n in 0..2 {
            for o in 0..5 {
                for c in 0..6 {
                    for oy in 0..6 {
                        for ox in 0..7 {
                            for ki in 0..3 {
                                for kj in 0..3 {
                                    let iy = (oy + ki) as isize - 1;
                                    let ix = (ox + kj) as isize - 1;
                                    if iy < 0 || ix < 0 || iy >= 6 || ix >= 7 {
                                        continue;
                                    }
                                    expect[((n * 6 + c) * 6 + iy as usize) * 7 + ix as usize] += dy
                                        [((n * 5 + o) * 6 + oy) * 7 + ox]
                                        * w[((o * 6 + c) * 3 + ki) * 3 + kj];
                                }
                            }
                        }
                    }
                }
            }
        }
        for t in [&F2, &F4] {
            let plan = Wino::new::<f64>(&gt, t);
            let mut u = vec![0.0; plan.u_len()];
            plan.filter(&w, true, &mut u);
            let mut work = vec![f64::NAN; plan.scratch_len()];
            let mut dx = vec![1.0; expect.len()];
            plan.run(&dy, &u, &mut dx, Finish::Add, &mut work);
            let d = max_err(&dx, &expect);
            assert!(d < 1e-12, "F({}): off by {d:e}", t.m);
        }
    }

    /// The f32 AVX2 path (8 tiles per register; the shuffles of `load_every` and `interleave`)
    /// against the f64 correlation, for both transforms, adding into `y` too. Within the error
    /// bounds measured by `accuracy` (relative to the largest output).
    #[test]
    fn f32_avx2_matches_the_correlation() {
        if !direct::simd::<f32>() {
            return;
        }
        for (i, &(c, o, hw, pad, n)) in [
            (16, 16, (7, 5), 1, 2),
            (24, 20, (9, 10), 2, 3),
            (17, 33, (13, 29), 0, 1),
            (32, 16, (3, 3), 1, 2),
            (48, 40, (30, 29), 1, 2),
        ]
        .iter()
        .enumerate()
        {
            let g = geom(c, o, hw, pad, n);
            let f32s = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
            let x = f32s(values(n * c * hw.0 * hw.1, 30 + i as u64));
            let w = f32s(values(o * c * 9, 40 + i as u64));
            let f64s = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
            let expect = naive(&g, &f64s(&x), &f64s(&w));
            let scale = expect.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (t, tol) in [(&F2, 1e-6), (&F4, 1e-5)] {
                let plan = Wino::new::<f32>(&g, t);
                let mut u = vec![0.0; plan.u_len()];
                plan.filter(&w, false, &mut u);
                let mut work = vec![f32::NAN; plan.scratch_len()];
                let mut y = vec![1.0f32; expect.len()];
                plan.run(&x, &u, &mut y, Finish::Add, &mut work);
                let got: Vec<f64> = y.iter().map(|&v| v as f64 - 1.0).collect();
                let d = max_err(&got, &expect) / scale;
                assert!(
                    d < tol,
                    "F({}) {g:?}: off by {d:e} of the largest output",
                    t.m
                );
            }
        }
    }

    /// The f32 error of each transform for realistic layers: N(0, 1) inputs, Kaiming-scaled
    /// weights, against the f64 correlation, beside the direct kernel's (max |error| over
    /// the largest |output|, and over the outputs' RMS). Run with `cargo test --release --lib
    /// winograd::tests::accuracy -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn accuracy() {
        use super::super::Activation;
        use super::super::cpu_kernel::forward;
        let normal = |n: usize, seed: u64| -> Vec<f64> {
            // Box-Muller on the uniform values
            let u = values(2 * n, seed);
            (0..n)
                .map(|i| {
                    let (a, b) = ((u[2 * i] + 1.0) / 2.0, (u[2 * i + 1] + 1.0) / 2.0);
                    (-2.0 * (a.max(1e-300)).ln()).sqrt() * (std::f64::consts::TAU * b).cos()
                })
                .collect()
        };
        for &(c, hw) in &[(32, 28), (64, 14), (128, 12), (256, 7), (512, 7)] {
            let g = geom(c, c, (hw, hw), 1, 1);
            let x: Vec<f32> = normal(c * hw * hw, 5).iter().map(|&v| v as f32).collect();
            let k = (2.0 / (9.0 * c as f64)).sqrt();
            let w: Vec<f32> = normal(c * c * 9, 6)
                .iter()
                .map(|&v| (v * k) as f32)
                .collect();
            let f64s = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
            let expect = naive(&g, &f64s(&x), &f64s(&w));
            let max = expect.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let rms = (expect.iter().map(|v| v * v).sum::<f64>() / expect.len() as f64).sqrt();
            let mut line = format!("{c:3} ch {hw:2}x{hw:<2}");
            for (choice, name) in [(OFF, "direct"), (FORCE_F2, "F2"), (FORCE_F4, "F4")] {
                CHOICE.store(choice, Ordering::Relaxed);
                let mut y = vec![0.0f32; expect.len()];
                forward(
                    &g,
                    Activation::Identity,
                    None,
                    &x,
                    &w,
                    None,
                    &mut y,
                    &mut [],
                    &mut [],
                );
                let d = max_err(&f64s(&y), &expect);
                line += &format!("  {name}: {:.1e} of max, {:.1e} of rms", d / max, d / rms);
            }
            CHOICE.store(UNSET, Ordering::Relaxed);
            println!("{line}");
        }
    }

    /// Per-layer timings, direct kernel against F(2x2) and F(4x4), forward, input gradient and
    /// weight gradient (f32, the whole batch on rayon's threads, median of alternated runs). Run with
    /// `cargo test --release --lib winograd::tests::timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing() {
        use super::super::Activation;
        use super::super::cpu_kernel::{backward, forward};
        use std::time::Instant;
        let layers: &[(usize, usize, usize, usize)] = &[
            // (batch, C, O, H=W), padding 1
            (128, 32, 32, 28),
            (128, 32, 64, 14),
            (128, 64, 64, 14),
            (128, 16, 16, 28),
            (128, 3, 32, 28),
            (32, 64, 64, 24),
            (32, 128, 128, 12),
            (32, 256, 256, 6),
            (32, 512, 512, 3),
            (32, 128, 128, 7),
            (32, 256, 256, 7),
            (32, 512, 512, 7),
            (32, 256, 256, 14),
            (32, 128, 128, 28),
        ];
        let only = std::env::var("LAYER").ok();
        for (li, &(n, c, o, hw)) in layers.iter().enumerate() {
            if only.as_ref().is_some_and(|l| l.parse::<usize>() != Ok(li)) {
                continue;
            }
            let g = Conv2DGeometry {
                batch: n,
                ..geom(c, o, (hw, hw), 1, n)
            };
            let x: Vec<f32> = values(n * c * hw * hw, 1)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let scale = (2.0 / (9.0 * c as f64)).sqrt();
            let w: Vec<f32> = values(o * c * 9, 2)
                .iter()
                .map(|&v| (v * scale) as f32)
                .collect();
            let dy: Vec<f32> = values(n * o * hw * hw, 3)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let mut y = vec![0.0f32; n * o * hw * hw];
            let mut dx = vec![0.0f32; n * c * hw * hw];
            let modes = [(OFF, "direct"), (FORCE_F2, "F2"), (FORCE_F4, "F4")];
            // MODE=F2 (say) runs that one only, for a profile
            let mode = std::env::var("MODE").ok();
            let mut fw = vec![Vec::new(); 3];
            let mut bw = vec![Vec::new(); 3];
            let mut gw = vec![Vec::new(); 3];
            let mut dw = vec![0.0f32; o * c * 9];
            let reps = if n * c * o * hw * hw > 50_000_000 {
                5
            } else {
                9
            };
            for _ in 0..reps {
                for (m, &(choice, name)) in modes.iter().enumerate() {
                    if mode.as_ref().is_some_and(|want| want != name) {
                        fw[m].push(0.0);
                        bw[m].push(0.0);
                        gw[m].push(0.0);
                        continue;
                    }
                    CHOICE.store(choice, Ordering::Relaxed);
                    let t = Instant::now();
                    forward(
                        &g,
                        Activation::Identity,
                        None,
                        &x,
                        &w,
                        None,
                        &mut y,
                        &mut [],
                        &mut [],
                    );
                    fw[m].push(t.elapsed().as_secs_f64() * 1e3);
                    let t = Instant::now();
                    backward(
                        &g,
                        Activation::Identity,
                        None,
                        &[],
                        &w,
                        &[],
                        &[],
                        &dy,
                        &mut dx,
                        &mut [],
                        &mut [],
                    );
                    bw[m].push(t.elapsed().as_secs_f64() * 1e3);
                    let t = Instant::now();
                    backward(
                        &g,
                        Activation::Identity,
                        None,
                        &x,
                        &w,
                        &[],
                        &[],
                        &dy,
                        &mut [],
                        &mut dw,
                        &mut [],
                    );
                    gw[m].push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            CHOICE.store(UNSET, Ordering::Relaxed);
            let med = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let f: Vec<f64> = fw.iter_mut().map(med).collect();
            let b: Vec<f64> = bw.iter_mut().map(med).collect();
            let d: Vec<f64> = gw.iter_mut().map(med).collect();
            println!(
                "{li:2} b{n} {c:3}->{o:3} {hw:2}x{hw:<2}  fwd ms: direct {:7.2} F2 {:7.2} F4 {:7.2}   dx ms: direct {:7.2} F2 {:7.2} F4 {:7.2}   dw ms: direct {:7.2} F2 {:7.2} F4 {:7.2}",
                f[0], f[1], f[2], b[0], b[1], b[2], d[0], d[1], d[2]
            );
        }
    }
}
