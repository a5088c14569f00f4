//! The batch-norm op against a loop written from PyTorch's definition (biased variance to
//! normalise, unbiased for the running statistics, momentum 0.1), its gradients against central
//! finite differences of that loop, and dfdx's own `BatchNorm2D` as a second, independent
//! implementation. The PyTorch goldens of `tests/blocks.rs` cover it inside networks.

mod common;

use cnn::ops::batch_norm::{BatchNormGeometry, try_batch_norm_infer, try_batch_norm_train};
use common::{Rng, TestDevice, finite_diff, max_diff};
use dfdx::prelude::*;

/// Training batch norm of `x` (B, C, P): the output, and the running mean and variance after
/// one update from `rm`, `rv`.
fn reference(
    g: &BatchNormGeometry,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    (rm, rv): (&[f64], &[f64]),
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = (g.batch * g.plane) as f64;
    let mut y = vec![0.0; x.len()];
    let (mut new_rm, mut new_rv) = (rm.to_vec(), rv.to_vec());
    for c in 0..g.channels {
        let at = |b: usize, p: usize| (b * g.channels + c) * g.plane + p;
        let mut values = Vec::new();
        for b in 0..g.batch {
            for p in 0..g.plane {
                values.push(x[at(b, p)]);
            }
        }
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        for b in 0..g.batch {
            for p in 0..g.plane {
                let i = at(b, p);
                y[i] = (x[i] - mean) / (var + g.epsilon).sqrt() * gamma[c] + beta[c];
                if g.relu {
                    y[i] = y[i].max(0.0);
                }
            }
        }
        new_rm[c] = 0.9 * rm[c] + 0.1 * mean;
        new_rv[c] = 0.9 * rv[c] + 0.1 * var * n / (n - 1.0);
    }
    (y, new_rm, new_rv)
}

fn geometry(batch: usize, channels: usize, plane: usize) -> BatchNormGeometry {
    BatchNormGeometry {
        batch,
        channels,
        plane,
        epsilon: 1e-5,
        momentum: 0.1,
        relu: false,
    }
}

#[test]
fn training_matches_the_definition_with_its_gradients() {
    let dev: TestDevice = Default::default();
    let mut rng = Rng::new(11);
    let cases = [
        (3, 4, 5, false),
        (2, 3, 1, false),
        (1, 2, 6, false),
        (5, 1, 3, false),
    ];
    let with_relu = [(3, 4, 5, true), (2, 3, 1, true)];
    for (batch, channels, plane, relu) in cases.into_iter().chain(with_relu) {
        let g = BatchNormGeometry {
            relu,
            ..geometry(batch, channels, plane)
        };
        let x = rng.vec(g.len());
        // (Signs mixed, so that the ReLU cuts some of every channel.)
        let gamma: Vec<f64> = rng.vec(channels).iter().map(|v| v + 1.5).collect();
        let beta = rng.vec(channels);
        let rm = rng.vec(channels);
        let rv: Vec<f64> = rng.vec(channels).iter().map(|v| v + 1.5).collect();
        let r = rng.vec(g.len());
        let (want, want_rm, want_rv) = reference(&g, &x, &gamma, &beta, (&rm, &rv));

        let tx = dev.tensor_from_vec(x.clone(), (g.len(),));
        let tg = dev.tensor_from_vec(gamma.clone(), (channels,));
        let tb = dev.tensor_from_vec(beta.clone(), (channels,));
        let mut trm = dev.tensor_from_vec(rm.clone(), (channels,));
        let mut trv = dev.tensor_from_vec(rv.clone(), (channels,));
        let y = try_batch_norm_train(tx.leaky_trace(), g, &tg, &tb, &mut trm, &mut trv).unwrap();
        assert!(max_diff(&y.as_vec(), &want) < 1e-12, "{g:?}");
        assert!(max_diff(&trm.as_vec(), &want_rm) < 1e-12, "{g:?}");
        assert!(max_diff(&trv.as_vec(), &want_rv) < 1e-12, "{g:?}");

        let grads = (y * dev.tensor_from_vec(r.clone(), (g.len(),)))
            .sum()
            .backward();
        let keep = (&rm[..], &rv[..]);
        let dx = finite_diff(&x, &r, |x| reference(&g, x, &gamma, &beta, keep).0);
        let dgamma = finite_diff(&gamma, &r, |gm| reference(&g, &x, gm, &beta, keep).0);
        let dbeta = finite_diff(&beta, &r, |bt| reference(&g, &x, &gamma, bt, keep).0);
        assert!(max_diff(&grads.get(&tx).as_vec(), &dx) < 1e-6, "dx {g:?}");
        assert!(
            max_diff(&grads.get(&tg).as_vec(), &dgamma) < 1e-6,
            "dgamma {g:?}"
        );
        assert!(
            max_diff(&grads.get(&tb).as_vec(), &dbeta) < 1e-6,
            "dbeta {g:?}"
        );
    }
}

#[test]
fn inference_uses_the_running_statistics() {
    let dev: TestDevice = Default::default();
    let mut rng = Rng::new(5);
    let g = geometry(2, 3, 4);
    let x = rng.vec(g.len());
    let (gamma, beta, rm) = (rng.vec(3), rng.vec(3), rng.vec(3));
    let rv: Vec<f64> = rng.vec(3).iter().map(|v| v + 1.5).collect();
    let mut want = vec![0.0; g.len()];
    for (i, w) in want.iter_mut().enumerate() {
        let c = (i / g.plane) % g.channels;
        *w = (x[i] - rm[c]) / (rv[c] + 1e-5).sqrt() * gamma[c] + beta[c];
    }
    let t = |v: &Vec<f64>| dev.tensor_from_vec(v.clone(), (v.len(),));
    let y = try_batch_norm_infer(t(&x), g, &t(&gamma), &t(&beta), &t(&rm), &t(&rv)).unwrap();
    assert!(max_diff(&y.as_vec(), &want) < 1e-12);
}

/// The layer against dfdx's `BatchNorm2D` (the same tensors): both modes, the input's
/// and the weights' gradients, and the running statistics after training.
#[test]
fn layer_matches_dfdx_batch_norm() {
    let dev: TestDevice = Default::default();
    let mut ours = dev.build_module::<cnn::nn::BatchNorm2D<3, f64, TestDevice>, f64>();
    let mut theirs = dev.build_module::<modules::builders::BatchNorm2D<3>, f64>();
    ours.weight = dev.tensor([0.5, 1.5, -2.0]);
    ours.bias = dev.tensor([0.1, -0.2, 0.3]);
    theirs.scale = ours.weight.clone();
    theirs.bias = ours.bias.clone();
    let x: Tensor<Rank4<4, 3, 5, 2>, f64, _> = dev.sample_normal();
    let a = ours.forward_mut(x.leaky_trace());
    let b = theirs.forward_mut(x.leaky_trace());
    assert!(max_diff(&a.as_vec(), &b.as_vec()) < 1e-12);
    let r: Tensor<Rank4<4, 3, 5, 2>, f64, _> = dev.sample_normal();
    let ga = (a * r.clone()).sum().backward();
    let gb = (b * r).sum().backward();
    assert!(max_diff(&ga.get(&x).as_vec(), &gb.get(&x).as_vec()) < 1e-12);
    assert!(
        max_diff(
            &ga.get(&ours.weight).as_vec(),
            &gb.get(&theirs.scale).as_vec()
        ) < 1e-12
    );
    assert!(max_diff(&ga.get(&ours.bias).as_vec(), &gb.get(&theirs.bias).as_vec()) < 1e-12);
    assert!(max_diff(&ours.running_mean.as_vec(), &theirs.running_mean.as_vec()) < 1e-12);
    assert!(max_diff(&ours.running_var.as_vec(), &theirs.running_var.as_vec()) < 1e-12);
    let a = ours.forward(x.clone());
    let b = theirs.forward(x);
    assert!(max_diff(&a.as_vec(), &b.as_vec()) < 1e-12);
}

/// `WithRelu` is the batch norm and then the ReLU, in both modes.
#[test]
fn with_relu_is_the_batch_norm_then_the_relu() {
    use cnn::nn::WithRelu;
    let dev: TestDevice = Default::default();
    let mut a = dev.build_module::<cnn::nn::BatchNorm2D<3, f64, TestDevice>, f64>();
    a.bias = dev.tensor([0.3, -0.2, 0.1]);
    let mut b = a.clone();
    let x: Tensor<Rank4<2, 3, 4, 4>, f64, _> = dev.sample_normal();
    let fused = WithRelu(&mut a).forward_mut(x.leaky_trace());
    let layers = b.forward_mut(x.leaky_trace()).relu();
    assert!(max_diff(&fused.as_vec(), &layers.as_vec()) < 1e-12);
    let r: Tensor<Rank4<2, 3, 4, 4>, f64, _> = dev.sample_normal();
    let ga = (fused * r.clone()).sum().backward();
    let gb = (layers * r).sum().backward();
    assert!(max_diff(&ga.get(&x).as_vec(), &gb.get(&x).as_vec()) < 1e-12);
    assert!(max_diff(&ga.get(&a.weight).as_vec(), &gb.get(&b.weight).as_vec()) < 1e-12);
    assert!(max_diff(&ga.get(&a.bias).as_vec(), &gb.get(&b.bias).as_vec()) < 1e-12);
    let fused = WithRelu(&a).forward(x.clone());
    let layers = b.forward(x).relu();
    assert!(max_diff(&fused.as_vec(), &layers.as_vec()) < 1e-12);
}

/// An empty batch gives an empty output and leaves the running statistics alone.
#[test]
fn empty_batch() {
    let dev: TestDevice = Default::default();
    let mut bn = dev.build_module::<cnn::nn::BatchNorm2D<2, f32, TestDevice>, f32>();
    let x = dev.zeros_like(&(0usize, Const::<2>, Const::<3>, Const::<3>));
    let y = bn.forward_mut(x.leaky_trace());
    assert_eq!(y.shape().0, 0);
    // (No backward here: dfdx's own `sum` divides by zero on an empty tensor.)
    assert_eq!(bn.running_mean.as_vec(), [0.0, 0.0]);
    assert_eq!(bn.running_var.as_vec(), [1.0, 1.0]);
}

/// In inference a batch norm after a convolution is folded into the convolution's weights:
/// the same result as the layers one after another, with and without a conv bias, grouped.
#[test]
fn folding_into_a_conv_matches_the_layers() {
    use cnn::nn::{Conv2D, MaxPool2D};
    let dev: TestDevice = Default::default();
    let mut rng = Rng::new(9);
    let mut bn = dev.build_module::<cnn::nn::BatchNorm2D<4, f64, TestDevice>, f64>();
    bn.weight = dev.tensor_from_vec(rng.vec(4), (Const::<4>,));
    bn.bias = dev.tensor_from_vec(rng.vec(4), (Const::<4>,));
    bn.running_mean = dev.tensor_from_vec(rng.vec(4), (Const::<4>,));
    bn.running_var =
        dev.tensor_from_vec(rng.vec(4).iter().map(|v| v + 1.5).collect(), (Const::<4>,));
    let x: Tensor<Rank4<2, 2, 6, 6>, f64, _> = dev.sample_normal();
    let pool = MaxPool2D::<2, 2, 6, 6, 3, 3>;

    type WithBias = Conv2D<2, 4, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 2, 1, true>;
    let conv = dev.build_module::<WithBias, f64>();
    let layers = pool.forward(bn.forward(conv.forward(x.clone())).relu());
    let folded = conv
        .fused(modules::ReLU, pool)
        .folding(&bn)
        .forward(x.clone());
    assert!(max_diff(&folded.as_vec(), &layers.as_vec()) < 1e-12);

    type NoBias = Conv2D<2, 4, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 2, false>;
    let conv = dev.build_module::<NoBias, f64>();
    let layers = bn.forward(conv.forward(x.clone()));
    let folded = conv.fused((), ()).folding(&bn).forward(x);
    assert!(max_diff(&folded.as_vec(), &layers.as_vec()) < 1e-12);
}

/// A batch large enough that the CUDA kernels split each channel's sums over several blocks
/// (N = B * P = 25,600 values per channel: 7 shares of 4,096), with values far from zero (a
/// mean of 1000 against a spread of 1, where a one-pass variance without a shift would lose
/// digits), against the definition, and its gradients against the CPU kernel's.
#[test]
fn large_batches_match_the_definition_and_the_cpu() {
    /// x, gamma, beta, the running mean and variance, and the output's weights in the loss.
    type Inputs<'a> = [&'a [f64]; 6];
    fn run<D: cnn::ConvDevice<f64>>(
        dev: &D,
        g: BatchNormGeometry,
        [x, gamma, beta, rm, rv, r]: Inputs<'_>,
    ) -> [Vec<f64>; 6] {
        let c = g.channels;
        let tx = dev.tensor_from_vec(x.to_vec(), (g.len(),));
        let tg = dev.tensor_from_vec(gamma.to_vec(), (c,));
        let tb = dev.tensor_from_vec(beta.to_vec(), (c,));
        let mut trm = dev.tensor_from_vec(rm.to_vec(), (c,));
        let mut trv = dev.tensor_from_vec(rv.to_vec(), (c,));
        let y = try_batch_norm_train(tx.leaky_trace(), g, &tg, &tb, &mut trm, &mut trv).unwrap();
        let out = y.as_vec();
        let grads = (y * dev.tensor_from_vec(r.to_vec(), (g.len(),)))
            .sum()
            .backward();
        [
            out,
            trm.as_vec(),
            trv.as_vec(),
            grads.get(&tx).as_vec(),
            grads.get(&tg).as_vec(),
            grads.get(&tb).as_vec(),
        ]
    }
    let mut rng = Rng::new(5);
    for relu in [false, true] {
        let g = BatchNormGeometry {
            relu,
            ..geometry(16, 3, 40 * 40)
        };
        let x: Vec<f64> = rng.vec(g.len()).iter().map(|v| v + 1000.0).collect();
        let gamma: Vec<f64> = rng.vec(3).iter().map(|v| v + 1.5).collect();
        let (beta, rm, r) = (rng.vec(3), rng.vec(3), rng.vec(g.len()));
        let rv: Vec<f64> = rng.vec(3).iter().map(|v| v + 1.5).collect();
        let (want, want_rm, want_rv) = reference(&g, &x, &gamma, &beta, (&rm, &rv));
        let args = [&x[..], &gamma[..], &beta[..], &rm[..], &rv[..], &r[..]];
        let got = run(&TestDevice::default(), g, args);
        assert!(max_diff(&got[0], &want) < 1e-9, "output, relu {relu}");
        assert!(
            max_diff(&got[1], &want_rm) < 1e-9,
            "running mean, relu {relu}"
        );
        assert!(
            max_diff(&got[2], &want_rv) < 1e-9,
            "running var, relu {relu}"
        );
        let cpu = run(&Cpu::default(), g, args);
        for (what, i) in [("dx", 3), ("dgamma", 4), ("dbeta", 5)] {
            let scale = cpu[i].iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let diff = max_diff(&got[i], &cpu[i]);
            assert!(diff < 1e-9 * scale, "{what} differs by {diff}, relu {relu}");
        }
    }
}

/// In `f32`, with the values away from zero (mean 10, spread 1, as activations can be), the
/// statistics still come out as exact as `f32` data allows: the kernel reads the data once,
/// summing each row twice while it sits in cache and merging the rows' moments in `f64`
/// (Chan et al.), so neither a one-pass `E[x²] - E[x]²` cancellation nor the row mean's
/// rounding may leak in. Oracle: the definition in `f64` on the same `f32` values.
#[test]
fn f32_statistics_of_offset_data_are_exact_to_f32() {
    let mut rng = Rng::new(11);
    let g = geometry(32, 4, 28 * 28);
    let x32: Vec<f32> = rng.vec(g.len()).iter().map(|v| (10.0 + v) as f32).collect();
    let x: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
    let (gamma, beta) = (vec![1.0; 4], vec![0.0; 4]);
    let (rm, rv) = (vec![0.0; 4], vec![1.0; 4]);
    let (want, want_rm, want_rv) = reference(&g, &x, &gamma, &beta, (&rm, &rv));

    let dev = TestDevice::default();
    let c = g.channels;
    let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let tx = dev.tensor_from_vec(x32, (g.len(),));
    let tg = dev.tensor_from_vec(f32s(&gamma), (c,));
    let tb = dev.tensor_from_vec(f32s(&beta), (c,));
    let mut trm = dev.tensor_from_vec(f32s(&rm), (c,));
    let mut trv = dev.tensor_from_vec(f32s(&rv), (c,));
    let y = try_batch_norm_train(tx, g, &tg, &tb, &mut trm, &mut trv).unwrap();
    let f64s = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    // x̂ has spread 1/sqrt(3) (uniform values): f32's resolution at 10 (1e-6) is the floor.
    let dy = max_diff(&f64s(y.as_vec()), &want);
    assert!(dy < 2e-5, "normalised output off by {dy}");
    let dm = max_diff(&f64s(trm.as_vec()), &want_rm);
    assert!(dm < 1e-5, "running mean off by {dm}");
    let dv = max_diff(&f64s(trv.as_vec()), &want_rv);
    assert!(dv < 1e-6, "running variance off by {dv}");
}
