//! The layers: exact output types for every input form, d2l's numbers through the layer API,
//! dfdx's machinery (build, optimizers, parameter counts, checkpoints) working on them.

mod common;

use cnn::prelude::*;
use common::{TestDevice, same_type};

/// Zeros of a const shape, in f32 (so the element type needs no annotation at each use).
fn zeros<S: ConstShape>() -> Tensor<S, f32, TestDevice> {
    TestDevice::default().zeros()
}

// d2l 6.3's shapes, as layer types whose declared sizes the compiler checks.
type Pad1 = Conv2D<1, 1, 3, 3, 8, 8, 8, 8, 1, 1, 1, 1>;
type Rect = Conv2D<1, 1, 5, 3, 8, 8, 8, 8, 1, 1, 2, 1>;
type Stride2 = Conv2D<1, 1, 3, 3, 8, 8, 4, 4, 2, 2, 1, 1>;
type Mixed = Conv2D<1, 1, 3, 5, 8, 8, 2, 2, 3, 4, 0, 1>;

#[test]
fn d2l_6_3_output_types() {
    let dev: TestDevice = Default::default();
    let x = zeros::<Rank4<1, 1, 8, 8>>();
    let y = dev.build_module::<Pad1, f32>().forward(x.clone());
    same_type(&y, &zeros::<Rank4<1, 1, 8, 8>>());
    let y = dev.build_module::<Rect, f32>().forward(x.clone());
    same_type(&y, &zeros::<Rank4<1, 1, 8, 8>>());
    let y = dev.build_module::<Stride2, f32>().forward(x.clone());
    same_type(&y, &zeros::<Rank4<1, 1, 4, 4>>());
    let y = dev.build_module::<Mixed, f32>().forward(x);
    same_type(&y, &zeros::<Rank4<1, 1, 2, 2>>());
}

type LeNetConv = Conv2D<1, 6, 5, 5, 28, 28, 28, 28, 1, 1, 2, 2>;

#[test]
fn every_input_form_has_its_exact_type() {
    let dev: TestDevice = Default::default();
    let conv = dev.build_module::<LeNetConv, f32>();
    // one image
    let y = conv.forward(zeros::<Rank3<1, 28, 28>>());
    same_type(&y, &zeros::<Rank3<6, 28, 28>>());
    // a const batch
    let y = conv.forward(zeros::<Rank4<4, 1, 28, 28>>());
    same_type(&y, &zeros::<Rank4<4, 6, 28, 28>>());
    // a run-time batch
    let y = conv.forward(dev.zeros_like(&(3, Const::<1>, Const::<28>, Const::<28>)));
    let expect: Tensor<(usize, Const<6>, Const<28>, Const<28>), f32, TestDevice> =
        dev.zeros_like(&(3, Const, Const, Const));
    same_type(&y, &expect);
    assert_eq!(y.shape().0, 3);
    // with a tape
    let y = conv.forward(zeros::<Rank4<2, 1, 28, 28>>().leaky_trace());
    let t: Tensor<Rank4<2, 6, 28, 28>, f32, TestDevice, OwnedTape<f32, TestDevice>> = y;
    drop(t);

    let pool = AvgPool2D::<2, 2, 28, 28, 14, 14>;
    let p = pool.forward(zeros::<Rank4<2, 6, 28, 28>>());
    same_type(&p, &zeros::<Rank4<2, 6, 14, 14>>());
    let p = MaxPool2D::<3, 3, 4, 4, 2, 2, 2, 2, 1, 1>.forward(zeros::<Rank3<2, 4, 4>>());
    same_type(&p, &zeros::<Rank3<2, 2, 2>>());

    let f = Flatten2D::<400>.forward(zeros::<Rank4<2, 16, 5, 5>>());
    same_type(&f, &zeros::<Rank2<2, 400>>());
    let f = Flatten2D::<400>.forward(zeros::<Rank3<16, 5, 5>>());
    same_type(&f, &zeros::<Rank1<400>>());

    let fused = conv.fused(Sigmoid, AvgPool2D::<2, 2, 28, 28, 14, 14>);
    let y = fused.forward(zeros::<Rank4<2, 1, 28, 28>>());
    same_type(&y, &zeros::<Rank4<2, 6, 14, 14>>());
}

#[test]
fn fused_equals_separate_layers() {
    let dev: TestDevice = Default::default();
    let conv = dev.build_module::<LeNetConv, f64>();
    let x: Tensor<Rank4<3, 1, 28, 28>, f64, _> = dev.sample_normal();
    let pool = MaxPool2D::<2, 2, 28, 28, 14, 14>;
    let separate = pool.forward(Tanh.forward(conv.forward(x.clone())));
    let fused = conv.fused(Tanh, pool).forward(x);
    let (a, b) = (separate.as_vec(), fused.as_vec());
    assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-12));
}

#[test]
fn bias_false_has_no_bias_and_fewer_params() {
    let dev: TestDevice = Default::default();
    type NoBias = Conv2D<1, 1, 1, 2, 6, 8, 6, 7, 1, 1, 0, 0, 1, 1, 1, 1, false>;
    let m = dev.build_module::<NoBias, f32>();
    assert!(m.bias.is_none());
    assert_eq!(m.num_trainable_params(), 2);
    assert_eq!(NoBias::PARAMS, 2);
    let m = dev.build_module::<LeNetConv, f32>();
    assert_eq!(m.num_trainable_params(), 6 * 25 + 6);
    // depthwise: groups = in = out
    type Depthwise = Conv2D<4, 4, 3, 3, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 4, 1>;
    assert_eq!(
        dev.build_module::<Depthwise, f32>().num_trainable_params(),
        4 * 9 + 4
    );
}

#[test]
fn init_is_pytorchs_uniform_bound() {
    let dev: TestDevice = Default::default();
    type Big = Conv2D<16, 64, 5, 5, 8, 8, 4, 4>;
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

type Small = (
    (
        Conv2D<1, 4, 3, 3, 8, 8, 8, 8, 1, 1, 1, 1>,
        ReLU,
        MaxPool2D<2, 2, 8, 8, 4, 4>,
    ),
    (Conv2D<4, 8, 3, 3, 4, 4, 2, 2>, Sigmoid, Flatten2D<32>),
    Linear<32, 3>,
);

#[test]
fn sgd_step_lowers_the_loss() {
    let dev: TestDevice = Default::default();
    let mut model = dev.build_module::<Small, f32>();
    let mut grads = model.alloc_grads();
    let mut opt = Sgd::new(
        &model,
        SgdConfig {
            lr: 0.3,
            momentum: None,
            weight_decay: None,
        },
    );
    let x: Tensor<Rank4<16, 1, 8, 8>, f32, _> = dev.sample_normal();
    let y = dev.one_hot_encode(
        Const::<3>,
        [0usize, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0],
    );
    let mut losses = vec![];
    for _ in 0..40 {
        let logits = model.forward_mut(x.trace(grads));
        let loss = cross_entropy_with_logits_loss(logits, y.clone());
        losses.push(loss.array());
        grads = loss.backward();
        opt.update(&mut model, &grads).unwrap();
        model.zero_grads(&mut grads);
    }
    // The first step lowers the loss on this fixed batch, and 40 of them by a good margin.
    assert!(losses[1] < losses[0], "losses {losses:?}");
    assert!(losses[39] < losses[0] * 0.8, "losses {losses:?}");
}

#[test]
fn safetensors_round_trip_restores_outputs_exactly() {
    let dev: TestDevice = Default::default();
    let model = dev.build_module::<Small, f32>();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.safetensors");
    model.save_safetensors(&path).unwrap();
    let mut other = dev.build_module::<Small, f32>();
    let x: Tensor<Rank4<2, 1, 8, 8>, f32, _> = dev.sample_normal();
    assert_ne!(
        model.forward(x.clone()).array(),
        other.forward(x.clone()).array()
    );
    other.load_safetensors(&path).unwrap();
    assert_eq!(model.forward(x.clone()).array(), other.forward(x).array());
}

#[test]
fn to_dtype_and_reset_params_work() {
    let dev: TestDevice = Default::default();
    let mut m = dev.build_module::<LeNetConv, f32>();
    let before = m.weight.as_vec();
    m.reset_params();
    assert_ne!(before, m.weight.as_vec());
    let m64 = m.to_dtype::<f64>();
    assert_eq!(m64.weight.as_vec().len(), 150);
}
