//! `ConvTranspose2D` and the op beneath it against independent oracles: a nested-loop reference
//! written from the definition (each input pixel scatters `x * kernel` into the output), central
//! finite differences of that reference for every gradient, d2l 14.10's numbers, the adjoint
//! identity with conv, and PyTorch's numbers for one case; then types, parameters, checkpoints.

mod common;

use cnn::ops::{
    Activation, Conv2DGeometry, ConvTranspose2DGeometry, try_conv_transpose2d, try_conv2d,
};
use cnn::prelude::*;
use common::{Rng, TestDevice, finite_diff, max_diff, same_type};

const NO_BIAS: Option<&Tensor<(usize,), f64, TestDevice>> = None;

/// PyTorch's conv_transpose2d from its definition: input pixel `(n, c, iy, ix)` adds
/// `x * w[c, o, ki, kj]` to output `(n, g*OUT/G + o, iy*s - p + ki*d, ix*s - p + kj*d)`, `g`
/// being `c`'s group. Positions outside the output are dropped; output_padding only makes the
/// output (and so the kept range) longer at the bottom/right.
fn reference(g: &ConvTranspose2DGeometry, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let (h, wd) = g.input;
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (cg, og) = (g.in_channels / g.groups, g.out_channels / g.groups);
    // y: (B, OUT, OH, OW)
    let mut y = vec![0.0; g.batch * g.out_channels * oh * ow];
    for (plane, v) in y.chunks_mut(oh * ow).enumerate() {
        v.fill(b.map_or(0.0, |b| b[plane % g.out_channels]));
    }
    for n in 0..g.batch {
        for c in 0..g.in_channels {
            let grp = c / cg;
            for iy in 0..h {
                for ix in 0..wd {
                    let xv = x[((n * g.in_channels + c) * h + iy) * wd + ix];
                    for o in 0..og {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let oy = (iy * g.stride.0 + ki * g.dilation.0) as isize
                                    - g.padding.0 as isize;
                                let ox = (ix * g.stride.1 + kj * g.dilation.1) as isize
                                    - g.padding.1 as isize;
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                let oc = grp * og + o;
                                // w: (IN, OUT/G, KH, KW)
                                y[((n * g.out_channels + oc) * oh + oy as usize) * ow
                                    + ox as usize] += xv * w[((c * og + o) * kh + ki) * kw + kj];
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

#[allow(clippy::too_many_arguments)]
fn geom(
    batch: usize,
    (c, o, groups): (usize, usize, usize),
    input: (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    output_padding: (usize, usize),
    dilation: (usize, usize),
) -> ConvTranspose2DGeometry {
    let out = |i, k, s, p, op, d| cnn::shape::conv_transpose_out(i, k, s, p, op, d);
    ConvTranspose2DGeometry {
        batch,
        in_channels: c,
        out_channels: o,
        groups,
        input,
        output: (
            out(
                input.0,
                kernel.0,
                stride.0,
                padding.0,
                output_padding.0,
                dilation.0,
            ),
            out(
                input.1,
                kernel.1,
                stride.1,
                padding.1,
                output_padding.1,
                dilation.1,
            ),
        ),
        kernel,
        stride,
        padding,
        output_padding,
        dilation,
    }
}

/// Runs the op forward and backward and checks output and all three gradients.
fn check(g: ConvTranspose2DGeometry, bias: bool, seed: u64) {
    let dev: TestDevice = Default::default();
    let mut rng = Rng::new(seed);
    let og = g.out_channels / g.groups;
    let x = rng.vec(g.batch * g.in_channels * g.input.0 * g.input.1);
    let w = rng.vec(g.in_channels * og * g.kernel.0 * g.kernel.1);
    let b = bias.then(|| rng.vec(g.out_channels));
    let expect = reference(&g, &x, &w, b.as_deref());
    let r = rng.vec(expect.len());

    let xt = dev.tensor_from_vec(x.clone(), (x.len(),));
    let wt = dev.tensor_from_vec(w.clone(), (w.len(),));
    let bt = b.clone().map(|b| dev.tensor_from_vec(b, (g.out_channels,)));
    let rt = dev.tensor_from_vec(r.clone(), (r.len(),));
    let out = try_conv_transpose2d(xt.leaky_trace(), &wt, bt.as_ref(), g, (expect.len(),)).unwrap();
    assert!(
        max_diff(&out.as_vec(), &expect) < 1e-12,
        "forward differs: {g:?}"
    );

    let grads = (out * rt).sum().backward();
    let tol = 1e-6;
    let fx = finite_diff(&x, &r, |x| reference(&g, x, &w, b.as_deref()));
    assert!(
        max_diff(&grads.get(&xt).as_vec(), &fx) < tol,
        "input gradient differs: {g:?}"
    );
    let fw = finite_diff(&w, &r, |w| reference(&g, &x, w, b.as_deref()));
    assert!(
        max_diff(&grads.get(&wt).as_vec(), &fw) < tol,
        "weight gradient differs: {g:?}"
    );
    if let (Some(b), Some(bt)) = (&b, &bt) {
        let fb = finite_diff(b, &r, |b| reference(&g, &x, &w, Some(b)));
        assert!(
            max_diff(&grads.get(bt).as_vec(), &fb) < tol,
            "bias gradient differs: {g:?}"
        );
    }
}

#[test]
fn matches_reference_for_every_option() {
    let cases = [
        // plain, batch 1
        (
            geom(1, (1, 1, 1), (3, 3), (3, 3), (1, 1), (0, 0), (0, 0), (1, 1)),
            true,
        ),
        // rectangular kernel, stride and padding; batch > 1
        (
            geom(3, (2, 3, 1), (4, 5), (3, 2), (2, 3), (1, 0), (0, 0), (1, 1)),
            true,
        ),
        // output_padding below the stride, rectangular
        (
            geom(2, (2, 2, 1), (3, 4), (3, 3), (2, 3), (1, 1), (1, 2), (1, 1)),
            false,
        ),
        // output_padding not below the stride but below the dilation (PyTorch allows it)
        (
            geom(2, (2, 3, 1), (4, 3), (2, 3), (1, 1), (0, 1), (1, 0), (2, 1)),
            true,
        ),
        // dilation with stride
        (
            geom(2, (2, 2, 1), (3, 4), (3, 2), (2, 1), (2, 1), (0, 0), (2, 3)),
            true,
        ),
        // groups, with output_padding
        (
            geom(2, (4, 6, 2), (3, 3), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
            true,
        ),
        // depthwise, no bias
        (
            geom(2, (3, 3, 3), (4, 4), (2, 2), (2, 2), (0, 0), (0, 0), (1, 1)),
            false,
        ),
        // more output channels per group than input channels per group
        (
            geom(1, (2, 6, 2), (3, 2), (2, 3), (1, 2), (0, 1), (0, 1), (1, 1)),
            true,
        ),
        // 1x1 kernel with stride 2: the output has holes that only the bias fills
        (
            geom(2, (3, 2, 1), (3, 3), (1, 1), (2, 2), (0, 0), (1, 1), (1, 1)),
            true,
        ),
        // padding crops the output to less than the input
        (
            geom(1, (1, 2, 1), (3, 3), (3, 3), (1, 1), (2, 2), (0, 0), (1, 1)),
            true,
        ),
        // more images than one task takes, uneven split
        (
            geom(
                19,
                (2, 2, 1),
                (3, 3),
                (3, 3),
                (2, 2),
                (1, 1),
                (0, 0),
                (1, 1),
            ),
            true,
        ),
    ];
    for (i, (g, bias)) in cases.into_iter().enumerate() {
        check(g, bias, i as u64);
    }
}

#[test]
fn matches_reference_on_random_shapes() {
    let mut rng = Rng::new(2024);
    let mut checked = 0;
    while checked < 30 {
        let groups = 1 + rng.below(3);
        let (cg, og) = (1 + rng.below(2), 1 + rng.below(3));
        let mut axis = || {
            let (k, s, d) = (1 + rng.below(3), 1 + rng.below(3), 1 + rng.below(2));
            (1 + rng.below(4), k, s, rng.below(3), rng.below(s.max(d)), d)
        };
        let (ah, aw) = (axis(), axis());
        let g = geom(
            1 + rng.below(3),
            (cg * groups, og * groups, groups),
            (ah.0, aw.0),
            (ah.1, aw.1),
            (ah.2, aw.2),
            (ah.3, aw.3),
            (ah.4, aw.4),
            (ah.5, aw.5),
        );
        if g.output.0 == 0 || g.output.1 == 0 {
            continue; // the padding removed everything
        }
        check(g, rng.below(2) == 0, 1000 + checked);
        checked += 1;
    }
}

// d2l 14.10.1: X = [[0, 1], [2, 3]], K = [[0, 1], [2, 3]]: trans_conv(X, K) is
// [[0, 0, 1], [0, 4, 6], [4, 12, 9]]; with padding 1 it is [[4]]; with stride 2,
// [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]].
#[test]
fn d2l_14_10_transposed_convolution() {
    let dev: TestDevice = Default::default();
    let x = || dev.tensor([[[0.0, 1.0], [2.0, 3.0]]]);
    let k = || dev.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]);

    type Basic = ConvTranspose2D<1, 1, 2, 2, 2, 2, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, false>;
    let mut m = dev.build_module::<Basic, f64>();
    m.weight = k();
    let y = m.forward(x());
    assert_eq!(
        y.array(),
        [[[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]]]
    );

    type Padded = ConvTranspose2D<1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, false>;
    let mut m = dev.build_module::<Padded, f64>();
    m.weight = k();
    assert_eq!(m.forward(x()).array(), [[[4.0]]]);

    type Strided = ConvTranspose2D<1, 1, 2, 2, 2, 2, 4, 4, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1, false>;
    let mut m = dev.build_module::<Strided, f64>();
    m.weight = k();
    assert_eq!(
        m.forward(x()).array(),
        [[
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 2.0, 3.0],
            [0.0, 2.0, 0.0, 3.0],
            [4.0, 6.0, 6.0, 9.0]
        ]]
    );
}

// d2l 14.10.2: Conv2d(10, 20, kernel 5, padding 2, stride 3) takes 16x16 to 6x6, and
// ConvTranspose2d(20, 10) with the same hyperparameters takes it back to 16x16.
#[test]
fn d2l_14_10_conv_then_transposed_conv_restores_the_shape() {
    let dev: TestDevice = Default::default();
    type Down = Conv2D<10, 20, 5, 5, 16, 16, 6, 6, 3, 3, 2, 2>;
    type Up = ConvTranspose2D<20, 10, 5, 5, 6, 6, 16, 16, 3, 3, 2, 2>;
    let (down, up) = (
        dev.build_module::<Down, f32>(),
        dev.build_module::<Up, f32>(),
    );
    let x: Tensor<Rank4<1, 10, 16, 16>, f32, _> = dev.sample_normal();
    let y = up.forward(down.forward(x.clone()));
    same_type(&y, &x);
}

/// The transposed conv's geometry for the conv `g`, with the output_padding that brings its
/// output back to exactly `g`'s input size (the remainder the conv's floor division dropped).
fn transposed(g: &Conv2DGeometry) -> ConvTranspose2DGeometry {
    let op = |n: usize, k: usize, s: usize, p: usize, d: usize| (n + 2 * p - d * (k - 1) - 1) % s;
    let t = geom(
        g.batch,
        (g.out_channels, g.in_channels, g.groups),
        g.output,
        g.kernel,
        g.stride,
        g.padding,
        (
            op(g.input.0, g.kernel.0, g.stride.0, g.padding.0, g.dilation.0),
            op(g.input.1, g.kernel.1, g.stride.1, g.padding.1, g.dilation.1),
        ),
        g.dilation,
    );
    assert_eq!(t.output, g.input);
    t
}

// d2l 14.10.3: a transposed convolution multiplies by the transpose of the conv's matrix, so
// <conv(x), y> = <x, conv_transpose(y)> for the same weight.
#[test]
fn is_the_adjoint_of_conv() {
    let dev: TestDevice = Default::default();
    let mut rng = Rng::new(7);
    let conv = |batch, (c, o, groups), input: (usize, usize), kernel: (usize, usize), s, p, d| {
        let out = |i, k, s, p, d| cnn::shape::conv_out(i, k, s, p, p, d);
        Conv2DGeometry {
            batch,
            in_channels: c,
            out_channels: o,
            groups,
            input,
            output: (
                out(input.0, kernel.0, s, p, d),
                out(input.1, kernel.1, s, p, d),
            ),
            kernel,
            stride: (s, s),
            padding: (p, p),
            dilation: (d, d),
        }
    };
    for g in [
        conv(1, (1, 1, 1), (4, 4), (2, 2), 1, 0, 1),
        conv(2, (2, 3, 1), (9, 8), (3, 2), 2, 1, 1),
        conv(2, (4, 6, 2), (10, 7), (3, 3), 3, 1, 1),
        conv(3, (3, 3, 3), (8, 9), (3, 3), 2, 2, 2),
    ] {
        let t = transposed(&g);
        let x = rng.vec(g.batch * g.in_channels * g.input.0 * g.input.1);
        let y = rng.vec(g.batch * g.out_channels * g.output.0 * g.output.1);
        let w = rng.vec(g.out_channels * g.in_channels / g.groups * g.kernel.0 * g.kernel.1);
        let (xt, yt) = (
            dev.tensor_from_vec(x.clone(), (x.len(),)),
            dev.tensor_from_vec(y.clone(), (y.len(),)),
        );
        let wt = dev.tensor_from_vec(w.clone(), (w.len(),));
        let id = Activation::Identity;
        let cx = try_conv2d(xt.clone(), &wt, NO_BIAS, g, id, None, (y.len(),), true).unwrap();
        let ty = try_conv_transpose2d(yt.clone(), &wt, NO_BIAS, t, (x.len(),)).unwrap();
        let lhs = (cx * yt).sum::<Rank0, _>().array();
        let rhs = (ty * xt).sum::<Rank0, _>().array();
        assert!((lhs - rhs).abs() < 1e-12, "{lhs} != {rhs} for {g:?}");
    }
}

// The same identity through the layers: the conv's weight type is the transposed conv's.
#[test]
fn layers_are_adjoint_and_restore_the_shape() {
    let dev: TestDevice = Default::default();
    // 10x7 -> 5x4 (stride 2, padding 1, groups 2); back with output_padding (1, 0).
    type Down = Conv2D<4, 6, 3, 3, 10, 7, 5, 4, 2, 2, 1, 1, 1, 1, 2, 2, false>;
    type Up = ConvTranspose2D<6, 4, 3, 3, 5, 4, 10, 7, 2, 2, 1, 1, 1, 0, 1, 1, 2, 2, false>;
    let down = dev.build_module::<Down, f64>();
    let mut up = dev.build_module::<Up, f64>();
    up.weight = down.weight.clone();
    let x: Tensor<Rank4<2, 4, 10, 7>, f64, _> = dev.sample_normal();
    let y: Tensor<Rank4<2, 6, 5, 4>, f64, _> = dev.sample_normal();
    let lhs = (down.forward(x.clone()) * y.clone())
        .sum::<Rank0, _>()
        .array();
    let rhs = (up.forward(y) * x.clone()).sum::<Rank0, _>().array();
    assert!((lhs - rhs).abs() < 1e-12, "{lhs} != {rhs}");
    same_type(&up.forward(down.forward(x.clone())), &x);
}

// PyTorch golden values for stride 2, padding 1, output_padding 1, groups 2, from
// torch.nn.functional.conv_transpose2d (torch 2.15.0, CPU), with this script:
//
//   x = ((torch.arange(8.) - 3) / 2).reshape(1, 2, 2, 2).requires_grad_()
//   w = ((torch.arange(36.) % 7 - 3) / 4).reshape(2, 2, 3, 3).requires_grad_()
//   b = torch.tensor([0.5, -1.0, 0.25, 2.0], requires_grad=True)
//   y = torch.nn.functional.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2)
//   m = (torch.arange(64.) % 5 - 2).reshape(y.shape)
//   (y * m).sum().backward()
//   for t in [y, x.grad, w.grad, b.grad]: print(t.detach().flatten().tolist())
//
// Every input is a multiple of 1/4 and every sum short, so the numbers are exact.
#[test]
fn matches_pytorch() {
    const Y: [f64; 64] = [
        0.125, -0.25, 0.25, 0.0, 1.875, 0.625, 1.25, 1.0, 0.375, 0.25, 0.5, 0.5, 0.875, 0.75, 0.5,
        0.5, -2.125, -0.375, -1.75, -0.25, -0.625, -0.625, -0.75, -1.0, -1.375, -0.625, -1.0, -1.0,
        -0.875, -1.0, -1.0, -1.0, 0.0, -0.625, -0.25, 0.0, 1.125, 2.125, 1.5, 2.25, -0.5, -1.625,
        -0.75, -0.25, 0.625, 1.0, 0.75, 1.25, 2.0, 1.875, 2.0, 2.25, 1.25, 2.875, 1.25, 0.25, 2.0,
        1.875, 2.0, 2.5, 3.125, 1.875, 3.5, 0.5,
    ];
    const DX: [f64; 8] = [-1.75, -0.5, 2.75, -0.5, -0.75, 2.75, -1.0, 1.75];
    const DW: [f64; 36] = [
        0.0, -1.0, 1.0, 1.0, 2.5, -0.5, 2.0, -2.0, 2.5, 0.0, 1.0, 0.5, 0.0, -0.5, -1.0, 1.0, 2.5,
        -0.5, 0.0, 0.5, 4.0, -1.0, -1.0, -1.0, -4.0, 1.5, -1.0, 2.0, 4.0, -2.5, 2.0, -1.0, 4.0,
        -1.0, -1.0, -1.0,
    ];
    const DB: [f64; 4] = [-2.0, -1.0, 0.0, 1.0];

    let dev: TestDevice = Default::default();
    type Layer = ConvTranspose2D<2, 4, 3, 3, 2, 2, 4, 4, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2>;
    let mut m = dev.build_module::<Layer, f64>();
    let w: Vec<f64> = (0..36).map(|i| ((i % 7) as f64 - 3.0) / 4.0).collect();
    m.weight.copy_from(&w);
    m.bias.as_mut().unwrap().copy_from(&[0.5, -1.0, 0.25, 2.0]);
    let xv: Vec<f64> = (0..8).map(|i| (i as f64 - 3.0) / 2.0).collect();
    let mut x: Tensor<Rank4<1, 2, 2, 2>, f64, _> = dev.zeros();
    x.copy_from(&xv);
    let mut mask: Tensor<Rank4<1, 4, 4, 4>, f64, _> = dev.zeros();
    mask.copy_from(&(0..64).map(|i| (i % 5) as f64 - 2.0).collect::<Vec<_>>());

    let y = m.forward(x.leaky_trace());
    assert_eq!(y.as_vec(), Y);
    let grads = (y * mask).sum().backward();
    assert_eq!(grads.get(&x).as_vec(), DX);
    assert_eq!(grads.get(&m.weight).as_vec(), DW);
    assert_eq!(grads.get(m.bias.as_ref().unwrap()).as_vec(), DB);

    // the single-image form gives the same numbers
    let x3: Tensor<Rank3<2, 2, 2>, f64, _> = x.reshape();
    assert_eq!(m.forward(x3).as_vec(), Y);
}

// DCGAN's upsampling step at a small size: kernel 4, stride 2, padding 1 doubles 5x5.
type Up = ConvTranspose2D<4, 2, 4, 4, 5, 5, 10, 10, 2, 2, 1, 1>;

#[test]
fn every_input_form_has_its_exact_type() {
    let dev: TestDevice = Default::default();
    let up = dev.build_module::<Up, f32>();
    // one image
    let y = up.forward(dev.zeros::<Rank3<4, 5, 5>>());
    same_type(&y, &dev.zeros::<Rank3<2, 10, 10>>());
    // a const batch
    let y = up.forward(dev.zeros::<Rank4<3, 4, 5, 5>>());
    same_type(&y, &dev.zeros::<Rank4<3, 2, 10, 10>>());
    // a run-time batch
    let y = up.forward(dev.zeros_like(&(3, Const::<4>, Const::<5>, Const::<5>)));
    let expect: Tensor<(usize, Const<2>, Const<10>, Const<10>), f32, TestDevice> =
        dev.zeros_like(&(3, Const, Const, Const));
    same_type(&y, &expect);
    assert_eq!(y.shape().0, 3);
    // with a tape
    let y = up.forward(dev.zeros::<Rank4<2, 4, 5, 5>>().leaky_trace());
    let t: Tensor<Rank4<2, 2, 10, 10>, f32, TestDevice, OwnedTape<f32, TestDevice>> = y;
    drop(t);
    let y = up.forward(dev.zeros::<Rank3<4, 5, 5>>().leaky_trace());
    let t: Tensor<Rank3<2, 10, 10>, f32, TestDevice, OwnedTape<f32, TestDevice>> = y;
    drop(t);
}

#[test]
fn bias_false_has_no_bias_and_fewer_params() {
    let dev: TestDevice = Default::default();
    type NoBias = ConvTranspose2D<3, 4, 2, 3, 5, 5, 6, 7, 1, 1, 0, 0, 0, 0, 1, 1, 1, 4, false>;
    let m = dev.build_module::<NoBias, f32>();
    assert!(m.bias.is_none());
    assert_eq!(m.num_trainable_params(), 3 * 4 * 2 * 3);
    assert_eq!(NoBias::PARAMS, 3 * 4 * 2 * 3);
    assert_eq!(
        dev.build_module::<Up, f32>().num_trainable_params(),
        4 * 2 * 16 + 2
    );
    // groups: the weight is (IN, OUT / GROUPS, KH, KW)
    type Grouped = ConvTranspose2D<4, 6, 3, 3, 5, 5, 5, 5, 1, 1, 1, 1, 0, 0, 1, 1, 2, 3>;
    let m = dev.build_module::<Grouped, f32>();
    assert_eq!(m.num_trainable_params(), 4 * 3 * 9 + 6);
    assert_eq!(Grouped::PARAMS, 4 * 3 * 9 + 6);
}

#[test]
fn init_is_pytorchs_uniform_bound() {
    let dev: TestDevice = Default::default();
    // fan_in is weight.size(1) * KH * KW = OUT * 25 = 400, not IN * 25
    type Big = ConvTranspose2D<64, 16, 5, 5, 4, 4, 8, 8>;
    let m = dev.build_module::<Big, f64>();
    let bound = 1.0 / ((16 * 25) as f64).sqrt();
    let w = m.weight.as_vec();
    assert!(w.iter().all(|v| v.abs() <= bound));
    // U(-a, a) has variance a^2 / 3
    let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
    assert!(
        (var / (bound * bound / 3.0) - 1.0).abs() < 0.1,
        "variance {var}"
    );
    assert!(m.bias.unwrap().as_vec().iter().all(|v| v.abs() <= bound));
}

type Decoder = (
    ConvTranspose2D<2, 3, 3, 3, 4, 4, 8, 8, 2, 2, 1, 1, 1, 1>,
    ReLU,
    ConvTranspose2D<3, 1, 3, 3, 8, 8, 8, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, false>,
);

#[test]
fn safetensors_round_trip_restores_outputs_exactly() {
    let dev: TestDevice = Default::default();
    let model = dev.build_module::<Decoder, f32>();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decoder.safetensors");
    model.save_safetensors(&path).unwrap();

    // The header (a little-endian length, then JSON) names exactly the tensors that exist.
    let bytes = std::fs::read(&path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + len]).unwrap();
    for name in ["\"0.weight\"", "\"0.bias\"", "\"2.weight\""] {
        assert!(header.contains(name), "{name} missing from {header}");
    }
    assert!(!header.contains("\"2.bias\""), "{header}");

    let mut other = dev.build_module::<Decoder, f32>();
    let x: Tensor<Rank4<2, 2, 4, 4>, f32, _> = dev.sample_normal();
    assert_ne!(
        model.forward(x.clone()).array(),
        other.forward(x.clone()).array()
    );
    other.load_safetensors(&path).unwrap();
    assert_eq!(model.forward(x.clone()).array(), other.forward(x).array());
}

// PyTorch: "output padding must be smaller than either stride or dilation". The layer checks
// it at compile time; the op, taking run-time numbers, panics.
#[test]
#[should_panic(expected = "inconsistent conv_transpose2d geometry")]
fn op_rejects_output_padding_not_below_stride_or_dilation() {
    let dev: TestDevice = Default::default();
    let mut g = geom(1, (1, 1, 1), (3, 3), (3, 3), (2, 2), (0, 0), (0, 0), (1, 1));
    g.output_padding = (2, 0);
    g.output.0 += 2;
    let x = dev.tensor_from_vec(vec![0.0; 9], (9,));
    let w = dev.tensor_from_vec(vec![0.0; 9], (9,));
    let n = g.output.0 * g.output.1;
    let _ = try_conv_transpose2d(x, &w, NO_BIAS, g, (n,));
}
