//! Host kernels for 2-D convolution fused with bias, activation and pooling.
//!
//! Work is split over rayon tasks of a few images each (see `images_per_task`); inside a task
//! every image is lowered with im2col into a column buffer that stays in cache and multiplied
//! with one small gemm per group, or, for layers with 16 or more output channels per group and
//! a kernel larger than 1x1, convolved by the direct kernel of [`direct`] (forward, the weight
//! gradient on images of 128 flat pixels or more, and the input gradient at stride 1).
//! 3x3 stride-1 layers that [`winograd::worth_it`] picks run their forward pass and input
//! gradient on Winograd's F(2x2, 3x3) or F(4x4, 3x3) instead, for all of a task's images at
//! once (the forward pass's bias and activation applied as its output tiles are written).
//! Layouts (row-major, per image):
//! - `x`: (C, H, W); `w`: (O, C/G, KH, KW); `b`: (O)
//! - `cols`: (C/G * KH * KW, OH * OW), one group at a time
//! - `y`: (O, OH * OW), the activation's output before pooling
//! - `out`: (O, POH * POW) after pooling, or `y` itself without pooling

use super::direct::{self, Plan};
use super::one_channel;
use super::winograd::{self, Finish, Wino};
use super::{Activation, Conv2DGeometry, Conv2DKernel, Conv2DOp};
use crate::Float;
use crate::ops::buffer::{Buffer, map_for_writing};
use crate::ops::pool2d::cpu_kernel as pool;
use crate::ops::{PoolKind, gemm, images_per_task, to_host};
use crate::ops::{as_f32, as_f32_mut};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, Tensor, TensorFromVec};
use rayon::prelude::*;

/// Range of `ox` for which `ox * stride + offset` lands in `0..n` (half-open, clipped to `out`).
#[inline]
pub(super) fn valid_range(offset: isize, stride: usize, n: usize, out: usize) -> (usize, usize) {
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(stride)
    };
    let last = n as isize - 1 - offset;
    let hi = if last < 0 {
        0
    } else {
        (last as usize / stride + 1).min(out)
    };
    (lo.min(hi), hi)
}

/// `d.copy_from_slice(s)` for the short rows of im2col (10 to 30 values): `copy_from_slice`
/// calls `memcpy`, whose call overhead dominated im2col on LeNet's 10-wide rows. Fixed-size
/// pieces compile to plain vector moves instead.
#[inline(always)]
pub(super) fn copy_short<E: Copy>(d: &mut [E], s: &[E]) {
    let n = d.len();
    let s = &s[..n];
    let mut i = 0;
    while i + 8 <= n {
        d[i..i + 8].copy_from_slice(&s[i..i + 8]);
        i += 8;
    }
    if n - i >= 4 {
        d[i..i + 4].copy_from_slice(&s[i..i + 4]);
        i += 4;
    }
    if n - i >= 2 {
        d[i..i + 2].copy_from_slice(&s[i..i + 2]);
        i += 2;
    }
    if n - i == 1 {
        d[i] = s[i];
    }
}

/// Lowers one group of one image. `x`: (C/G, H, W) -> `cols`: (C/G*KH*KW, OH*OW).
fn im2col<E: Float>(g: &Conv2DGeometry, x: &[E], cols: &mut [E]) {
    let (h, w) = g.input;
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    let (dh, dw) = g.dilation;
    let ohw = oh * ow;
    let mut rows = cols.chunks_exact_mut(ohw);
    for plane in x.chunks_exact(h * w).take(g.in_channels / g.groups) {
        for ki in 0..kh {
            // Output rows whose input row is inside the image; the others read padding. Worked
            // out once per kernel row, so the loop below has no per-row tests.
            let y_off = (ki * dh) as isize - ph as isize;
            let (oy_lo, oy_hi) = valid_range(y_off, sh, h, oh);
            // The input rows the valid output rows read, one per output row.
            let first = (oy_lo as isize * sh as isize + y_off).max(0) as usize;
            for kj in 0..kw {
                let dst = rows.next().expect("cols has C/G*KH*KW rows");
                let x_off = (kj * dw) as isize - pw as isize;
                let (lo, hi) = valid_range(x_off, sw, w, ow);
                let start = (lo as isize * sw as isize + x_off).max(0) as usize;
                dst[..oy_lo * ow].fill(E::zero());
                dst[oy_hi * ow..].fill(E::zero());
                if oy_lo == oy_hi {
                    continue;
                }
                let src_rows = plane[first * w..].chunks(w).step_by(sh);
                for (d, src) in dst[oy_lo * ow..oy_hi * ow]
                    .chunks_exact_mut(ow)
                    .zip(src_rows)
                {
                    // a few padded columns at each end, when there is padding
                    for v in &mut d[..lo] {
                        *v = E::zero();
                    }
                    for v in &mut d[hi..] {
                        *v = E::zero();
                    }
                    if lo == hi {
                        // this kernel column reads only padding (its start is past the row)
                    } else if sw == 1 {
                        copy_short(&mut d[lo..hi], &src[start..start + hi - lo]);
                    } else {
                        for (i, v) in d[lo..hi].iter_mut().enumerate() {
                            *v = src[start + i * sw];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `cols`: (C/G*KH*KW, OH*OW) into `dx`: (C/G, H, W).
fn col2im<E: Float>(g: &Conv2DGeometry, cols: &[E], dx: &mut [E]) {
    let (h, w) = g.input;
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    let (dh, dw) = g.dilation;
    let ohw = oh * ow;
    let mut row = 0;
    for c in 0..g.in_channels / g.groups {
        let plane = &mut dx[c * h * w..][..h * w];
        for ki in 0..kh {
            for kj in 0..kw {
                let src = &cols[row * ohw..][..ohw];
                row += 1;
                let off = (kj * dw) as isize - pw as isize;
                let (lo, hi) = valid_range(off, sw, w, ow);
                if lo == hi {
                    continue;
                }
                for oy in 0..oh {
                    let iy = (oy * sh + ki * dh) as isize - ph as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let d = &mut plane[iy as usize * w..][..w];
                    let s = &src[oy * ow..][lo..hi];
                    let start = (lo as isize * sw as isize + off) as usize;
                    if sw == 1 {
                        for (d, s) in d[start..start + s.len()].iter_mut().zip(s) {
                            *d += *s;
                        }
                    } else {
                        for (i, s) in s.iter().enumerate() {
                            d[start + i * sw] += *s;
                        }
                    }
                }
            }
        }
    }
}

#[inline]
fn activate<E: Float>(act: Activation, v: E) -> E {
    match act {
        Activation::Identity => v,
        Activation::Relu => v.max(E::zero()),
        Activation::Sigmoid => E::one() / (E::one() + (-v).exp()),
        Activation::Tanh => v.tanh(),
    }
}

/// The activation's derivative, written in terms of its output `y`.
#[inline]
fn activation_grad<E: Float>(act: Activation, y: E) -> E {
    match act {
        Activation::Identity => E::one(),
        Activation::Relu => {
            if y > E::zero() {
                E::one()
            } else {
                E::zero()
            }
        }
        Activation::Sigmoid => y * (E::one() - y),
        Activation::Tanh => E::one() - y * y,
    }
}

/// `d[i] *= f(y[i])`, monomorphised per activation so that it vectorises.
#[inline(always)]
fn scale_by<E: Float>(d: &mut [E], y: &[E], f: impl Fn(E) -> E) {
    for (d, &y) in d.iter_mut().zip(y) {
        *d *= f(y);
    }
}

/// `d[arg[i]] += g[i] * f(y[i])`: the gradient of max pooling, through saved maxima.
#[inline(always)]
fn scatter<E: Float>(d: &mut [E], arg: &[u32], g: &[E], y: &[E], f: impl Fn(E) -> E) {
    for (i, (&at, &g)) in arg.iter().zip(g).enumerate() {
        // y is empty when the activation is the identity (f ignores its argument then)
        let yv = y.get(i).copied().unwrap_or(E::zero());
        d[at as usize] += g * f(yv);
    }
}

/// Scratch buffers of one rayon task, from the buffer pool: fresh `vec![0; n]`s here were
/// calloc'd zero pages each step, read and then written (a copy-on-write fault and a TLB
/// shootdown per 4 KiB page), and freed again.
struct Scratch<E: Float> {
    cols: Buffer<E>,
    y: Buffer<E>,
    /// The direct kernel's phase planes and flat output (see [`direct`]), when it runs.
    buf: Buffer<E>,
    yflat: Buffer<E>,
}

impl<E: Float> Scratch<E> {
    /// For `plan`, or [`one_channel`]'s kernel with `one`, else im2col.
    fn new(g: &Conv2DGeometry, plan: Option<&Plan>, one: bool) -> Self {
        let ohw = g.output.0 * g.output.1;
        let cgkk = g.in_channels / g.groups * g.kernel.0 * g.kernel.1;
        // all written in full before they are read
        Scratch {
            cols: Buffer::for_overwrite(match (plan, one) {
                (Some(_), _) => 0,
                (None, true) => one_channel::scratch_len(g),
                (None, false) => cgkk * ohw,
            }),
            y: Buffer::for_overwrite(g.out_channels * ohw),
            buf: Buffer::for_overwrite(plan.map_or(0, |p| p.len)),
            yflat: Buffer::for_overwrite(plan.map_or(0, |p| p.flat_len())),
        }
    }
}

/// How [`forward_image`] gets the convolution itself.
#[derive(Clone, Copy)]
enum Conv<'a, E> {
    /// im2col + gemm.
    Gemm,
    /// The direct kernel's plan, and the weight packed for it per group.
    Direct(&'a Plan, &'a [E]),
    /// Computed by [`winograd`] for a whole task's images, with the bias and the activation,
    /// straight into the output (without pooling).
    InPlace,
    /// Computed by [`winograd`] likewise into scratch (with pooling): this image's part,
    /// (O, OH*OW), to copy into `y`.
    Done(&'a [E]),
    /// One input channel: [`one_channel`]'s kernel; the bias and the activation follow.
    OneChannel,
}

/// `row[i] = act(src[i] + bias)`, one loop per activation.
#[inline]
pub(super) fn bias_act_into<E: Float>(act: Activation, bias: E, row: &mut [E], src: &[E]) {
    let each = |f: fn(E) -> E, row: &mut [E]| {
        for (d, &v) in row.iter_mut().zip(src) {
            *d = f(v + bias);
        }
    };
    match act {
        Activation::Identity => each(|v| v, row),
        Activation::Relu => each(|v| v.max(E::zero()), row),
        Activation::Tanh => each(|v| v.tanh(), row),
        Activation::Sigmoid => {
            row.copy_from_slice(src);
            E::sigmoid_in_place(row, bias);
        }
    }
}

/// Forward for one image: `x`: (C, H, W), `out`: (O, POH*POW) or (O, OH*OW); `y_save`, when
/// given, receives (O, OH*OW) for the backward pass.
#[allow(clippy::too_many_arguments)]
fn forward_image<E: Float>(
    g: &Conv2DGeometry,
    act: Activation,
    pool_geom: Option<&crate::ops::Pool2DGeometry>,
    x: &[E],
    w: &[E],
    b: Option<&[E]>,
    out: &mut [E],
    y_save: Option<&mut [E]>,
    arg: Option<&mut [u32]>,
    s: &mut Scratch<E>,
    conv: Conv<'_, E>,
) {
    let (h, wd) = g.input;
    let ohw = g.output.0 * g.output.1;
    let cg = g.in_channels / g.groups;
    let og = g.out_channels / g.groups;
    let cgkk = cg * g.kernel.0 * g.kernel.1;
    // y, the activation's output: without pooling it is the output itself; with pooling it is
    // written straight into the saved copy when backward needs one, else into scratch.
    let (y, out, save_after): (&mut [E], Option<&mut [E]>, Option<&mut [E]>) =
        match (pool_geom, y_save) {
            (None, save) => (out, None, save),
            (Some(_), Some(save)) => (save, Some(out), None),
            (Some(_), None) => (&mut s.y[..], Some(out), None),
        };
    match conv {
        Conv::Direct(plan, wpack) => {
            // The direct kernel, with the bias and the activation applied as the valid pixels
            // are copied out of its flat output.
            for grp in 0..g.groups {
                plan.fill(g, &x[grp * cg * h * wd..][..cg * h * wd], &mut s.buf);
                plan.conv(&s.buf, &wpack[grp * plan.wpack_len()..], &mut s.yflat);
                let yg = &mut y[grp * og * ohw..][..og * ohw];
                let bias = |o: usize| b.map_or(E::zero(), |b| b[grp * og + o]);
                if act == Activation::Sigmoid {
                    // Sigmoid once per plane, not per row: its vector loop has a set-up
                    // (LeNet's second conv has rows of 10).
                    plan.unflatten(g.output, &s.yflat, yg, |_, row, src| {
                        row.copy_from_slice(src)
                    });
                    for (o, plane) in yg.chunks_exact_mut(ohw).enumerate() {
                        E::sigmoid_in_place(plane, bias(o));
                    }
                } else {
                    plan.unflatten(g.output, &s.yflat, yg, |o, row, src| {
                        bias_act_into(act, bias(o), row, src)
                    });
                }
            }
        }
        Conv::InPlace => {}
        Conv::Done(src) => y.copy_from_slice(src),
        Conv::OneChannel => {
            // `one_channel::fits` holds only for E = f32
            let f32s = |v| as_f32(v).expect("one_channel implies f32");
            let f32s_mut = |v| as_f32_mut(v).expect("one_channel implies f32");
            one_channel::conv(g, f32s(x), f32s(w), f32s_mut(y), f32s_mut(&mut s.cols));
        }
        Conv::Gemm => {
            // im2col + gemm; the bias and the activation follow
            for grp in 0..g.groups {
                im2col(g, &x[grp * cg * h * wd..][..cg * h * wd], &mut s.cols);
                gemm(
                    (og, ohw, cgkk),
                    &mut y[grp * og * ohw..][..og * ohw],
                    ohw,
                    false,
                    &w[grp * og * cgkk..][..og * cgkk],
                    (cgkk, 1),
                    &s.cols,
                    (ohw, 1),
                );
            }
        }
    }
    // (the direct kernel and winograd's epilogue have applied them already)
    let planes = match conv {
        Conv::Gemm | Conv::OneChannel => g.out_channels,
        _ => 0,
    };
    for (o, plane) in y.chunks_exact_mut(ohw).take(planes).enumerate() {
        let bias = b.map_or(E::zero(), |b| b[o]);
        match act {
            Activation::Identity if b.is_some() => plane.iter_mut().for_each(|v| *v += bias),
            Activation::Identity => {}
            Activation::Sigmoid => E::sigmoid_in_place(plane, bias),
            Activation::Relu => plane
                .iter_mut()
                .for_each(|v| *v = activate(Activation::Relu, *v + bias)),
            Activation::Tanh => plane
                .iter_mut()
                .for_each(|v| *v = activate(Activation::Tanh, *v + bias)),
        }
    }
    if let Some(save) = save_after {
        save.copy_from_slice(y);
    }
    if let (Some(p), Some(out)) = (pool_geom, out) {
        let pohw = p.output.0 * p.output.1;
        let planes = y.chunks_exact(ohw).zip(out.chunks_exact_mut(pohw));
        match arg {
            // max pooling for training: keep where each maximum came from
            Some(arg) => {
                for (o, ((src, dst), arg)) in planes.zip(arg.chunks_exact_mut(pohw)).enumerate() {
                    pool::plane_max_with_arg(p, src, dst, arg, o * ohw);
                }
            }
            None => planes.for_each(|(src, dst)| pool::plane_forward(p, src, dst)),
        }
    }
}

/// Runs the fused forward pass over a batch. What backward needs is saved when its buffer is
/// non-empty: `y_save` (B, O, OH*OW), the activation's output; `arg` (B, O*POH*POW), with max
/// pooling, each maximum's position in its image's activation (then `y_save` stays empty:
/// the pooled output holds the values at those positions).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<E: Float>(
    g: &Conv2DGeometry,
    act: Activation,
    pool_geom: Option<&crate::ops::Pool2DGeometry>,
    x: &[E],
    w: &[E],
    b: Option<&[E]>,
    out: &mut [E],
    y_save: &mut [E],
    arg: &mut [u32],
) {
    // Nothing to do, and `out.len() / g.batch` below would divide by zero.
    if g.batch == 0 {
        return;
    }
    let per_x = g.in_channels * g.input.0 * g.input.1;
    let per_y = g.out_channels * g.output.0 * g.output.1;
    let per_out = out.len() / g.batch;
    let nb = images_per_task(g.batch);
    let chunks = g.batch.div_ceil(nb);
    // Each task's part of the optional buffers, or None for each task.
    fn parts<T>(v: &mut [T], len: usize, chunks: usize) -> Vec<Option<&mut [T]>> {
        match v.is_empty() {
            true => (0..chunks).map(|_| None).collect(),
            false => v.chunks_mut(len).map(Some).collect(),
        }
    }
    let ys = parts(y_save, nb * per_y, chunks);
    let args = parts(arg, nb * per_out, chunks);
    // Winograd (3x3, stride 1, f32 with AVX2) for a task's images at once, else the direct
    // kernel or im2col + gemm image by image.
    let wino = winograd::worth_it::<E>(g).map(|t| Wino::new::<E>(g, t));
    let mut u = Buffer::for_overwrite(wino.as_ref().map_or(0, Wino::u_len));
    if let Some(wn) = &wino {
        wn.filter(w, false, &mut u);
    }
    let one = wino.is_none() && one_channel::fits::<E>(g);
    let plan = (wino.is_none() && !one && direct::worth_it(g)).then(|| Plan::new::<E>(g));
    let mut wpack = Buffer::for_overwrite(plan.as_ref().map_or(0, |p| g.groups * p.wpack_len()));
    if let Some(p) = &plan {
        let per_group = w.len() / g.groups;
        for (grp, dst) in wpack.chunks_exact_mut(p.wpack_len()).enumerate() {
            p.pack(&w[grp * per_group..][..per_group], dst);
        }
    }
    out.par_chunks_mut(nb * per_out)
        .zip(ys)
        .zip(args)
        .enumerate()
        .for_each_init(
            || {
                // Winograd's scratch and its output for the task's images, (nb, O, OH*OW)
                let (work, wy) = match &wino {
                    Some(wn) if pool_geom.is_none() => (wn.scratch_len(), 0),
                    Some(wn) => (wn.scratch_len(), nb * per_y),
                    None => (0, 0),
                };
                let s = Scratch::new(g, plan.as_ref(), one);
                (s, Buffer::for_overwrite(work), Buffer::for_overwrite(wy))
            },
            |(s, work, wy), (ci, ((out, mut ys), mut args))| {
                let count = out.len() / per_out;
                // Winograd writes act(conv + bias) for the task's images: without pooling
                // straight into the output, (nb, O, OH*OW) like `wy`
                let in_place = pool_geom.is_none();
                if let Some(wn) = &wino {
                    let xs = &x[ci * nb * per_x..][..count * per_x];
                    let finish = Finish::Set { bias: b, act };
                    let dst = if in_place {
                        &mut *out
                    } else {
                        &mut wy[..count * per_y]
                    };
                    wn.run(xs, &u, dst, finish, work);
                }
                for (i, o) in out.chunks_exact_mut(per_out).enumerate() {
                    let n = ci * nb + i;
                    let y = ys.as_deref_mut().map(|ys| &mut ys[i * per_y..][..per_y]);
                    let a = args
                        .as_deref_mut()
                        .map(|a| &mut a[i * per_out..][..per_out]);
                    let conv = match (&wino, &plan) {
                        (Some(_), _) if in_place => Conv::InPlace,
                        (Some(_), _) => Conv::Done(&wy[i * per_y..][..per_y]),
                        (None, Some(p)) => Conv::Direct(p, &wpack[..]),
                        (None, None) if one => Conv::OneChannel,
                        (None, None) => Conv::Gemm,
                    };
                    forward_image(
                        g,
                        act,
                        pool_geom,
                        &x[n * per_x..][..per_x],
                        w,
                        b,
                        o,
                        y,
                        a,
                        s,
                        conv,
                    );
                }
            },
        );
}

/// Per-task gradient accumulators and scratch, from the buffer pool (see [`Scratch`]).
struct Grads<E: Float> {
    dw: Buffer<E>,
    db: Buffer<E>,
    dy: Buffer<E>,
    /// Winograd's weight gradient in the transformed domain (see [`Wino::weight_grad`]).
    du: Buffer<E>,
    cols: Buffer<E>,
    dcols: Buffer<E>,
    /// The direct kernels' buffers: x's phase planes and dy on the flat pixels for the weight
    /// gradient; dy's phase planes and dx's flat pixels for the input gradient.
    buf: Buffer<E>,
    dyflat: Buffer<E>,
    tbuf: Buffer<E>,
    tflat: Buffer<E>,
    /// Winograd's scratch for the input gradient.
    work: Buffer<E>,
}

/// Backward pass over a batch.
/// - `y`: what [`forward`] saved of the activation: all of it, (B, O, OH*OW); or, with `arg`,
///   the pooled output (B, O*POH*POW), i.e. the activation at the maxima; or empty when the
///   fusion needs none
/// - `arg`: with max pooling, the maxima's positions that [`forward`] saved, else empty
/// - `gout`: the output gradient, (B, O, POH*POW) or (B, O, OH*OW)
/// - `dx`: (B, C, H, W) or empty to skip the input gradient; added into
/// - `dw`, `db`: added into; either may be empty to skip it (`x` may then be empty too)
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<E: Float>(
    g: &Conv2DGeometry,
    act: Activation,
    pool_geom: Option<&crate::ops::Pool2DGeometry>,
    x: &[E],
    w: &[E],
    y: &[E],
    arg: &[u32],
    gout: &[E],
    dx: &mut [E],
    dw: &mut [E],
    db: &mut [E],
) {
    // Nothing to add, and `gout.len() / g.batch` below would divide by zero.
    if g.batch == 0 {
        return;
    }
    let (h, wd) = g.input;
    let ohw = g.output.0 * g.output.1;
    let cg = g.in_channels / g.groups;
    let og = g.out_channels / g.groups;
    let cgkk = cg * g.kernel.0 * g.kernel.1;
    let per_x = g.in_channels * h * wd;
    let per_y = g.out_channels * ohw;
    let per_out = gout.len() / g.batch;
    let nb = images_per_task(g.batch);
    let chunks = g.batch.div_ceil(nb);

    // The weight gradient by Winograd where the forward pass runs it, for a task's images at
    // once (their dy side by side, as for the input gradient below), summed in the
    // transformed domain and transformed back once. Always F(2x2): its transforms are
    // cheaper, and it measured faster than F(4x4) here even on 28x28 (see `Wino::weight_grad`).
    let dwino = winograd::worth_it::<E>(g)
        .filter(|_| !dw.is_empty())
        .map(|_| Wino::for_weight_grad::<E>(g, &winograd::F2));
    // The direct kernel (see [`direct`]) for the weight gradient, and for the input gradient
    // as a convolution of dy with the flipped, transposed kernel (stride 1).
    let plan = (dwino.is_none() && direct::weight_grad_layer(g) && !dw.is_empty())
        .then(|| Plan::new::<E>(g))
        .filter(direct::weight_grad_worth_it);
    // dw per image, by the direct kernel or im2col + gemm
    let dw_per_image = dwino.is_none() && !dw.is_empty();
    // The input gradient by Winograd where it pays (3x3, one group), for a task's images at
    // once: their dy are kept side by side, (nb, O, OH*OW).
    let twino = direct::transposed(g)
        .filter(|_| g.groups == 1 && !dx.is_empty())
        .and_then(|gt| winograd::worth_it::<E>(&gt).map(|t| Wino::new::<E>(&gt, t)));
    let mut ut = Buffer::for_overwrite(twino.as_ref().map_or(0, Wino::u_len));
    if let Some(t) = &twino {
        t.filter(w, true, &mut ut);
    }
    let tplan = direct::transposed(g)
        .filter(|gt| twino.is_none() && direct::worth_it(gt) && !dx.is_empty())
        .map(|gt| (Plan::new::<E>(&gt), gt));
    let mut wtpack =
        Buffer::for_overwrite(tplan.as_ref().map_or(0, |(t, _)| g.groups * t.wpack_len()));
    if let Some((t, _)) = &tplan {
        for (grp, dst) in wtpack.chunks_exact_mut(t.wpack_len()).enumerate() {
            t.pack_transposed(g, &w[grp * og * cgkk..][..og * cgkk], dst);
        }
    }
    let (dw_len, db_len, want_dx) = (dw.len(), db.len(), !dx.is_empty());
    // A task's images' dy side by side, for Winograd's input or weight gradient.
    let side_by_side = twino.is_some() || dwino.is_some();
    let work_len = [&twino, &dwino]
        .iter()
        .filter_map(|w| w.as_ref().map(Wino::scratch_len))
        .max()
        .unwrap_or(0);
    let new = || Grads {
        dw: Buffer::zeroed(if dwino.is_some() { 0 } else { dw_len }),
        du: Buffer::zeroed(dwino.as_ref().map_or(0, Wino::grad_u_len)),
        db: Buffer::zeroed(db_len),
        // written in full before they are read
        dy: Buffer::for_overwrite(if side_by_side { nb * per_y } else { per_y }),
        work: Buffer::for_overwrite(work_len),
        cols: Buffer::for_overwrite(if !dw_per_image || plan.is_some() {
            0
        } else {
            cgkk * ohw
        }),
        dcols: Buffer::for_overwrite(if tplan.is_some() || !want_dx {
            0
        } else {
            cgkk * ohw
        }),
        buf: Buffer::for_overwrite(plan.as_ref().map_or(0, |p| p.len)),
        dyflat: Buffer::for_overwrite(plan.as_ref().map_or(0, |p| p.flat_len())),
        tbuf: Buffer::for_overwrite(tplan.as_ref().map_or(0, |(t, _)| t.len)),
        tflat: Buffer::for_overwrite(tplan.as_ref().map_or(0, |(t, _)| t.flat_len())),
    };
    // One image's dy (into slot `slot` of `a.dy`), bias and weight gradients, and its input
    // gradient unless that is left to Winograd (`dx` None).
    let image = |a: &mut Grads<E>, n: usize, slot: usize, dx: Option<&mut [E]>| {
        let dyv = &mut a.dy[slot * per_y..][..per_y];
        let go = &gout[n * per_out..][..per_out];
        let per_saved = if arg.is_empty() { per_y } else { per_out };
        let yn = if y.is_empty() {
            &[][..]
        } else {
            &y[n * per_saved..][..per_saved]
        };
        // dy: the gradient at the conv's output (through the pool and the activation).
        if !arg.is_empty() {
            // Max pooling with saved maxima: only they get gradient, times the activation's
            // derivative there (the pooled output is the activation's value at each maximum).
            dyv.fill(E::zero());
            let an = &arg[n * per_out..][..per_out];
            match act {
                Activation::Identity => scatter(dyv, an, go, yn, |_| E::one()),
                Activation::Relu => {
                    scatter(dyv, an, go, yn, |y| activation_grad(Activation::Relu, y))
                }
                Activation::Sigmoid => {
                    scatter(dyv, an, go, yn, |y| activation_grad(Activation::Sigmoid, y))
                }
                Activation::Tanh => {
                    scatter(dyv, an, go, yn, |y| activation_grad(Activation::Tanh, y))
                }
            }
        } else {
            match pool_geom {
                Some(p) => {
                    dyv.fill(E::zero());
                    let pohw = p.output.0 * p.output.1;
                    for o in 0..g.out_channels {
                        let src = if yn.is_empty() {
                            &[][..]
                        } else {
                            &yn[o * ohw..][..ohw]
                        };
                        let d = &mut dyv[o * ohw..][..ohw];
                        pool::plane_backward(p, src, &go[o * pohw..][..pohw], d);
                    }
                }
                None => dyv.copy_from_slice(go),
            }
            // One loop per activation (a `match` inside the loop is not hoisted, and costs a jump
            // per element).
            match act {
                Activation::Identity => {}
                Activation::Relu => scale_by(dyv, yn, |y| activation_grad(Activation::Relu, y)),
                Activation::Sigmoid => {
                    scale_by(dyv, yn, |y| activation_grad(Activation::Sigmoid, y))
                }
                Activation::Tanh => scale_by(dyv, yn, |y| activation_grad(Activation::Tanh, y)),
            }
        }
        if !a.db.is_empty() {
            for (o, plane) in dyv.chunks_exact(ohw).enumerate() {
                a.db[o] += crate::ops::sum_by(plane, |v| v);
            }
        }
        let xn = if x.is_empty() {
            &[][..]
        } else {
            &x[n * per_x..][..per_x]
        };
        let mut dx = dx;
        for grp in 0..g.groups {
            let dy = &dyv[grp * og * ohw..][..og * ohw];
            if let Some(p) = &plan {
                p.fill(g, &xn[grp * cg * h * wd..][..cg * h * wd], &mut a.buf);
                p.flatten(g.output, dy, &mut a.dyflat);
                p.weight_grad(&a.buf, &a.dyflat, &mut a.dw[grp * og * cgkk..][..og * cgkk]);
            } else if dw_per_image {
                im2col(g, &xn[grp * cg * h * wd..][..cg * h * wd], &mut a.cols);
                // dw_g (og, cgkk) += dy_g (og, ohw) * cols^T (ohw, cgkk)
                gemm(
                    (og, cgkk, ohw),
                    &mut a.dw[grp * og * cgkk..][..og * cgkk],
                    cgkk,
                    true,
                    dy,
                    (ohw, 1),
                    &a.cols,
                    (1, ohw),
                );
            }
            match (dx.as_deref_mut(), &tplan) {
                (None, _) => {}
                (Some(dx), Some((t, gt))) => {
                    t.fill(gt, dy, &mut a.tbuf);
                    t.conv(&a.tbuf, &wtpack[grp * t.wpack_len()..], &mut a.tflat);
                    let dxg = &mut dx[grp * cg * h * wd..][..cg * h * wd];
                    t.unflatten(g.input, &a.tflat, dxg, |_, row, src| {
                        row.iter_mut().zip(src).for_each(|(d, &s)| *d += s)
                    });
                }
                (Some(dx), None) => {
                    // dcols (cgkk, ohw) = w_g^T (cgkk, og) * dy_g (og, ohw)
                    gemm(
                        (cgkk, ohw, og),
                        &mut a.dcols,
                        ohw,
                        false,
                        &w[grp * og * cgkk..][..og * cgkk],
                        (1, cgkk),
                        dy,
                        (ohw, 1),
                    );
                    col2im(g, &a.dcols, &mut dx[grp * cg * h * wd..][..cg * h * wd]);
                }
            }
        }
    };
    // Winograd's weight gradient of the task whose first image is `first`, once its `count`
    // images' dy are in `a.dy`.
    let task_dw = |a: &mut Grads<E>, first: usize, count: usize| {
        if let Some(d) = &dwino {
            let xs = &x[first * per_x..][..count * per_x];
            d.weight_grad(xs, &a.dy[..count * per_y], &mut a.du, &mut a.work);
        }
    };
    let sum = |mut a: Grads<E>, b: Grads<E>| {
        add_into(&mut a.dw, &b.dw);
        add_into(&mut a.du, &b.du);
        add_into(&mut a.db, &b.db);
        a
    };
    let total = if dx.is_empty() {
        (0..chunks)
            .into_par_iter()
            .fold(new, |mut a, ci| {
                let images = ci * nb..((ci + 1) * nb).min(g.batch);
                for (i, n) in images.clone().enumerate() {
                    image(&mut a, n, if side_by_side { i } else { 0 }, None);
                }
                task_dw(&mut a, images.start, images.len());
                a
            })
            .reduce_with(sum)
    } else {
        dx.par_chunks_mut(nb * per_x)
            .enumerate()
            .fold(new, |mut a, (ci, dxc)| {
                map_for_writing(dxc);
                for (i, dxn) in dxc.chunks_exact_mut(per_x).enumerate() {
                    // (Winograd's input gradient runs for the whole task below)
                    let dxn = twino.is_none().then_some(dxn);
                    image(&mut a, ci * nb + i, if side_by_side { i } else { 0 }, dxn);
                }
                let count = dxc.len() / per_x;
                task_dw(&mut a, ci * nb, count);
                if let Some(t) = &twino {
                    t.run(&a.dy[..count * per_y], &ut, dxc, Finish::Add, &mut a.work);
                }
                a
            })
            .reduce_with(sum)
    };
    if let Some(t) = total {
        match &dwino {
            Some(d) => d.add_weight_grad(&t.du, dw),
            None => add_into(dw, &t.dw),
        }
        add_into(db, &t.db);
    }
}

/// What the backward pass keeps on the host: the operands, and the activation's output or the
/// maxima (see [`forward`]).
pub struct CpuConv2DSaved<E: Float> {
    x: Buffer<E>,
    w: Buffer<E>,
    y: Buffer<E>,
    arg: Buffer<u32>,
}

impl<E: Float> Conv2DKernel<E> for Cpu {
    type Conv2DSaved = CpuConv2DSaved<E>;

    fn conv2d_forward<Sx: Shape, Sw: Shape, Sb: Shape, So: Shape>(
        &self,
        op: &Conv2DOp,
        x: &Tensor<Sx, E, Self>,
        w: &Tensor<Sw, E, Self>,
        b: Option<&Tensor<Sb, E, Self>>,
        out_shape: So,
        save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::Conv2DSaved), Self::Err> {
        let &Conv2DOp {
            geom, act, pool, ..
        } = op;
        let (oh, ow) = geom.output;
        // The input's copy (one thread's `memcpy`: dfdx's `copy_into`) beside the rest: the
        // weights' copies and the output's buffer, whose clearing, when new, takes the other
        // core (and any the copy leaves idle). Every element of the output is written by
        // the kernel.
        let (xh, (wh, bh, mut out)) = rayon::join(
            || to_host(x),
            || {
                let out = Buffer::for_overwrite(out_shape.num_elements());
                (to_host(w), b.map(to_host), out)
            },
        );
        // What backward needs: with max pooling, where each maximum came from (and the pooled
        // output, the activation's value there); otherwise the activation's output, for its
        // derivative.
        let max_pool = pool.is_some_and(|p| p.kind == PoolKind::Max);
        let keep_arg = save && max_pool;
        let keep_y = save && !max_pool && act != Activation::Identity;
        let mut y = Buffer::for_overwrite(if keep_y {
            geom.batch * geom.out_channels * oh * ow
        } else {
            0
        });
        let mut arg = Buffer::<u32>::for_overwrite(if keep_arg { out.len() } else { 0 });
        forward(
            &geom,
            act,
            pool.as_ref(),
            &xh,
            &wh,
            bh.as_deref(),
            &mut out,
            &mut y,
            &mut arg,
        );
        if keep_arg && act != Activation::Identity {
            y = Buffer::for_overwrite(out.len());
            crate::ops::par_copy(&mut y, &out);
        }
        let out = self.try_tensor_from_vec(out.into_vec(), out_shape)?;
        let saved = CpuConv2DSaved {
            x: xh,
            w: wh,
            y,
            arg,
        };
        Ok((out, saved))
    }

    fn conv2d_backward(
        &self,
        op: &Conv2DOp,
        saved: Self::Conv2DSaved,
        gout: &Self::Vec,
        dx: Option<&mut Self::Vec>,
        dw: &mut Self::Vec,
        db: Option<&mut Self::Vec>,
    ) -> Result<(), Self::Err> {
        let CpuConv2DSaved { x, w, y, arg } = saved;
        // dx is accumulated in place; dw and db are summed over the rayon tasks, then added.
        let mut dw_new = Buffer::zeroed(w.len());
        let mut db_new = Buffer::zeroed(if db.is_some() {
            op.geom.out_channels
        } else {
            0
        });
        // dx usually arrives fresh from dfdx's gradient store: calloc'd pages never touched.
        // Accumulating into it in place faults every page twice (the read maps the zero page,
        // the write copies it and shoots down the other threads' TLBs), a quarter of a ResNet
        // training step. Accumulate into a pooled copy instead and hand that over.
        let mut dx_new = match &dx {
            Some(dx) => {
                let mut b = Buffer::for_overwrite(dx.len());
                crate::ops::par_copy(&mut b, dx);
                b
            }
            None => Buffer::for_overwrite(0),
        };
        backward(
            &op.geom,
            op.act,
            op.pool.as_ref(),
            &x,
            &w,
            &y,
            &arg,
            gout,
            &mut dx_new,
            &mut dw_new,
            &mut db_new,
        );
        if let Some(dx) = dx {
            // CachableVec derefs to the Vec it holds
            **dx = dx_new.into_vec();
        }
        add_into(dw, &dw_new);
        if let Some(db) = db {
            add_into(db, &db_new);
        }
        Ok(())
    }
}

/// `dst += src`, element-wise.
pub(crate) fn add_into<E: Float>(dst: &mut [E], src: &[E]) {
    assert_eq!(dst.len(), src.len(), "gradient buffers differ in length");
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}
