//! The `cnn!` macro end to end: the types it writes (asserted as types, nalgebra-macros style),
//! the values they compute, and dfdx's machinery (building, optimisers, gradients, dtype
//! conversion, save/load) working on them. The macro is invoked at module scope (`pub` and
//! private, with doc comments) and at function scope.

mod common;

use cnn::prelude::*;
use common::{TestDevice, same_type};
use dfdx::optim::Optimizer;

cnn! {
    /// d2l's LeNet (section 7.6), on 28x28 Fashion-MNIST images.
    pub struct LeNet: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }

    // Private, two in one invocation, with named layers, inline shapes and explicit in-counts.
    struct Named: [3, 32, 32] {
        stem: conv2d(3 => 8, kernel = 3, padding = 1) -> [8, 32, 32], relu,
        pool: max_pool2d(kernel = 2) -> [8, 16, 16],
        conv2d(8 => 8, kernel = 3, padding = same, groups = 2, bias = false),
        act: leaky_relu(0.2),
        flatten -> [2048],
        drop: dropout(0.25),
        head: linear(2048 => 10, bias = false) -> [10],
    }
}

/// The device the tests run on: `Cuda` under `--features cuda`.
type Dev = TestDevice;

#[test]
fn lenet_types_and_sizes() {
    let dev: Dev = Default::default();
    let model = dev.build_module::<LeNet, f32>();
    let _: &LeNet<f32, Dev> = &model;
    let _: &Conv2D<1, 6, 5, 5, 28, 28, 28, 28, 1, 1, 2, 2, 1, 1, 1, 1, true, 2, 2, f32, Dev> =
        &model._0;
    let _: &Conv2D<6, 16, 5, 5, 14, 14, 10, 10, 1, 1, 0, 0, 1, 1, 1, 6, true, 0, 0, f32, Dev> =
        &model._3;
    let _: &modules::Linear<400, 120, f32, Dev> = &model._7;
    let _: &modules::Linear<120, 84, f32, Dev> = &model._9;
    let _: &modules::Linear<84, 10, f32, Dev> = &model._11;

    let y = model.forward(dev.zeros::<Rank3<1, 28, 28>>());
    same_type(&y, &dev.zeros::<Rank1<10>>());
    let y = model.forward(dev.zeros::<Rank4<4, 1, 28, 28>>());
    same_type(&y, &dev.zeros::<Rank2<4, 10>>());
    let y = model.forward(dev.zeros_like(&(3usize, Const::<1>, Const::<28>, Const::<28>)));
    same_type(&y, &dev.zeros_like(&(3usize, Const::<10>)));
    assert_eq!(y.shape().0, 3);

    // d2l's count for LeNet.
    assert_eq!(LeNet::PARAMS, 61_706);
    assert_eq!(model.num_trainable_params(), LeNet::PARAMS);
    assert_eq!(
        LeNet::MACS,
        6 * 28 * 28 * 25 + 16 * 10 * 10 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    );
    assert_eq!(LeNet::INPUT, [1, 28, 28]);
    assert_eq!(LeNet::OUTPUT, [10]);
}

#[test]
fn lenet_summary() {
    let summary = LeNet::summary();
    assert_eq!(summary.params(), LeNet::PARAMS);
    assert_eq!(summary.macs(), LeNet::MACS);
    let expected = "\
LeNet: [1, 28, 28] -> [10]
layer  kind                            output        params  mult-adds  receptive field
-----  ------------------------------  ------------  ------  ---------  ---------------
0      conv2d(6, kernel=5, padding=2)  [6, 28, 28]      156    117,600  5x5
       sigmoid                         [6, 28, 28]        0          0  5x5
       avg_pool2d(kernel=2, stride=2)  [6, 14, 14]        0          0  6x6
3      conv2d(16, kernel=5)            [16, 10, 10]   2,416    240,000  14x14
       sigmoid                         [16, 10, 10]       0          0  14x14
       avg_pool2d(kernel=2, stride=2)  [16, 5, 5]         0          0  16x16
       flatten                         [400]              0          0  -
7      linear(120)                     [120]         48,120     48,000  -
       sigmoid                         [120]              0          0  -
9      linear(84)                      [84]          10,164     10,080  -
       sigmoid                         [84]               0          0  -
11     linear(10)                      [10]             850        840  -
---------------------------------------------------------------------------------------
params: 61,706 (trainable 61,706, non-trainable 0)
mult-adds per image: 416,520
output: [10]";
    assert_eq!(summary.to_string(), expected);
}

#[test]
fn named_layers_are_fields() {
    let dev: Dev = Default::default();
    let model = dev.build_module::<Named, f32>();
    let _: &Conv2D<3, 8, 3, 3, 32, 32, 32, 32, 1, 1, 1, 1, 1, 1, 1, 3, true, 1, 1, f32, Dev> =
        &model.stem;
    let _: &MaxPool2D<2, 2, 32, 32, 16, 16, 2, 2, 0, 0> = &model.pool;
    // `padding = same` with kernel 3, stride 1: 1 on every side. The unnamed conv is the
    // fourth entry (named ones take a number too, as in `nn.Sequential`), so `_3`.
    let _: &Conv2D<8, 8, 3, 3, 16, 16, 16, 16, 1, 1, 1, 1, 1, 1, 2, 4, false, 1, 1, f32, Dev> =
        &model._3;
    assert!(model._3.bias.is_none());
    let _: &modules::LeakyReLU<f32> = &model.act;
    assert_eq!(model.act.0, 0.2);
    assert_eq!(model.drop.p, 0.25);
    let _: &modules::UnbiasedLinear<2048, 10, f32, Dev> = &model.head;
    assert_eq!(Named::PARAMS, 3 * 8 * 9 + 8 + 8 * 4 * 9 + 2048 * 10);
    assert_eq!(model.num_trainable_params(), Named::PARAMS);

    // Dropout: identity in `forward`, any tape.
    let x = dev.sample_normal::<Rank4<2, 3, 32, 32>>();
    let a = model.forward(x.clone());
    let b = model.forward(x.clone().leaky_trace());
    assert_eq!(a.array(), b.array());
    same_type(&a, &dev.zeros::<Rank2<2, 10>>());
}

#[test]
fn function_scope_and_odd_shapes() {
    cnn! {
        struct Odd: [2, 9, 7] {
            conv2d(4, kernel = (3, 2), stride = (2, 1), padding = (1, 0), dilation = (1, 2)) -> [4, 5, 5],
            max_pool2d(kernel = 3, stride = 2, padding = 1) -> [4, 3, 3],
            conv2d(4, kernel = 2, padding = same, stride = 2) -> [4, 2, 2],
            avg_pool2d(kernel = (2, 1)) -> [4, 1, 2],
        }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<Odd, f64>();
    let y = model.forward(dev.sample_normal::<Rank3<2, 9, 7>>());
    same_type(&y, &dev.zeros::<Rank3<4, 1, 2>>());
    assert_eq!(Odd::OUTPUT, [4, 1, 2]);
    // padding = same, n = 3, k = 2, s = 2: out 2, total padding 1, all at the bottom/right.
    let _: &Conv2D<4, 4, 2, 2, 3, 3, 2, 2, 2, 2, 0, 0, 1, 1, 1, 4, true, 1, 1, f64, Dev> =
        &model._2;
    let rf: Vec<_> = Odd::summary()
        .rows
        .iter()
        .map(|r| r.receptive_field)
        .collect();
    // conv (3, 2) dilated (1, 2) -> spans (3, 3); pool 3 s2 over j 2x1; conv 2 s2 over j 4x2;
    // pool (2, 1) over j 8x4.
    assert_eq!(
        rf,
        [Some((3, 3)), Some((7, 5)), Some((11, 7)), Some((19, 7))]
    );
}

#[test]
fn stateless_network() {
    cnn! {
        /// No parameters at all: `E` and `D` are held by a marker.
        pub(crate) struct Pools: [1, 4, 4] -> [4] {
            max_pool2d(kernel = 2), flatten, softmax,
        }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<Pools, f32>();
    assert_eq!(Pools::PARAMS, 0);
    assert_eq!(model.num_trainable_params(), 0);
    let y = model.forward(dev.tensor([[
        [1.0, 2.0, 0.0, 0.0],
        [3.0, 4.0, 0.0, 1.0],
        [0.0; 4],
        [0.0; 4],
    ]]));
    let sum: f32 = y.array().iter().sum();
    assert!((sum - 1.0).abs() < 1e-6);
}

#[test]
fn many_fields_nest_tuples() {
    // Eight parameterised layers: more than the 6 fields `visit_fields` takes in one tuple.
    cnn! {
        struct Deep: [1, 2, 2] -> [3] {
            flatten,
            linear(5), relu, linear(5), relu, linear(5), relu, linear(5), relu,
            linear(5), relu, linear(5), relu, linear(5), relu, linear(3),
        }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<Deep, f32>();
    assert_eq!(Deep::PARAMS, (4 * 5 + 5) + 6 * (5 * 5 + 5) + (5 * 3 + 3));
    assert_eq!(model.num_trainable_params(), Deep::PARAMS);
    let _: &modules::Linear<5, 3, f32, Dev> = &model._15;
}

#[test]
fn fused_run_matches_the_layers() {
    cnn! {
        struct Block: [2, 6, 6] {
            conv2d(3, kernel = 3, padding = 1), relu, max_pool2d(kernel = 2),
        }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<Block, f64>();
    let x = dev.sample_normal::<Rank4<2, 2, 6, 6>>();
    let fused = model.forward(x.clone());
    let conv = model._0.forward(x).relu();
    let separate = MaxPool2D::<2, 2, 6, 6, 3, 3, 2, 2, 0, 0>.forward(conv);
    for (a, b) in fused.as_vec().iter().zip(separate.as_vec()) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }
}

#[test]
fn training_step() {
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<LeNet, f32>();
    let mut grads = model.alloc_grads();
    let mut opt = dfdx::optim::Sgd::new(
        &model,
        dfdx::optim::SgdConfig {
            lr: 0.1,
            momentum: None,
            weight_decay: None,
        },
    );
    let x = dev.sample_normal::<Rank4<8, 1, 28, 28>>();
    let y = dev.tensor([[0.1f32; 10]; 8]);
    let before = model._0.weight.as_vec();
    let logits = model.forward_mut(x.traced(grads));
    let loss = cross_entropy_with_logits_loss(logits, y);
    grads = loss.backward();
    let g = grads.get(&model._0.weight);
    same_type(&g, &model._0.weight);
    opt.update(&mut model, &grads)
        .expect("every parameter has a gradient");
    model.zero_grads(&mut grads);
    assert_ne!(before, model._0.weight.as_vec());
}

#[test]
fn batch_norm_and_dropout_modes() {
    cnn! {
        struct Bn: [2, 4, 4] -> [3] {
            conv2d(4, kernel = 3), batch_norm2d, relu, dropout(0.5), flatten, linear(3),
        }
    }
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<Bn, f32>();
    let _: &cnn::nn::BatchNorm2D<4, f32, Dev> = &model._1;
    // Trainable: conv 4*2*9 + 4, batch norm scale and bias 2*4, linear 16*3 + 3.
    assert_eq!(Bn::PARAMS, 76 + 8 + 51);
    assert_eq!(model.num_trainable_params(), Bn::PARAMS);
    assert_eq!(Bn::summary().non_trainable(), 8);

    // Inference: running statistics, no dropout; deterministic.
    let x = dev.sample_normal::<Rank4<5, 2, 4, 4>>();
    let a = model.forward(x.clone());
    let b = model.forward(x.clone());
    assert_eq!(a.array(), b.array());
    assert_eq!(model._1.running_mean.array(), [0.0; 4]);

    // Training: batch statistics, updating the running ones.
    let grads = model.alloc_grads();
    let y = model.forward_mut(x.clone().traced(grads));
    same_type(&y, &dev.zeros::<Rank2<5, 3>>().traced(model.alloc_grads()));
    assert_ne!(model._1.running_mean.array(), [0.0; 4]);
}

#[test]
fn dtype_device_and_checkpoints() {
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<LeNet, f32>();
    let x = dev.sample_normal::<Rank3<1, 28, 28>>();
    let y = model.forward(x.clone());

    let wide: LeNet<f64, Dev> = model.to_dtype::<f64>();
    let y64 = wide.forward(x.clone().to_dtype::<f64>());
    for (a, b) in y.as_vec().iter().zip(y64.as_vec()) {
        assert!((*a as f64 - b).abs() < 1e-5);
    }
    let moved: LeNet<f32, Dev> = model.to_device(&dev);
    assert_eq!(moved.forward(x.clone()).array(), y.array());

    let path =
        std::env::temp_dir().join(format!("cnn-macro-test-{}.safetensors", std::process::id()));
    model.save_safetensors(&path).expect("save");
    let mut loaded = dev.build_module::<LeNet, f32>();
    assert_ne!(loaded.forward(x.clone()).array(), y.array());
    loaded.load_safetensors(&path).expect("load");
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.forward(x.clone()).array(), y.array());

    model.reset_params();
    assert_ne!(model.forward(x).array(), y.array());
}

#[test]
fn dropout_applies_only_in_forward_mut() {
    cnn! {
        struct Drop: [1, 1, 64] -> [64] { flatten, dropout(0.5) }
    }
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<Drop, f32>();
    let x = dev.ones::<Rank3<1, 1, 64>>();
    // Inference: identity, with or without a tape.
    assert_eq!(model.forward(x.clone()).array(), [1.0; 64]);
    assert_eq!(model.forward(x.clone().leaky_trace()).array(), [1.0; 64]);
    // Training: each unit zeroed or scaled by 1 / (1 - p).
    let y = model.forward_mut(x.leaky_trace()).array();
    assert!(y.iter().all(|&v| v == 0.0 || v == 2.0), "{y:?}");
    assert!(y.contains(&0.0) && y.contains(&2.0));
}

// ---------------------------------------------------------------------------------------------
// The input's gradient: computed by default, skipped with `#[cnn(input_grad = false)]`

cnn! {
    /// The first half of a composed network.
    pub struct Stage1: [1, 8, 8] -> [4, 4, 4] {
        conv2d(4, kernel = 3, padding = 1), relu, max_pool2d(kernel = 2),
    }

    /// The second half. It starts with a conv, whose input is `Stage1`'s output: the gradient
    /// with respect to that input is what trains `Stage1`.
    pub struct Stage2: [4, 4, 4] -> [3] {
        conv2d(8, kernel = 3, padding = 1), tanh, avg_pool2d(kernel = 2), flatten, linear(3),
    }

    /// `Stage2` declared as if its input were data.
    #[cnn(input_grad = false)]
    pub struct Stage2Data: [4, 4, 4] -> [3] {
        conv2d(8, kernel = 3, padding = 1), tanh, avg_pool2d(kernel = 2), flatten, linear(3),
    }

    /// LeNet with the opt-in speed-up.
    #[cnn(input_grad = false)]
    pub struct LeNetData: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }
}

fn all_nonzero(v: &[f32]) -> bool {
    v.iter().any(|&g| g != 0.0) && v.iter().all(|g| g.is_finite())
}

/// Two networks in a tuple train as one: the second passes the gradient back to the first.
/// (Before `input_grad` was an option, every network starting with a conv skipped it, and
/// `Stage1`'s weights got exactly zero gradient, with no error.)
#[test]
fn composed_networks_train_both() {
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<(Stage1, Stage2), f32>();
    let mut grads = model.alloc_grads();
    let x = dev.sample_normal::<Rank4<4, 1, 8, 8>>();
    let target = dev.sample_normal::<Rank2<4, 3>>();

    let y = model.forward_mut(x.clone().traced(grads));
    let loss = mse_loss(y, target.clone());
    let before = loss.array();
    grads = loss.backward();
    assert!(all_nonzero(&grads.get(&model.0._0.weight).as_vec()));
    assert!(all_nonzero(
        &grads.get(model.0._0.bias.as_ref().unwrap()).as_vec()
    ));
    assert!(all_nonzero(&grads.get(&model.1._0.weight).as_vec()));

    let mut opt = dfdx::optim::Sgd::new(&model, Default::default());
    let stage1 = model.0._0.weight.as_vec();
    opt.update(&mut model, &grads)
        .expect("every parameter has a gradient");
    assert_ne!(stage1, model.0._0.weight.as_vec());
    let after = mse_loss(model.forward(x), target).array();
    assert!(after < before, "{after} >= {before}");
}

/// What the opt-in's documentation warns about: a network after another one that declares its
/// input to be data leaves the first one untrained.
#[test]
fn input_grad_false_stops_the_gradient_at_the_network() {
    let dev: Dev = Default::default();
    let model = dev.build_module::<(Stage1, Stage2Data), f32>();
    let grads = model.alloc_grads();
    let x = dev.sample_normal::<Rank4<4, 1, 8, 8>>();
    let loss = model.forward(x.traced(grads)).square().mean();
    let grads = loss.backward();
    assert!(
        grads
            .get(&model.0._0.weight)
            .as_vec()
            .iter()
            .all(|&g| g == 0.0)
    );
    assert!(all_nonzero(&grads.get(&model.1._0.weight).as_vec()));
}

/// A saliency map: the gradient of the output with respect to the image, by default. It is
/// the same as through the layers one by one (unfused, each computing its input's gradient).
#[test]
fn input_gradient_matches_the_layers() {
    let dev: Dev = Default::default();
    let model = dev.build_module::<LeNet, f64>();
    let x = dev.sample_normal::<Rank4<2, 1, 28, 28>>();
    let pick = dev.sample_normal::<Rank2<2, 10>>();

    let y = model.forward(x.leaky_trace());
    let g = (y * pick.clone()).sum().backward().get(&x).as_vec();

    let h = model._0.forward(x.leaky_trace()).sigmoid();
    let h = AvgPool2D::<2, 2, 28, 28, 14, 14, 2, 2, 0, 0>.forward(h);
    let h = model._3.forward(h).sigmoid();
    let h = AvgPool2D::<2, 2, 10, 10, 5, 5, 2, 2, 0, 0>.forward(h);
    let h = Flatten2D::<400>.forward(h);
    let h = model._7.forward(h).sigmoid();
    let h = model._9.forward(h).sigmoid();
    let y = model._11.forward(h);
    let expected = (y * pick).sum().backward().get(&x).as_vec();

    assert!(expected.iter().any(|&g| g != 0.0));
    for (a, b) in g.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }
}

/// The input's gradient against central finite differences of the forward pass.
#[test]
fn input_gradient_matches_finite_differences() {
    cnn! {
        struct Small: [2, 5, 5] -> [3] {
            conv2d(3, kernel = 3), tanh, avg_pool2d(kernel = 3), flatten, linear(3),
        }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<Small, f64>();
    let x = dev.sample_normal::<Rank3<2, 5, 5>>();
    let pick = dev.tensor([0.5, -1.0, 2.0]);
    let loss = |x: Tensor<Rank3<2, 5, 5>, f64, Dev>| (model.forward(x) * pick.clone()).sum();

    let g = (model.forward(x.leaky_trace()) * pick.clone())
        .sum()
        .backward()
        .get(&x)
        .as_vec();

    let eps = 1e-6;
    let v = x.as_vec();
    for i in 0..v.len() {
        let at = |d: f64| {
            let mut w = v.clone();
            w[i] += d;
            loss(dev.tensor_from_vec(w, (Const, Const, Const))).array()
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        assert!((g[i] - fd).abs() < 1e-6, "pixel {i}: {} != {fd}", g[i]);
    }
}

/// With `#[cnn(input_grad = false)]` every weight still gets its gradient, and the network
/// computes what it computes without the option.
#[test]
fn input_grad_false_still_trains_every_weight() {
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<LeNetData, f32>();
    let plain: LeNet<f32, Dev> = LeNet {
        _0: model._0.clone(),
        _3: model._3.clone(),
        _7: model._7.clone(),
        _9: model._9.clone(),
        _11: model._11.clone(),
    };
    let x = dev.sample_normal::<Rank4<8, 1, 28, 28>>();
    let y = dev.tensor([[0.1f32; 10]; 8]);
    assert_eq!(
        model.forward(x.clone()).array(),
        plain.forward(x.clone()).array()
    );

    let grads = model.alloc_grads();
    let loss =
        cross_entropy_with_logits_loss(model.forward_mut(x.clone().traced(grads)), y.clone());
    let grads = loss.backward();
    let plain_grads =
        cross_entropy_with_logits_loss(plain.forward(x.traced(plain.alloc_grads())), y).backward();
    let pairs = [
        (
            grads.get(&model._0.weight).as_vec(),
            plain_grads.get(&plain._0.weight).as_vec(),
        ),
        (
            grads.get(model._0.bias.as_ref().unwrap()).as_vec(),
            plain_grads.get(plain._0.bias.as_ref().unwrap()).as_vec(),
        ),
        (
            grads.get(&model._3.weight).as_vec(),
            plain_grads.get(&plain._3.weight).as_vec(),
        ),
        (
            grads.get(&model._7.weight).as_vec(),
            plain_grads.get(&plain._7.weight).as_vec(),
        ),
        (
            grads.get(&model._11.bias).as_vec(),
            plain_grads.get(&plain._11.bias).as_vec(),
        ),
    ];
    for (fast, plain) in pairs {
        assert!(all_nonzero(&fast));
        for (a, b) in fast.iter().zip(&plain) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "{a} != {b}");
        }
    }
    let mut opt = dfdx::optim::Sgd::new(&model, Default::default());
    let before = model._0.weight.as_vec();
    opt.update(&mut model, &grads)
        .expect("every parameter has a gradient");
    assert_ne!(before, model._0.weight.as_vec());
    assert!(
        LeNetData::summary()
            .to_string()
            .starts_with("LeNetData: [1, 28, 28] -> [10]")
    );
}

// ---------------------------------------------------------------------------------------------
// Names

/// Networks named like the parameters of the generated impls (`B` for the batch, `T` for the
/// tape, `X` for the input, `V` for the visitor) compile and run, through every kind of impl:
/// a leaky ReLU (its slope helper), dropout and batch norm (`forward_mut`).
#[test]
fn networks_named_like_generic_parameters() {
    cnn! {
        struct B: [1, 4, 4] -> [2] {
            conv2d(2, kernel = 3), leaky_relu(0.1), max_pool2d(kernel = 2), flatten, linear(2),
        }
        struct T: [1, 4, 4] -> [2] { flatten, dropout(0.5), linear(2) }
        pub struct X: [1, 4, 4] -> [2, 2, 2] { conv2d(2, kernel = 3), batch_norm2d }
        struct V: [1, 4, 4] -> [1, 4, 4] {}
        struct E2: [1, 4, 4] -> [1, 6, 6] { conv_transpose2d(1, kernel = 3) }
    }
    let dev: Dev = Default::default();
    let x = dev.sample_normal::<Rank4<3, 1, 4, 4>>();
    let b = dev.build_module::<B, f32>();
    same_type(&b.forward(x.clone()), &dev.zeros::<Rank2<3, 2>>());
    same_type(
        &b.forward(dev.zeros::<Rank3<1, 4, 4>>()),
        &dev.zeros::<Rank1<2>>(),
    );
    let mut t = dev.build_module::<T, f32>();
    let _ = t.forward_mut(x.clone().leaky_trace());
    let mut m = dev.build_module::<X, f32>();
    let _ = m.forward_mut(x.clone().leaky_trace());
    same_type(&m.forward(x.clone()), &dev.zeros::<Rank4<3, 2, 2, 2>>());
    let v = dev.build_module::<V, f32>();
    assert_eq!(v.forward(x.clone()).array(), x.array());
    let e2 = dev.build_module::<E2, f32>();
    same_type(&e2.forward(x), &dev.zeros::<Rank4<3, 1, 6, 6>>());
    assert_eq!(B::PARAMS, 2 * 9 + 2 + 2 * 2 + 2);
}

// ---------------------------------------------------------------------------------------------
// conv_transpose2d

cnn! {
    /// A small decoder: 4x4 doubled twice, DCGAN's way (kernel 4, stride 2, padding 1), then
    /// PyTorch's (kernel 3, stride 2, padding 1, output_padding 1).
    struct Decoder: [8, 4, 4] -> [1, 16, 16] {
        conv_transpose2d(8 => 4, kernel = 4, stride = 2, padding = 1) -> [4, 8, 8], relu,
        up: conv_transpose2d(1, kernel = 3, stride = 2, padding = 1, output_padding = 1, bias = false),
    }
}

type Up1 = ConvTranspose2D<8, 4, 4, 4, 4, 4, 8, 8, 2, 2, 1, 1, 0, 0, 1, 1, 1, 4, true>;
type Up2 = ConvTranspose2D<4, 1, 3, 3, 8, 8, 16, 16, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, false>;

#[test]
fn conv_transpose_types_and_sizes() {
    let dev: Dev = Default::default();
    let model = dev.build_module::<Decoder, f32>();
    let _: &ConvTranspose2D<8, 4, 4, 4, 4, 4, 8, 8, 2, 2, 1, 1, 0, 0, 1, 1, 1, 4, true, f32, Dev> =
        &model._0;
    let _: &ConvTranspose2D<
        4,
        1,
        3,
        3,
        8,
        8,
        16,
        16,
        2,
        2,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        false,
        f32,
        Dev,
    > = &model.up;
    assert!(model.up.bias.is_none());
    let y = model.forward(dev.zeros::<Rank4<2, 8, 4, 4>>());
    same_type(&y, &dev.zeros::<Rank4<2, 1, 16, 16>>());
    let y = model.forward(dev.zeros::<Rank3<8, 4, 4>>());
    same_type(&y, &dev.zeros::<Rank3<1, 16, 16>>());

    // params IN * OUT/G * KH * KW (+ OUT); mult-adds IN * OUT/G * KH * KW * H * W.
    assert_eq!(Decoder::PARAMS, 8 * 4 * 16 + 4 + 4 * 9);
    assert_eq!(model.num_trainable_params(), Decoder::PARAMS);
    assert_eq!(Decoder::PARAMS, Up1::PARAMS + Up2::PARAMS);
    assert_eq!(Decoder::MACS, 8 * 4 * 16 * 4 * 4 + 4 * 9 * 8 * 8);
    let expected = "\
Decoder: [8, 4, 4] -> [1, 16, 16]
layer  kind                                                                              output       params  mult-adds  receptive field
-----  --------------------------------------------------------------------------------  -----------  ------  ---------  ---------------
0      conv_transpose2d(8 => 4, kernel=4, stride=2, padding=1)                           [4, 8, 8]       516      8,192  -
       relu                                                                              [4, 8, 8]         0          0  -
up     conv_transpose2d(1, kernel=3, stride=2, padding=1, output_padding=1, bias=false)  [1, 16, 16]      36      2,304  -
----------------------------------------------------------------------------------------------------------------------------------------
params: 552 (trainable 552, non-trainable 0)
mult-adds per image: 10,496
output: [1, 16, 16]";
    // The receptive field is `-` after a transposed conv with stride 2 (see `cnn!`'s docs).
    assert_eq!(Decoder::summary().to_string(), expected);
}

/// The macro's layers compute what the same layers built by hand do.
#[test]
fn conv_transpose_matches_the_layers_built_by_hand() {
    let dev: Dev = Default::default();
    let model = dev.build_module::<Decoder, f64>();
    let mut up1 = dev.build_module::<Up1, f64>();
    let mut up2 = dev.build_module::<Up2, f64>();
    up1.weight = model._0.weight.clone();
    up1.bias = model._0.bias.clone();
    up2.weight = model.up.weight.clone();
    let x = dev.sample_normal::<Rank4<2, 8, 4, 4>>();
    let y = model.forward(x.clone());
    let by_hand = up2.forward(up1.forward(x).relu());
    assert_eq!(y.array(), by_hand.array());
}

/// A few SGD steps on a transposed-conv network lower its loss.
#[test]
fn conv_transpose_trains() {
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<Decoder, f32>();
    let mut grads = model.alloc_grads();
    let mut opt = dfdx::optim::Sgd::new(
        &model,
        dfdx::optim::SgdConfig {
            lr: 0.05,
            momentum: None,
            weight_decay: None,
        },
    );
    let x = dev.sample_normal::<Rank4<4, 8, 4, 4>>();
    let target = dev.sample_normal::<Rank4<4, 1, 16, 16>>();
    let loss =
        |model: &Decoder<f32, Dev>| mse_loss(model.forward(x.clone()), target.clone()).array();
    let before = loss(&model);
    for _ in 0..5 {
        let y = model.forward_mut(x.clone().traced(grads));
        grads = mse_loss(y, target.clone()).backward();
        assert!(all_nonzero(&grads.get(&model.up.weight).as_vec()));
        assert!(all_nonzero(&grads.get(&model._0.weight).as_vec()));
        opt.update(&mut model, &grads)
            .expect("every parameter has a gradient");
        model.zero_grads(&mut grads);
    }
    let after = loss(&model);
    assert!(after < before, "{after} >= {before}");
}

/// A stride-2 conv halves the size, rounding down; the stride-2 transposed conv with the
/// output padding the rounding dropped doubles it back, to the input's exact type.
#[test]
fn conv_then_conv_transpose_restores_the_shape() {
    cnn! {
        struct RoundTrip: [3, 16, 15] -> [3, 16, 15] {
            conv2d(6, kernel = 3, stride = 2, padding = 1) -> [6, 8, 8], relu,
            conv_transpose2d(3, kernel = 3, stride = 2, padding = 1, output_padding = (1, 0)),
        }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<RoundTrip, f32>();
    let x = dev.sample_normal::<Rank4<2, 3, 16, 15>>();
    same_type(&model.forward(x.clone()), &x);
    let one = dev.sample_normal::<Rank3<3, 16, 15>>();
    same_type(&model.forward(one.clone()), &one);
    let _: &ConvTranspose2D<
        6,
        3,
        3,
        3,
        8,
        8,
        16,
        15,
        2,
        2,
        1,
        1,
        1,
        0,
        1,
        1,
        1,
        3,
        true,
        f32,
        Dev,
    > = &model._2;
}
