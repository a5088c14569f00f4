//! The conv and pool ops against independent oracles: a nested-loop reference written straight
//! from the definition (d2l 6.2–6.5, PyTorch's docs), central finite differences of that
//! reference for every gradient, and the numbers printed in d2l.

mod common;

use cnn::ops::{Activation, Conv2DGeometry, Pool2DGeometry, PoolKind, try_conv2d, try_pool2d};
use common::{Rng, TestDevice, finite_diff, max_diff};
use dfdx::prelude::*;

const NO_BIAS: Option<&Tensor<(usize,), f64, TestDevice>> = None;

/// PyTorch's conv2d, from its definition, with `act` and `pool` after it.
fn reference_conv(
    g: &Conv2DGeometry,
    act: Activation,
    pool: Option<&Pool2DGeometry>,
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
) -> Vec<f64> {
    let (h, wd) = g.input;
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (cg, og) = (g.in_channels / g.groups, g.out_channels / g.groups);
    let mut y = vec![0.0; g.batch * g.out_channels * oh * ow];
    for n in 0..g.batch {
        for o in 0..g.out_channels {
            let grp = o / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = b.map_or(0.0, |b| b[o]);
                    for c in 0..cg {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize
                                    - g.padding.0 as isize;
                                let ix = (ox * g.stride.1 + kj * g.dilation.1) as isize
                                    - g.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x[((n * g.in_channels + grp * cg + c) * h + iy as usize)
                                    * wd
                                    + ix as usize];
                                s += xv * w[((o * cg + c) * kh + ki) * kw + kj];
                            }
                        }
                    }
                    y[((n * g.out_channels + o) * oh + oy) * ow + ox] = match act {
                        Activation::Identity => s,
                        Activation::Relu => s.max(0.0),
                        Activation::Sigmoid => 1.0 / (1.0 + (-s).exp()),
                        Activation::Tanh => s.tanh(),
                    };
                }
            }
        }
    }
    match pool {
        Some(p) => reference_pool(p, &y),
        None => y,
    }
}

/// PyTorch's max_pool2d / avg_pool2d (count_include_pad), from the definition.
fn reference_pool(p: &Pool2DGeometry, x: &[f64]) -> Vec<f64> {
    let (h, w) = p.input;
    let (oh, ow) = p.output;
    let planes = x.len() / (h * w);
    let mut out = Vec::with_capacity(planes * oh * ow);
    for plane in x.chunks(h * w) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut vals = vec![];
                for ky in 0..p.kernel.0 {
                    for kx in 0..p.kernel.1 {
                        let iy = (oy * p.stride.0 + ky) as isize - p.padding.0 as isize;
                        let ix = (ox * p.stride.1 + kx) as isize - p.padding.1 as isize;
                        let inside = iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize;
                        match (inside, p.kind) {
                            (true, _) => vals.push(plane[iy as usize * w + ix as usize]),
                            (false, PoolKind::Avg) => vals.push(0.0),
                            (false, PoolKind::Max) => {}
                        }
                    }
                }
                out.push(match p.kind {
                    PoolKind::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    PoolKind::Avg => vals.iter().sum::<f64>() / (p.kernel.0 * p.kernel.1) as f64,
                });
            }
        }
    }
    out
}

fn pool_geom(
    kind: PoolKind,
    input: (usize, usize),
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
) -> Pool2DGeometry {
    let output = (
        cnn::shape::pool_out(input.0, k.0, s.0, p.0),
        cnn::shape::pool_out(input.1, k.1, s.1, p.1),
    );
    Pool2DGeometry {
        kind,
        input,
        output,
        kernel: k,
        stride: s,
        padding: p,
    }
}

/// Runs the op forward and backward on the test device and checks both against the oracles.
fn check_conv(
    g: Conv2DGeometry,
    act: Activation,
    pool: Option<Pool2DGeometry>,
    bias: bool,
    seed: u64,
) {
    let dev: TestDevice = Default::default();
    let mut rng = Rng::new(seed);
    let cg = g.in_channels / g.groups;
    let x = rng.vec(g.batch * g.in_channels * g.input.0 * g.input.1);
    let w = rng.vec(g.out_channels * cg * g.kernel.0 * g.kernel.1);
    let b = bias.then(|| rng.vec(g.out_channels));
    let expect = reference_conv(&g, act, pool.as_ref(), &x, &w, b.as_deref());
    let r = rng.vec(expect.len());

    let xt = dev.tensor_from_vec(x.clone(), (x.len(),));
    let wt = dev.tensor_from_vec(w.clone(), (w.len(),));
    let bt = b.clone().map(|b| dev.tensor_from_vec(b, (g.out_channels,)));
    let rt = dev.tensor_from_vec(r.clone(), (r.len(),));
    let out = try_conv2d(
        xt.leaky_trace(),
        &wt,
        bt.as_ref(),
        g,
        act,
        pool,
        (expect.len(),),
        true,
    )
    .unwrap();
    let got = out.as_vec();
    assert!(
        max_diff(&got, &expect) < 1e-12,
        "forward differs: {g:?} {act:?} {pool:?}"
    );

    let grads = (out * rt).sum().backward();
    let fx = finite_diff(&x, &r, |x| {
        reference_conv(&g, act, pool.as_ref(), x, &w, b.as_deref())
    });
    let fw = finite_diff(&w, &r, |w| {
        reference_conv(&g, act, pool.as_ref(), &x, w, b.as_deref())
    });
    let tol = 1e-6;
    assert!(
        max_diff(&grads.get(&xt).as_vec(), &fx) < tol,
        "input gradient differs: {g:?} {act:?} {pool:?}"
    );
    assert!(
        max_diff(&grads.get(&wt).as_vec(), &fw) < tol,
        "weight gradient differs: {g:?} {act:?} {pool:?}"
    );
    if let (Some(b), Some(bt)) = (&b, &bt) {
        let fb = finite_diff(b, &r, |b| {
            reference_conv(&g, act, pool.as_ref(), &x, &w, Some(b))
        });
        assert!(
            max_diff(&grads.get(bt).as_vec(), &fb) < tol,
            "bias gradient differs: {g:?} {act:?} {pool:?}"
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn geom(
    batch: usize,
    (c, o, groups): (usize, usize, usize),
    input: (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
) -> Conv2DGeometry {
    let output = (
        cnn::shape::conv_out(
            input.0, kernel.0, stride.0, padding.0, padding.0, dilation.0,
        ),
        cnn::shape::conv_out(
            input.1, kernel.1, stride.1, padding.1, padding.1, dilation.1,
        ),
    );
    Conv2DGeometry {
        batch,
        in_channels: c,
        out_channels: o,
        groups,
        input,
        output,
        kernel,
        stride,
        padding,
        dilation,
    }
}

#[test]
fn conv_matches_reference_for_every_option() {
    use Activation::*;
    let cases = [
        // plain, batch 1
        (
            geom(1, (1, 1, 1), (5, 5), (3, 3), (1, 1), (0, 0), (1, 1)),
            Identity,
            true,
        ),
        // rectangular kernel, stride and padding; batch > 1
        (
            geom(3, (2, 3, 1), (7, 6), (3, 2), (2, 1), (1, 0), (1, 1)),
            Identity,
            true,
        ),
        // dilation
        (
            geom(2, (2, 2, 1), (8, 7), (3, 2), (1, 2), (2, 1), (2, 3)),
            Tanh,
            false,
        ),
        // groups
        (
            geom(2, (4, 6, 2), (6, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
            Sigmoid,
            true,
        ),
        // depthwise
        (
            geom(2, (3, 3, 3), (5, 6), (3, 3), (2, 2), (1, 1), (1, 1)),
            Identity,
            false,
        ),
        // a kernel column that only ever reads padding (width 3, kernel 4 dilated by 2,
        // padding 2: its last column starts past the image for every output), which made the
        // CPU's im2col slice past the row; found by tests/cuda_vs_cpu.rs
        (
            geom(2, (2, 2, 1), (5, 3), (3, 4), (1, 1), (1, 2), (1, 2)),
            Identity,
            true,
        ),
        // 1x1
        (
            geom(2, (3, 4, 1), (4, 5), (1, 1), (1, 1), (0, 0), (1, 1)),
            Relu,
            true,
        ),
        // more images than one task takes, uneven split
        (
            geom(19, (2, 2, 1), (5, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
            Sigmoid,
            true,
        ),
        // LeNet's first layer's shape (6 output channels, 5x5, padding 2), on an image large
        // enough that its weight gradient runs on the direct kernel's planes (4+ channels)
        (
            geom(2, (2, 6, 1), (14, 14), (5, 5), (1, 1), (2, 2), (1, 1)),
            Sigmoid,
            true,
        ),
        // the same, 4 output channels per group, stride 2
        (
            geom(2, (4, 8, 2), (24, 24), (3, 3), (2, 2), (1, 1), (1, 1)),
            Relu,
            true,
        ),
    ];
    for (i, (g, act, bias)) in cases.into_iter().enumerate() {
        check_conv(g, act, None, bias, i as u64);
    }
}

#[test]
fn fused_conv_act_pool_matches_reference() {
    let g = geom(3, (2, 3, 1), (8, 8), (3, 3), (1, 1), (1, 1), (1, 1));
    for (i, act) in [
        Activation::Identity,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
    ]
    .into_iter()
    .enumerate()
    {
        for kind in [PoolKind::Max, PoolKind::Avg] {
            check_conv(
                g,
                act,
                Some(pool_geom(kind, (8, 8), (2, 2), (2, 2), (0, 0))),
                true,
                10 + i as u64,
            );
            check_conv(
                g,
                act,
                Some(pool_geom(kind, (8, 8), (3, 2), (2, 1), (1, 1))),
                false,
                20 + i as u64,
            );
        }
    }
}

#[test]
fn conv_skips_input_gradient_when_told() {
    let dev: TestDevice = Default::default();
    let g = geom(2, (1, 2, 1), (5, 5), (3, 3), (1, 1), (0, 0), (1, 1));
    let x = dev.tensor_from_vec(Rng::new(1).vec(50), (50,));
    let w = dev.tensor_from_vec(Rng::new(2).vec(18), (18,));
    let out = try_conv2d(
        x.leaky_trace(),
        &w,
        NO_BIAS,
        g,
        Activation::Identity,
        None,
        (2 * 2 * 9,),
        false,
    )
    .unwrap();
    let mut grads = out.sum().backward();
    // The weight still gets its gradient; the input's is never written (so it stays zero).
    assert!(grads.get(&w).as_vec().iter().any(|v| *v != 0.0));
    assert!(grads.get_or_alloc_mut(&x).is_ok());
    assert!(grads.get(&x).as_vec().iter().all(|v| *v == 0.0));
}

/// The op in `f32` against the f64 oracles (forward: the nested loops; gradients: finite
/// differences of them), within `tol` relative to the largest magnitude of each: f32 sums in a
/// different order and has 6e-8 steps. The CPU's f32 path has its own (AVX2) microkernels.
fn check_conv_f32(
    g: Conv2DGeometry,
    act: Activation,
    pool: Option<Pool2DGeometry>,
    bias: bool,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let cg = g.in_channels / g.groups;
    let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let f64s = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    // Values exact in f32, so the oracle sees the same operands.
    let x = f64s(f32s(
        &rng.vec(g.batch * g.in_channels * g.input.0 * g.input.1),
    ));
    let w = f64s(f32s(
        &rng.vec(g.out_channels * cg * g.kernel.0 * g.kernel.1),
    ));
    let b = bias.then(|| f64s(f32s(&rng.vec(g.out_channels))));
    let expect = reference_conv(&g, act, pool.as_ref(), &x, &w, b.as_deref());
    let r = f64s(f32s(&rng.vec(expect.len())));
    let [out, dx, dw, db] = conv_f32(g, act, pool, [&x, &w, b.as_deref().unwrap_or(&[]), &r]);
    let close = |got: Vec<f64>, expect: &[f64], what: &str| {
        let scale = expect.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let d = max_diff(&got, expect) / scale;
        assert!(
            d < 1e-5,
            "f32 {what} differs by {d:e}: {g:?} {act:?} {pool:?}"
        );
    };
    close(out, &expect, "forward");
    let fx = finite_diff(&x, &r, |x| {
        reference_conv(&g, act, pool.as_ref(), x, &w, b.as_deref())
    });
    let fw = finite_diff(&w, &r, |w| {
        reference_conv(&g, act, pool.as_ref(), &x, w, b.as_deref())
    });
    close(dx, &fx, "input gradient");
    close(dw, &fw, "weight gradient");
    if let Some(b) = &b {
        let fb = finite_diff(b, &r, |b| {
            reference_conv(&g, act, pool.as_ref(), &x, &w, Some(b))
        });
        close(db, &fb, "bias gradient");
    }
}

/// The f32 op on `[x, w, b, r]` (f64 values exact in f32; `b` empty for no bias): its output
/// and the gradients of `sum(out * r)` for `x`, `w` and `b`, in f64 (`db` empty for no bias).
fn conv_f32(
    g: Conv2DGeometry,
    act: Activation,
    pool: Option<Pool2DGeometry>,
    [x, w, b, r]: [&[f64]; 4],
) -> [Vec<f64>; 4] {
    let dev: TestDevice = Default::default();
    let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let f64s = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    let xt = dev.tensor_from_vec(f32s(x), (x.len(),));
    let wt = dev.tensor_from_vec(f32s(w), (w.len(),));
    let bt = (!b.is_empty()).then(|| dev.tensor_from_vec(f32s(b), (b.len(),)));
    let rt = dev.tensor_from_vec(f32s(r), (r.len(),));
    let out = try_conv2d(
        xt.leaky_trace(),
        &wt,
        bt.as_ref(),
        g,
        act,
        pool,
        (r.len(),),
        true,
    )
    .unwrap();
    let y = f64s(out.as_vec());
    let grads = (out * rt).sum().backward();
    let db = bt.map_or(Vec::new(), |bt| f64s(grads.get(&bt).as_vec()));
    [
        y,
        f64s(grads.get(&xt).as_vec()),
        f64s(grads.get(&wt).as_vec()),
        db,
    ]
}

/// Layers with 16 or more output channels per group and a kernel larger than 1x1 take the
/// CPU's direct kernel (phase planes, `src/ops/conv2d/direct.rs`) instead of im2col + gemm
/// (their weight gradient too when the image has 128 flat pixels or more), and with 16 or more
/// input channels per group and stride 1 their input gradient does too: the oracles on the shapes it
/// must handle, in f64 (the portable microkernel) and f32 (AVX2 where the CPU has it).
#[test]
fn wide_conv_matches_reference() {
    use Activation::*;
    let max_pool = Some(pool_geom(PoolKind::Max, (6, 6), (2, 2), (2, 2), (0, 0)));
    let cases = [
        // 3x3, stride 1, padding 1, batch 1, odd sizes
        (
            geom(1, (3, 16, 1), (7, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
            Relu,
            true,
            None,
        ),
        // stride 2 with padding; output channels not a multiple of the tile's 4
        (
            geom(2, (2, 18, 1), (9, 8), (3, 3), (2, 2), (1, 1), (1, 1)),
            Identity,
            true,
            None,
        ),
        // 1x1, stride 2 (ResNet's shortcut: the gemm path, checked in f32 here too)
        (
            geom(2, (3, 16, 1), (7, 7), (1, 1), (2, 2), (0, 0), (1, 1)),
            Identity,
            true,
            None,
        ),
        // 3x1, strides (1, 2), 16 input channels
        (
            geom(2, (16, 16, 1), (5, 4), (3, 1), (1, 2), (1, 0), (1, 1)),
            Tanh,
            false,
            None,
        ),
        // stride 2 without padding, 16 input channels: the input gradient by col2im
        (
            geom(1, (16, 16, 1), (6, 5), (3, 3), (2, 2), (0, 0), (1, 1)),
            Identity,
            true,
            None,
        ),
        // 3x3, stride 1, 16 input channels (the input gradient runs direct), odd size
        (
            geom(1, (16, 17, 1), (5, 3), (3, 3), (1, 1), (1, 1), (1, 1)),
            Sigmoid,
            true,
            None,
        ),
        // rectangular kernel, dilation, different strides and paddings per axis
        (
            geom(2, (2, 17, 1), (9, 8), (3, 2), (1, 2), (2, 1), (2, 3)),
            Tanh,
            false,
            None,
        ),
        // dilation, stride 1, input gradient direct
        (
            geom(1, (16, 16, 1), (5, 4), (3, 3), (1, 1), (2, 1), (2, 2)),
            Identity,
            true,
            None,
        ),
        // 5x5, padding 2, input gradient direct
        (
            geom(1, (16, 16, 1), (4, 5), (5, 5), (1, 1), (2, 2), (1, 1)),
            Identity,
            true,
            None,
        ),
        // groups, 16 channels each
        (
            geom(1, (32, 32, 2), (3, 3), (3, 3), (1, 1), (1, 1), (1, 1)),
            Relu,
            true,
            None,
        ),
        // with a fused max pool
        (
            geom(2, (3, 16, 1), (6, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
            Relu,
            true,
            max_pool,
        ),
        // Images with 128 or more flat pixels, where the weight gradient runs direct too:
        // stride 1; stride 2 with 18 channels; dilation; groups
        (
            geom(1, (2, 16, 1), (12, 10), (3, 3), (1, 1), (1, 1), (1, 1)),
            Relu,
            true,
            None,
        ),
        (
            geom(1, (2, 18, 1), (24, 22), (3, 3), (2, 2), (1, 1), (1, 1)),
            Identity,
            true,
            None,
        ),
        (
            geom(1, (2, 16, 1), (12, 11), (3, 3), (1, 1), (2, 2), (2, 2)),
            Tanh,
            false,
            None,
        ),
        (
            geom(1, (4, 32, 2), (12, 12), (3, 3), (1, 1), (1, 1), (1, 1)),
            Sigmoid,
            true,
            None,
        ),
        // more images than one task takes, uneven split
        (
            geom(19, (2, 16, 1), (4, 4), (3, 3), (1, 1), (1, 1), (1, 1)),
            Identity,
            true,
            None,
        ),
        // One input channel (in f32 with AVX2, `one_channel`'s forward kernel): LeNet's first
        // layer (its kernel, padding, sigmoid and average pool) on 12x12 images, three tasks
        // of one image; 3x3 on 35 output columns (a block of 32 and a short one) with a max
        // pool; 7x7
        (
            geom(3, (1, 6, 1), (12, 12), (5, 5), (1, 1), (2, 2), (1, 1)),
            Sigmoid,
            true,
            Some(pool_geom(PoolKind::Avg, (12, 12), (2, 2), (2, 2), (0, 0))),
        ),
        (
            geom(2, (1, 5, 1), (9, 37), (3, 3), (1, 1), (1, 0), (1, 1)),
            Relu,
            true,
            Some(pool_geom(PoolKind::Max, (9, 35), (2, 2), (2, 2), (0, 0))),
        ),
        (
            geom(1, (1, 4, 1), (10, 9), (7, 7), (1, 1), (3, 3), (1, 1)),
            Tanh,
            false,
            None,
        ),
    ];
    for (i, (g, act, bias, pool)) in cases.into_iter().enumerate() {
        check_conv(g, act, pool, bias, 200 + i as u64);
        check_conv_f32(g, act, pool, bias, 300 + i as u64);
    }
}

/// The exact gradients of `sum(r * conv(x, w, b) -> act -> pool)` from their definition
/// (the adjoint of [`reference_conv`]'s loops): `(dx, dw, db)`. Finite differences cost one
/// whole reference convolution per input value, minutes at Winograd's sizes. Max pooling
/// only (the maximum of each window gets its gradient; random data has no ties).
fn reference_conv_grads(
    g: &Conv2DGeometry,
    act: Activation,
    pool: Option<&Pool2DGeometry>,
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
    r: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (h, wd) = g.input;
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (cg, og) = (g.in_channels / g.groups, g.out_channels / g.groups);
    let y = reference_conv(g, act, None, x, w, b);
    // gy: the gradient at the activation's output
    let gy = match pool {
        None => r.to_vec(),
        Some(p) => {
            assert_eq!(p.kind, PoolKind::Max, "the oracle knows max pooling only");
            let (poh, pow) = p.output;
            let mut gy = vec![0.0; y.len()];
            for (plane, (ys, gs)) in y.chunks(oh * ow).zip(gy.chunks_mut(oh * ow)).enumerate() {
                for py in 0..poh {
                    for px in 0..pow {
                        let mut best: Option<(f64, usize)> = None;
                        for ky in 0..p.kernel.0 {
                            for kx in 0..p.kernel.1 {
                                let iy = (py * p.stride.0 + ky) as isize - p.padding.0 as isize;
                                let ix = (px * p.stride.1 + kx) as isize - p.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= oh as isize || ix >= ow as isize {
                                    continue;
                                }
                                let at = iy as usize * ow + ix as usize;
                                if best.is_none_or(|(v, _)| ys[at] > v) {
                                    best = Some((ys[at], at));
                                }
                            }
                        }
                        if let Some((_, at)) = best {
                            gs[at] += r[(plane * poh + py) * pow + px];
                        }
                    }
                }
            }
            gy
        }
    };
    // gz: the gradient at conv + bias, through the activation (written in terms of y)
    let gz: Vec<f64> = gy
        .iter()
        .zip(&y)
        .map(|(&gy, &y)| {
            gy * match act {
                Activation::Identity => 1.0,
                Activation::Relu => (y > 0.0) as u8 as f64,
                Activation::Sigmoid => y * (1.0 - y),
                Activation::Tanh => 1.0 - y * y,
            }
        })
        .collect();
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; g.out_channels];
    for n in 0..g.batch {
        for o in 0..g.out_channels {
            let grp = o / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let gv = gz[((n * g.out_channels + o) * oh + oy) * ow + ox];
                    db[o] += gv;
                    for c in 0..cg {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize
                                    - g.padding.0 as isize;
                                let ix = (ox * g.stride.1 + kj * g.dilation.1) as isize
                                    - g.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((n * g.in_channels + grp * cg + c) * h + iy as usize)
                                    * wd
                                    + ix as usize;
                                let wi = ((o * cg + c) * kh + ki) * kw + kj;
                                dx[xi] += gv * w[wi];
                                dw[wi] += gv * x[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// 3x3 stride-1 layers with 16 or more channels each way and 32 or more one way run on
/// Winograd in f32 on CPUs with AVX2 and FMA (`src/ops/conv2d/winograd.rs`): F(4x4, 3x3) from
/// 20x20 outputs up, F(2x2, 3x3) below, for the forward pass and the input gradient (whose
/// geometry is the forward's with the channels swapped). Odd sizes and sizes that are not
/// multiples of the tiles, paddings 0 to 2, bias, activations, a fused max pool, several
/// tasks. Against the f64 oracles within 2e-5 of each result's largest magnitude: F(4x4)'s
/// f32 error measured 5e-6 to 1.3e-5 of the largest output (32 to 512 channels, N(0, 1) data,
/// Kaiming weights; F(2x2) 2e-7 to 1e-6, the direct kernel 6e-7 to 3e-6), and a wrong
/// transform is off by the size of the values themselves. Elsewhere (f64, other CPUs) the same
/// cases check the direct kernel.
#[test]
fn winograd_conv_matches_reference() {
    use Activation::*;
    let pool28 = Some(pool_geom(PoolKind::Max, (28, 28), (2, 2), (2, 2), (0, 0)));
    let cases = [
        // F(2x2): odd sizes, padding 1
        (
            geom(2, (16, 32, 1), (7, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
            Relu,
            true,
            None,
        ),
        // padding 0 (the input gradient's padding 2), output 7x8
        (
            geom(3, (32, 16, 1), (9, 10), (3, 3), (1, 1), (0, 0), (1, 1)),
            Identity,
            true,
            None,
        ),
        // padding 2 (the input gradient's padding 0), output 13x15
        (
            geom(1, (24, 40, 1), (11, 13), (3, 3), (1, 1), (2, 2), (1, 1)),
            Tanh,
            false,
            None,
        ),
        // 96 channels in, 6x6
        (
            geom(2, (96, 64, 1), (6, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
            Identity,
            true,
            None,
        ),
        // 4x4, the smallest output Winograd takes; 9 images: several tasks, uneven
        (
            geom(9, (16, 32, 1), (4, 4), (3, 3), (1, 1), (1, 1), (1, 1)),
            Sigmoid,
            true,
            None,
        ),
        // F(4x4): 28x28 with a fused max pool, as VGG's
        (
            geom(2, (32, 32, 1), (28, 28), (3, 3), (1, 1), (1, 1), (1, 1)),
            Relu,
            true,
            pool28,
        ),
        // odd, not multiples of 4, 48 -> 64
        (
            geom(1, (48, 64, 1), (23, 21), (3, 3), (1, 1), (1, 1), (1, 1)),
            Identity,
            true,
            None,
        ),
        // padding 0: output 22x20; padding 2: output 26x26
        (
            geom(1, (32, 16, 1), (24, 22), (3, 3), (1, 1), (0, 0), (1, 1)),
            Relu,
            true,
            None,
        ),
        (
            geom(1, (16, 48, 1), (24, 24), (3, 3), (1, 1), (2, 2), (1, 1)),
            Identity,
            true,
            None,
        ),
    ];
    for (i, (g, act, bias, pool)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(700 + i as u64);
        let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let f64s = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        // values exact in f32, so the oracle sees the same operands
        let x = f64s(f32s(
            &rng.vec(g.batch * g.in_channels * g.input.0 * g.input.1),
        ));
        let w = f64s(f32s(&rng.vec(g.out_channels * g.in_channels * 9)));
        let b = bias.then(|| f64s(f32s(&rng.vec(g.out_channels))));
        let expect = reference_conv(&g, act, pool.as_ref(), &x, &w, b.as_deref());
        let r = f64s(f32s(&rng.vec(expect.len())));
        let (dx, dw, db) = reference_conv_grads(&g, act, pool.as_ref(), &x, &w, b.as_deref(), &r);
        let [got, got_dx, got_dw, got_db] =
            conv_f32(g, act, pool, [&x, &w, b.as_deref().unwrap_or(&[]), &r]);
        let close = |got: Vec<f64>, expect: &[f64], what: &str| {
            let scale = expect.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
            let d = max_diff(&got, expect) / scale;
            assert!(
                d < 2e-5,
                "{what} differs by {d:e} of its largest: {g:?} {act:?} {pool:?}"
            );
        };
        close(got, &expect, "forward");
        close(got_dx, &dx, "input gradient");
        close(got_dw, &dw, "weight gradient");
        if b.is_some() {
            close(got_db, &db, "bias gradient");
        }
    }
}

/// A batch of 0 through a layer wide enough for the direct kernel: empty output, and a zero
/// weight gradient.
#[test]
fn wide_conv_of_an_empty_batch_is_empty() {
    let dev: TestDevice = Default::default();
    let g = geom(0, (16, 16, 1), (4, 4), (3, 3), (1, 1), (1, 1), (1, 1));
    let x = dev.tensor_from_vec(Vec::<f32>::new(), (0,));
    let w = dev.tensor_from_vec(vec![0.5f32; 16 * 16 * 9], (16 * 16 * 9,));
    let no_bias: Option<&Tensor<(usize,), f32, TestDevice>> = None;
    let out = try_conv2d(
        x.leaky_trace(),
        &w,
        no_bias,
        g,
        Activation::Relu,
        None,
        (0,),
        true,
    )
    .unwrap();
    assert_eq!(out.shape().num_elements(), 0);
    // dfdx cannot reduce an empty tensor: run the tape from a scalar that carries it.
    let (_, tape) = out.split_tape();
    let grads = dev.zeros::<Rank0>().put_tape(tape).backward();
    assert!(grads.get(&w).as_vec().iter().all(|v| *v == 0.0));
}

fn check_pool(p: Pool2DGeometry, planes: usize, seed: u64) {
    let dev: TestDevice = Default::default();
    let mut rng = Rng::new(seed);
    let x = rng.vec(planes * p.input.0 * p.input.1);
    let expect = reference_pool(&p, &x);
    let r = rng.vec(expect.len());
    let xt = dev.tensor_from_vec(x.clone(), (x.len(),));
    let out = try_pool2d(xt.leaky_trace(), p, (expect.len(),)).unwrap();
    assert!(
        max_diff(&out.as_vec(), &expect) < 1e-12,
        "pool forward differs: {p:?}"
    );
    let rt = dev.tensor_from_vec(r.clone(), (r.len(),));
    let grads = (out * rt).sum().backward();
    let fx = finite_diff(&x, &r, |x| reference_pool(&p, x));
    assert!(
        max_diff(&grads.get(&xt).as_vec(), &fx) < 1e-6,
        "pool gradient differs: {p:?}"
    );
}

#[test]
fn pooling_matches_reference() {
    let mut seed = 100;
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for (input, k, s, p) in [
            ((4, 4), (2, 2), (2, 2), (0, 0)),
            ((5, 7), (3, 2), (2, 1), (1, 1)),
            ((6, 5), (3, 3), (1, 2), (1, 0)),
            ((7, 7), (2, 3), (3, 2), (1, 1)),
            ((3, 3), (3, 3), (1, 1), (1, 1)),
        ] {
            check_pool(pool_geom(kind, input, k, s, p), 5, seed);
            seed += 1;
        }
    }
}

// d2l 6.2.1: corr2d(X, K) with X = arange(9) 3x3 and K = arange(4) 2x2 is [[19, 25], [37, 43]].
#[test]
fn d2l_corr2d() {
    let dev: TestDevice = Default::default();
    let x = dev.tensor_from_vec((0..9).map(f64::from).collect(), (9,));
    let k = dev.tensor_from_vec(vec![0.0, 1.0, 2.0, 3.0], (4,));
    let g = geom(1, (1, 1, 1), (3, 3), (2, 2), (1, 1), (0, 0), (1, 1));
    let y = try_conv2d(x, &k, NO_BIAS, g, Activation::Identity, None, (4,), true).unwrap();
    assert_eq!(y.as_vec(), [19.0, 25.0, 37.0, 43.0]);
}

// d2l 6.4.1: two input channels, X = [arange(9), arange(9) + 1], K = [arange(4), arange(4) + 1]
// gives [[56, 72], [104, 120]].
#[test]
fn d2l_corr2d_multi_in() {
    let dev: TestDevice = Default::default();
    let x: Vec<f64> = (0..9).chain(1..10).map(f64::from).collect();
    let k: Vec<f64> = (0..4).chain(1..5).map(f64::from).collect();
    let x = dev.tensor_from_vec(x, (18,));
    let k = dev.tensor_from_vec(k, (8,));
    let g = geom(1, (2, 1, 1), (3, 3), (2, 2), (1, 1), (0, 0), (1, 1));
    let y = try_conv2d(x, &k, NO_BIAS, g, Activation::Identity, None, (4,), true).unwrap();
    assert_eq!(y.as_vec(), [56.0, 72.0, 104.0, 120.0]);
}

// d2l 6.5.1/6.5.2: pooling arange(9) 3x3 with a 2x2 window: max [[4, 5], [7, 8]], avg
// [[2, 3], [5, 6]]; arange(16) 4x4 with max pool 3, padding 1, stride 2: [[5, 7], [13, 15]].
#[test]
fn d2l_pooling() {
    let dev: TestDevice = Default::default();
    let x9 = || dev.tensor_from_vec((0..9).map(f64::from).collect(), (9,));
    let max = try_pool2d(
        x9(),
        pool_geom(PoolKind::Max, (3, 3), (2, 2), (1, 1), (0, 0)),
        (4,),
    )
    .unwrap();
    assert_eq!(max.as_vec(), [4.0, 5.0, 7.0, 8.0]);
    let avg = try_pool2d(
        x9(),
        pool_geom(PoolKind::Avg, (3, 3), (2, 2), (1, 1), (0, 0)),
        (4,),
    )
    .unwrap();
    assert_eq!(avg.as_vec(), [2.0, 3.0, 5.0, 6.0]);
    let x16 = dev.tensor_from_vec((0..16).map(f64::from).collect(), (16,));
    let padded = try_pool2d(
        x16,
        pool_geom(PoolKind::Max, (4, 4), (3, 3), (2, 2), (1, 1)),
        (4,),
    )
    .unwrap();
    assert_eq!(padded.as_vec(), [5.0, 7.0, 13.0, 15.0]);
}

// f32 takes its own sigmoid (a vectorised exp); it must agree with the f64 reference to f32's
// precision.
#[test]
fn f32_fused_sigmoid_matches_reference() {
    let dev: TestDevice = Default::default();
    let g = geom(4, (2, 3, 1), (9, 9), (3, 3), (1, 1), (1, 1), (1, 1));
    let pool = Some(pool_geom(PoolKind::Avg, (9, 9), (2, 2), (2, 2), (0, 0)));
    let mut rng = Rng::new(7);
    let (x, w, b) = (rng.vec(4 * 2 * 81), rng.vec(3 * 2 * 9), rng.vec(3));
    let expect = reference_conv(&g, Activation::Sigmoid, pool.as_ref(), &x, &w, Some(&b));
    let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let xt = dev.tensor_from_vec(f32s(&x), (x.len(),));
    let wt = dev.tensor_from_vec(f32s(&w), (w.len(),));
    let bt = dev.tensor_from_vec(f32s(&b), (3,));
    let out = try_conv2d(
        xt,
        &wt,
        Some(&bt),
        g,
        Activation::Sigmoid,
        pool,
        (expect.len(),),
        true,
    )
    .unwrap();
    let got: Vec<f64> = out.as_vec().into_iter().map(f64::from).collect();
    assert!(
        max_diff(&got, &expect) < 1e-6,
        "f32 differs by {}",
        max_diff(&got, &expect)
    );
}

/// The GPU against the CPU on LeNet's two fused blocks in `f32` (the tests above already hold
/// each device to the f64 reference): outputs and all three gradients within 1e-5 of each other
/// relative to the largest magnitude (the gemms sum in different orders; f32 has 6e-8 steps).
#[cfg(feature = "cuda")]
#[test]
fn cuda_matches_cpu_in_f32() {
    fn run<D: cnn::ConvDevice<f32>>(
        dev: &D,
        g: Conv2DGeometry,
        act: Activation,
        pool: Pool2DGeometry,
        seed: u64,
    ) -> [Vec<f32>; 4] {
        let mut rng = Rng::new(seed);
        let mut vec = |n: usize| rng.vec(n).into_iter().map(|v| v as f32).collect::<Vec<_>>();
        let n_out = g.batch * g.out_channels * pool.output.0 * pool.output.1;
        let x = dev.tensor_from_vec(
            vec(g.batch * g.in_channels * g.input.0 * g.input.1),
            (g.batch * g.in_channels * g.input.0 * g.input.1,),
        );
        let w = dev.tensor_from_vec(
            vec(g.out_channels * g.in_channels * 25),
            (g.out_channels * g.in_channels * 25,),
        );
        let b = dev.tensor_from_vec(vec(g.out_channels), (g.out_channels,));
        let r = dev.tensor_from_vec(vec(n_out), (n_out,));
        let out = try_conv2d(
            x.leaky_trace(),
            &w,
            Some(&b),
            g,
            act,
            Some(pool),
            (n_out,),
            true,
        )
        .unwrap();
        let y = out.as_vec();
        let grads = (out * r).sum().backward();
        [
            y,
            grads.get(&x).as_vec(),
            grads.get(&w).as_vec(),
            grads.get(&b).as_vec(),
        ]
    }
    let blocks = [
        (
            geom(8, (1, 6, 1), (28, 28), (5, 5), (1, 1), (2, 2), (1, 1)),
            Activation::Sigmoid,
            PoolKind::Avg,
            (28, 28),
        ),
        (
            geom(8, (6, 16, 1), (14, 14), (5, 5), (1, 1), (0, 0), (1, 1)),
            Activation::Relu,
            PoolKind::Max,
            (10, 10),
        ),
    ];
    for (i, (g, act, kind, plane)) in blocks.into_iter().enumerate() {
        let pool = pool_geom(kind, plane, (2, 2), (2, 2), (0, 0));
        let cpu = run(&Cpu::default(), g, act, pool, i as u64);
        let gpu = run(&dfdx::tensor::Cuda::default(), g, act, pool, i as u64);
        for (what, (c, d)) in ["output", "dx", "dw", "db"]
            .iter()
            .zip(cpu.iter().zip(&gpu))
        {
            let scale = c.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let diff = c
                .iter()
                .zip(d)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= 1e-5 * scale,
                "block {i}: {what} differs by {diff} (scale {scale})"
            );
        }
    }
}
