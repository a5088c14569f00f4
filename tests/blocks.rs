//! Blocks in `cnn!`: residual connections, concatenation, sums, scaling, repeats, user blocks,
//! global and adaptive pooling, batch_norm1d, relu6 and silu, checked against PyTorch running
//! d2l's own chapter-8 code (goldens from `tests/goldens/blocks.py`, PyTorch 2.15.0, float64:
//! each module's `state_dict`, loaded by `load_pytorch` with no key map, and its outputs and
//! gradients), against naive loops, and for their types, paths and checkpoint keys.

mod common;

use cnn::prelude::*;
use common::{Rng, TestDevice, max_diff, same_type};

type Dev = TestDevice;

cnn! {
    /// d2l 8.6: two 3x3 convolutions with batch norm; a 1x1 convolution on the shortcut when
    /// the shape changes.
    block Residual(c, use_1x1conv = false, stride = 1) {
        residual {
            conv1: conv2d(c, kernel = 3, padding = 1, stride = stride), bn1: batch_norm2d, relu,
            conv2: conv2d(c, kernel = 3, padding = 1), bn2: batch_norm2d,
        } shortcut {
            if use_1x1conv { conv3: conv2d(c, kernel = 1, stride = stride) }
        },
        relu,
    }

    /// d2l 8.4: four branches, their channels stacked.
    block Inception(c1, c2, c3, c4) {
        concat {
            { b1_1: conv2d(c1, kernel = 1), relu },
            { b2_1: conv2d(c2.0, kernel = 1), relu, b2_2: conv2d(c2.1, kernel = 3, padding = 1), relu },
            { b3_1: conv2d(c3.0, kernel = 1), relu, b3_2: conv2d(c3.1, kernel = 5, padding = 2), relu },
            { b4_1: max_pool2d(kernel = 3, stride = 1, padding = 1), b4_2: conv2d(c4, kernel = 1), relu },
        }
    }

    /// d2l 8.7: each convolution block's output is stacked onto its input.
    block DenseBlock(num_convs, growth) {
        net: repeat(num_convs) {
            concat { identity, { batch_norm2d, relu, conv2d(growth, kernel = 3, padding = 1) } }
        }
    }

    /// d2l 8.7's transition block.
    block Transition(c) {
        batch_norm2d, relu, conv2d(c, kernel = 1), avg_pool2d(kernel = 2, stride = 2)
    }

    pub struct ResidualNet: [3, 8, 8] -> [4, 4, 4] {
        a: Residual(4, use_1x1conv = true, stride = 2),
        b: Residual(4),
    }

    pub struct InceptionNet: [3, 6, 6] -> [9, 6, 6] {
        Inception(2, (2, 3), (1, 2), 2),
    }

    pub struct DenseNet: [3, 6, 6] -> [3, 3, 3] {
        dense: DenseBlock(2, 2) -> [7, 6, 6],
        trans: Transition(3),
    }

    /// Squeeze-and-excitation, a sum of three branches, relu6 and silu, the global and
    /// adaptive pools, and batch_norm1d; the layers named as the PyTorch module's attributes.
    pub struct Misc: [4, 8, 8] -> [3] {
        conv1: conv2d(4, kernel = 3, padding = 1), silu,
        scale { global_avg_pool2d, linear1: linear(C / 2), relu, linear2: linear(C), sigmoid },
        sum {
            { conv2: conv2d(4, kernel = 1), relu6 },
            identity,
            conv3: conv2d(4, kernel = 3, padding = 1, groups = 4),
        },
        adaptive_avg_pool2d(3),
        concat { global_max_pool2d, { adaptive_avg_pool2d(1), flatten } } -> [8],
        linear3: linear(6), bn1: batch_norm1d, relu,
        linear4: linear(3),
    }
}

/// One tensor of a golden file, as `f64`s.
fn golden(file: &::safetensors::SafeTensors, key: &str) -> Vec<f64> {
    let t = file
        .tensor(key)
        .unwrap_or_else(|e| panic!("golden `{key}`: {e:?}"));
    assert_eq!(t.dtype(), ::safetensors::Dtype::F64);
    t.data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn golden_path(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/goldens/{file}.safetensors"))
}

/// `actual` within `tol` of `expected`, relative to the largest expected magnitude.
#[track_caller]
fn assert_close(what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    let scale = expected.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    let diff = max_diff(actual, expected);
    assert!(
        diff <= tol * scale,
        "{what}: differs by {diff:e} (largest value {scale:e})\n actual {actual:?}\n expected {expected:?}"
    );
}

/// Loads a case's `state_dict` with `load_pytorch` (no key map), then checks the inference
/// output, the training output, the input gradient, and every listed gradient and running
/// statistic against PyTorch's.
macro_rules! check_case {
    ($case:literal, $Net:ty, $In:ty, grads: [$($g:ident $(. $gp:ident)* => $gk:literal),* $(,)?], running: [$($r:ident $(. $rp:ident)* => $rk:literal),* $(,)?]) => {{
        let bytes = std::fs::read(golden_path(concat!($case, ".io"))).unwrap();
        let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let dev: Dev = Default::default();
        let mut model = dev.build_module::<$Net, f64>();
        cnn::checkpoint::load_pytorch(&mut model, golden_path($case)).unwrap();
        let x = dev.tensor_from_vec(golden(&file, "input"), <$In>::default());

        let y = model.forward(x.clone());
        assert_close(concat!($case, " output.eval"), &y.as_vec(), &golden(&file, "output.eval"), 1e-10);

        // Leaky: the input's gradient is kept too.
        let y = model.forward_mut(x.trace(Gradients::leaky()));
        assert_close(concat!($case, " output.train"), &y.as_vec(), &golden(&file, "output.train"), 1e-10);
        let r = dev.tensor_from_vec(golden(&file, "r"), *y.shape());
        let grads = (y * r).sum().backward();
        assert_close(concat!($case, " grad.input"), &grads.get(&x).as_vec(), &golden(&file, "grad.input"), 1e-9);
        $(
            assert_close(
                concat!($case, " grad.", $gk),
                &grads.get(&model.$g $(. $gp)*).as_vec(),
                &golden(&file, concat!("grad.", $gk)),
                1e-9,
            );
        )*
        $(
            assert_close(
                concat!($case, " running.", $rk),
                &model.$r $(. $rp)*.as_vec(),
                &golden(&file, concat!("running.", $rk)),
                1e-10,
            );
        )*
    }};
}

#[test]
fn residual_matches_pytorch() {
    check_case!("residual", ResidualNet, Rank4<3, 3, 8, 8>,
    grads: [
        a.conv1.weight => "a.conv1.weight",
        a.conv3.weight => "a.conv3.weight",
        a.bn1.weight => "a.bn1.weight",
        a.bn2.bias => "a.bn2.bias",
        b.conv2.weight => "b.conv2.weight",
        b.bn1.weight => "b.bn1.weight",
    ],
    running: [
        a.bn1.running_mean => "a.bn1.running_mean",
        a.bn2.running_var => "a.bn2.running_var",
        b.bn2.running_var => "b.bn2.running_var",
    ]);
}

#[test]
fn inception_matches_pytorch() {
    check_case!("inception", InceptionNet, Rank4<3, 3, 6, 6>,
        grads: [
            _0.b1_1.weight => "0.b1_1.weight",
            _0.b2_2.weight => "0.b2_2.weight",
            _0.b3_2.weight => "0.b3_2.weight",
            _0.b4_2.weight => "0.b4_2.weight",
        ],
        running: []);
}

#[test]
fn densenet_matches_pytorch() {
    check_case!("dense", DenseNet, Rank4<3, 3, 6, 6>,
    grads: [
        dense.net._0._2.weight => "dense.net.0.2.weight",
        dense.net._1._0.weight => "dense.net.1.0.weight",
        dense.net._1._2.weight => "dense.net.1.2.weight",
        trans._2.weight => "trans.2.weight",
    ],
    running: [
        dense.net._0._0.running_mean => "dense.net.0.0.running_mean",
        dense.net._1._0.running_var => "dense.net.1.0.running_var",
        trans._0.running_var => "trans.0.running_var",
    ]);
}

#[test]
fn se_sum_pools_and_batch_norm1d_match_pytorch() {
    check_case!("misc", Misc, Rank4<3, 4, 8, 8>,
    grads: [
        conv1.weight => "conv1.weight",
        linear1.weight => "linear1.weight",
        linear2.bias => "linear2.bias",
        conv2.weight => "conv2.weight",
        conv3.weight => "conv3.weight",
        linear3.weight => "linear3.weight",
        bn1.weight => "bn1.weight",
        linear4.weight => "linear4.weight",
    ],
    running: [
        bn1.running_mean => "bn1.running_mean",
        bn1.running_var => "bn1.running_var",
    ]);
}

/// The checkpoint keys are the paths of names, PyTorch's: `dense.net.0.0` is the batch norm
/// of the first copy of the named repeat `net` in the block called as `dense`, `trans.2` the
/// third entry of `Transition`, as `nn.Sequential` numbers it.
#[test]
fn checkpoint_keys_are_dotted_paths() {
    let dev: Dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dense.safetensors");
    let model = dev.build_module::<DenseNet, f32>();
    model.save_safetensors(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<_> = file
        .names()
        .into_iter()
        .filter(|k| {
            !k.ends_with("epsilon")
                && !k.ends_with("momentum")
                && !k.ends_with("num_batches_tracked")
        })
        .cloned()
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "dense.net.0.0.bias",
            "dense.net.0.0.running_mean",
            "dense.net.0.0.running_var",
            "dense.net.0.0.weight",
            "dense.net.0.2.bias",
            "dense.net.0.2.weight",
            "dense.net.1.0.bias",
            "dense.net.1.0.running_mean",
            "dense.net.1.0.running_var",
            "dense.net.1.0.weight",
            "dense.net.1.2.bias",
            "dense.net.1.2.weight",
            "trans.0.bias",
            "trans.0.running_mean",
            "trans.0.running_var",
            "trans.0.weight",
            "trans.2.bias",
            "trans.2.weight",
        ]
    );
    // The two copies grow: 3 -> 5 -> 7 channels.
    let _: &Conv2D<3, 2, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 3, true, 1, 1, f32, Dev> =
        &model.dense.net._0._2;
    let _: &Conv2D<5, 2, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 5, true, 1, 1, f32, Dev> =
        &model.dense.net._1._2;
}

/// Two calls with the same arguments on the same input share one struct; other arguments
/// make another.
#[test]
fn calls_share_a_struct_per_instance() {
    cnn! {
        block Twice(c) { conv2d(c, kernel = 3, padding = 1), relu }
        struct Net: [2, 5, 5] { Twice(2), Twice(2), Twice(3) }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<Net, f32>();
    same_type(&model._0, &model._1);
    let _: &Conv2D<2, 3, 3, 3, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1, 2, true, 1, 1, f32, Dev> =
        &model._2._0;
    assert_eq!(Net::PARAMS, 2 * (2 * 2 * 9 + 2) + (3 * 2 * 9 + 3));
}

/// The summary nests: a block's row holds the totals of its contents, and the network's
/// totals are its top-level rows'.
#[test]
fn summary_nests() {
    let s = ResidualNet::summary();
    assert_eq!(s.params(), ResidualNet::PARAMS);
    let dev: Dev = Default::default();
    assert_eq!(
        dev.build_module::<ResidualNet, f32>()
            .num_trainable_params(),
        ResidualNet::PARAMS
    );
    let top: Vec<_> = s.top_level().map(|r| (r.name, r.kind)).collect();
    assert_eq!(
        top,
        [
            ("a", "Residual(4, use_1x1conv=true, stride=2)"),
            ("b", "Residual(4)")
        ]
    );
    let conv3 = s
        .rows
        .iter()
        .find(|r| r.path == "a.conv3")
        .expect("a.conv3 has a row");
    assert_eq!(
        (conv3.kind, conv3.output, conv3.depth),
        ("conv2d(4, kernel=1, stride=2)", &[4, 4, 4][..], 3)
    );
    let text = s.to_string();
    assert!(text.lines().any(|l| l.starts_with("a ") && l.contains(" Residual(4, use_1x1conv=true, stride=2) ")), "{text}");
    assert!(text.contains("shortcut (identity)"), "{text}");
    // Params: conv1 3*4*9+4, conv2 4*4*9+4, conv3 3*4+4, two batch norms of 4 (scale, bias).
    let a = 112 + 148 + 16 + 8 + 8;
    let b = 148 + 148 + 8 + 8;
    assert_eq!(ResidualNet::PARAMS, a + b);
}

/// `adaptive_avg_pool2d` against a loop over PyTorch's windows, for sizes that tile the input
/// and sizes that do not, with the gradient against finite differences.
#[test]
fn adaptive_avg_pool_matches_a_loop() {
    fn reference(x: &[f64], (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f64> {
        let planes = x.len() / (h * w);
        let mut out = Vec::new();
        for p in 0..planes {
            for i in 0..oh {
                for j in 0..ow {
                    let (r0, r1) = (i * h / oh, ((i + 1) * h).div_ceil(oh));
                    let (c0, c1) = (j * w / ow, ((j + 1) * w).div_ceil(ow));
                    let mut sum = 0.0;
                    for y in r0..r1 {
                        for x_ in c0..c1 {
                            sum += x[p * h * w + y * w + x_];
                        }
                    }
                    out.push(sum / ((r1 - r0) * (c1 - c0)) as f64);
                }
            }
        }
        out
    }
    let dev: Dev = Default::default();
    let mut rng = Rng::new(7);
    macro_rules! case {
        ($h:literal, $w:literal, $oh:literal, $ow:literal) => {{
            let v = rng.vec(2 * 3 * $h * $w);
            let x = dev.tensor_from_vec(
                v.clone(),
                (Const::<2>, Const::<3>, Const::<$h>, Const::<$w>),
            );
            let pool = cnn::nn::AdaptiveAvgPool2D::<$h, $w, $oh, $ow>;
            let y = pool.forward(x.trace(Gradients::leaky()));
            let want = reference(&v, ($h, $w), ($oh, $ow));
            assert_close("adaptive pool", &y.as_vec(), &want, 1e-12);
            let r = rng.vec(want.len());
            let g = (y * dev.tensor_from_vec(r.clone(), (Const, Const, Const, Const)))
                .sum()
                .backward();
            let fd = common::finite_diff(&v, &r, |v| reference(v, ($h, $w), ($oh, $ow)));
            assert_close("adaptive pool grad", &g.get(&x).as_vec(), &fd, 1e-6);
        }};
    }
    case!(8, 8, 3, 3); // overlapping windows
    case!(7, 5, 3, 2); // uneven, rectangular
    case!(6, 6, 2, 3); // tiles: average pooling
    case!(5, 5, 5, 5); // identity
}

/// `concat` of vectors and of single images (not only batches), and `scale` on a vector.
#[test]
fn concat_and_scale_on_images_and_vectors() {
    cnn! {
        struct Both: [2, 3, 3] -> [7] {
            concat { identity, { conv2d(1, kernel = 1), relu } } -> [3, 3, 3],
            flatten,
            concat { identity, { linear(2) }, { linear(3) } } -> [32],
            scale { linear(32), sigmoid },
            linear(7),
        }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<Both, f64>();
    let mut rng = Rng::new(3);
    let v = rng.vec(2 * 9);
    let one = model.forward(dev.tensor_from_vec(v.clone(), (Const::<2>, Const::<3>, Const::<3>)));
    same_type(&one, &dev.zeros::<Rank1<7>>());
    let mut batch = v.clone();
    batch.extend(rng.vec(2 * 9));
    let two =
        model.forward(dev.tensor_from_vec(batch, (Const::<2>, Const::<2>, Const::<3>, Const::<3>)));
    same_type(&two, &dev.zeros::<Rank2<2, 7>>());
    // The image and the first of the batch agree.
    assert_close("one vs batch", &one.as_vec(), &two.as_vec()[..7], 1e-12);
}

/// A residual or sum followed by `relu` runs as one op (`ops::add_relu`); it is the addition
/// then the ReLU, also when both sides are one tensor (`sum { identity, identity }`), whose
/// gradient gets both halves.
#[test]
fn add_relu_is_the_sum_then_the_relu() {
    cnn! {
        struct Twice: [2, 3, 3] { sum { identity, identity }, relu }
    }
    let dev: Dev = Default::default();
    let model = dev.build_module::<Twice, f64>();
    let mut rng = Rng::new(4);
    let v = rng.vec(18);
    let x = dev.tensor_from_vec(v.clone(), (Const::<2>, Const::<3>, Const::<3>));
    let y = model.forward(x.leaky_trace());
    let want: Vec<f64> = v.iter().map(|v| (2.0 * v).max(0.0)).collect();
    assert_close("forward", &y.as_vec(), &want, 1e-15);
    let r = rng.vec(18);
    let g = (y * dev.tensor_from_vec(r.clone(), (Const, Const, Const)))
        .sum()
        .backward();
    let want: Vec<f64> = v
        .iter()
        .zip(&r)
        .map(|(v, r)| if *v > 0.0 { 2.0 * r } else { 0.0 })
        .collect();
    assert_close("gradient", &g.get(&x).as_vec(), &want, 1e-15);
}
