//! After d2l 8.8, "Designing Convolution Network Architectures" (not a network of the book's
//! own): a MobileNet-style network for Fashion-MNIST at 96x96 built from depthwise-separable
//! units, a depthwise 3x3 convolution (`groups = C`: one 3x3 kernel per channel) and a
//! pointwise 1x1 convolution, each with batch norm and ReLU6, as in MobileNet (Howard et al.,
//! 2017); the deeper units gate their depthwise output's channels by squeeze-and-excitation
//! (`scale { .. }`, Hu et al., 2018, placed as MobileNetV3 places it). Global average pooling
//! and one linear layer make the 10 logits. Its PyTorch twin, `MobileNetSE` in
//! `bench/d2l_ch8.py`, gives the parameter count asserted here; one forward pass runs on two
//! random images.
//!
//! A separable unit's convolutions hold `C * 9 + C * OUT` weights against a 3x3
//! convolution's `C * OUT * 9`: the example prints both for every unit.
//!
//! After a `scale` the summary's receptive field is the whole image (the gate's global pool
//! sees all of it), and the units keep their spacing.
//!
//! Run: `cargo run --release --example 17-mobilenet-se` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// A depthwise-separable unit to `c` channels: depthwise 3x3 (stride `stride`), batch norm,
    /// ReLU6; squeeze-and-excitation when `se`; pointwise 1x1, batch norm, ReLU6. The
    /// convolutions have no bias, as batch norm's shift follows them. In the gate, `C` is the
    /// unit's input channels, which the depthwise convolution keeps: squeeze to a quarter, then
    /// back to one sigmoid gate per channel.
    block Separable(c, stride = 1, se = false) {
        dw: conv2d(C, kernel = 3, stride = stride, padding = 1, groups = C, bias = false),
        batch_norm2d, relu6,
        if se { se: { scale { global_avg_pool2d, linear(C / 4), relu, linear(C), sigmoid } } },
        pw: conv2d(c, kernel = 1, bias = false),
        batch_norm2d, relu6,
    }

    /// 1x96x96 -> 32x48x48 (stem) -> 64x48x48 -> 128x24x24 -> 256x12x12 -> 512x6x6 -> 10.
    pub struct MobileNetSE: [1, 96, 96] -> [10] {
        stem: { conv2d(32, kernel = 3, stride = 2, padding = 1, bias = false), batch_norm2d, relu6 },
        Separable(64) -> [64, 48, 48],
        Separable(128, stride = 2) -> [128, 24, 24],
        Separable(128),
        Separable(256, stride = 2, se = true) -> [256, 12, 12],
        Separable(256, se = true),
        Separable(512, stride = 2, se = true) -> [512, 6, 6],
        Separable(512, se = true),
        head: { global_avg_pool2d, linear(10) },
    }
}

/// The output shape of each part of `MobileNetSE` in `bench/d2l_ch8.py` for one 96x96 image.
const PYTORCH: [&[usize]; 9] = [
    &[32, 48, 48],  // stem
    &[64, 48, 48],  // separable(32, 64)
    &[128, 24, 24], // separable(64, 128, stride=2)
    &[128, 24, 24], // separable(128, 128)
    &[256, 12, 12], // separable(128, 256, stride=2, se=True)
    &[256, 12, 12], // separable(256, 256, se=True)
    &[512, 6, 6],   // separable(256, 512, stride=2, se=True)
    &[512, 6, 6],   // separable(512, 512, se=True)
    &[10],          // head
];

fn main() {
    let summary = MobileNetSE::summary();
    println!("{summary}");

    let top: Vec<_> = summary.top_level().collect();
    let shapes: Vec<&[usize]> = top.iter().map(|row| row.output).collect();
    assert_eq!(shapes, PYTORCH);
    // From `bench/d2l_ch8.py` (PyTorch 2.15.0), `MobileNetSE`: `sum(p.numel() for p in
    // net.parameters())`, and the batch norms' running means and variances (buffers in
    // PyTorch).
    assert_eq!(MobileNetSE::PARAMS, 748_714);
    assert_eq!(summary.non_trainable(), 6_528);
    assert_eq!(MobileNetSE::OUTPUT, [10]);

    // What separability saves: each unit's two convolutions (`dw` and `pw`, no bias) against
    // one full 3x3 convolution from `C` to `OUT` channels, and the unit's whole count (with its
    // batch norms and squeeze-and-excitation).
    println!("\nunit                               dw + pw  a 3x3 conv instead  whole unit");
    let params = |path: String| {
        summary
            .rows
            .iter()
            .find(|row| row.path == path)
            .map(|row| row.params)
            .unwrap_or_else(|| panic!("no row {path}"))
    };
    let mut c = 32;
    for unit in &top[1..top.len() - 1] {
        let out = unit.output[0];
        let separable = params(format!("{}.dw", unit.path)) + params(format!("{}.pw", unit.path));
        assert_eq!(separable, c * 9 + c * out);
        println!(
            "{:<33} {:>9}  {:>18}  {:>10}",
            unit.kind,
            separable,
            c * out * 9,
            unit.params
        );
        c = out;
    }

    // The layers' own initialisation, PyTorch's defaults, as in the twin.
    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<MobileNetSE, f32>();
    assert_eq!(net.num_trainable_params(), MobileNetSE::PARAMS);
    let x: Tensor<Rank4<2, 1, 96, 96>, f32, Cpu> = dev.sample_normal();
    // Prediction mode: batch norm uses its running statistics, mean 0 and variance 1 before
    // any training, so it normalises nothing; through 15 convolutions without bias the
    // images' signal fades to nothing and the logits are the head's bias, for any image.
    // (PyTorch's twin, in eval mode, does the same: its two rows agree to 1e-8.)
    let y: Tensor<Rank2<2, 10>, f32, Cpu> = net.forward(x.clone());
    println!(
        "\nprediction mode, logits of two random images: {:.4?}",
        y.array()
    );
    assert!(y.as_vec().iter().all(|v| v.is_finite()));
    // Training mode (a traced input): batch norm rescales every layer's output with the
    // minibatch's statistics, and the two images come out apart.
    let (y_train, _tape) = net.forward_mut(x.trace(net.alloc_grads())).split_tape();
    let y_train: Tensor<Rank2<2, 10>, f32, Cpu> = y_train;
    println!(
        "training mode, the same two images:              {:.4?}",
        y_train.array()
    );
    assert!(y_train.as_vec().iter().all(|v| v.is_finite()));
    let [a, b] = y_train.array();
    assert_ne!(a, b, "two random images, the same logits");
}

#[test]
fn example_runs() {
    main();
}
