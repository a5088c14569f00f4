//! d2l 8.6, "Residual Networks (ResNet) and ResNeXt": the book's `Residual` block (two 3x3
//! convolutions with batch norm, added to the input; a 1x1 convolution on the shortcut when
//! the shape changes) as a `cnn!` block with `residual { .. } shortcut { .. }`, the book's
//! `ResNet.block` as a block of blocks, and `ResNet18` on Fashion-MNIST's one channel at
//! 96x96 with 10 classes. Each stage's output shape is the one d2l prints, checked by the
//! compiler; the parameter count is PyTorch's for the same definition; one forward pass runs
//! on two random images.
//!
//! d2l's `block` loops `for i in range(num_residuals)` and makes the first residual of every
//! stage but the first a downsampling one; `cnn!` has no loop index, so `ResnetStage` says the
//! same with `if first_block { .. } else { .. }` and an unnamed `repeat`, whose copies are
//! numbered on as the book's `nn.Sequential(*blk)` numbers them. The layers, shapes, counts
//! and checkpoint keys (`net.b3.0.conv1.weight`, `net.b3.1.bn2.running_var`) are the book's:
//! its PyTorch weights load (`cargo test` checks the logits when PyTorch is installed).
//!
//! Run: `cargo run --release --example 15-resnet` (also run by `cargo test`).

use cnn::prelude::*;
use cnn::train::xavier_uniform_;
use rand::{SeedableRng, rngs::StdRng};

cnn! {
    /// d2l 8.6's `Residual(num_channels, use_1x1conv=False, strides=1)`.
    block Residual(c, use_1x1conv = false, stride = 1) {
        residual {
            conv1: conv2d(c, kernel = 3, padding = 1, stride = stride), bn1: batch_norm2d, relu,
            conv2: conv2d(c, kernel = 3, padding = 1), bn2: batch_norm2d,
        } shortcut {
            if use_1x1conv { conv3: conv2d(c, kernel = 1, stride = stride) }
        },
        relu,
    }

    /// d2l 8.6's `ResNet.block(num_residuals, num_channels, first_block=False)`: the first
    /// stage keeps the size (the stem's pool has already halved it); every later one halves
    /// height and width and changes the channels in its first residual.
    block ResnetStage(num_residuals, c, first_block = false) {
        if first_block {
            repeat(num_residuals) { Residual(c) }
        } else {
            Residual(c, use_1x1conv = true, stride = 2),
            repeat(num_residuals - 1) { Residual(c) }
        }
    }

    /// d2l 8.6's `ResNet18`: `ResNet(((2, 64), (2, 128), (2, 256), (2, 512)))`, whose
    /// `self.net` is `nn.Sequential(self.b1())` and then `add_module('b2', ...)` to
    /// `add_module('last', ...)`: an unnamed stage 0 and named ones.
    pub struct ResNet18: [1, 96, 96] -> [10] {
        net: {
            {
                conv2d(64, kernel = 7, stride = 2, padding = 3), batch_norm2d, relu,
                max_pool2d(kernel = 3, stride = 2, padding = 1),
            } -> [64, 24, 24],
            b2: ResnetStage(2, 64, first_block = true) -> [64, 24, 24],
            b3: ResnetStage(2, 128) -> [128, 12, 12],
            b4: ResnetStage(2, 256) -> [256, 6, 6],
            b5: ResnetStage(2, 512) -> [512, 3, 3],
            last: { adaptive_avg_pool2d((1, 1)), flatten, linear(10) },
        }
    }
}

/// d2l 8.6's printout for a `(1, 1, 96, 96)` input: each stage's output shape, without the
/// batch axis; the same from `bench/d2l_ch8.py`.
const D2L: [&[usize]; 6] = [
    &[64, 24, 24],  // Sequential (b1)
    &[64, 24, 24],  // Sequential (b2)
    &[128, 12, 12], // Sequential (b3)
    &[256, 6, 6],   // Sequential (b4)
    &[512, 3, 3],   // Sequential (b5)
    &[10],          // Sequential (last)
];

fn main() {
    let summary = ResNet18::summary();
    println!("{summary}");

    let shapes: Vec<&[usize]> = summary.inside("net").map(|row| row.output).collect();
    assert_eq!(shapes, D2L);
    // From `bench/d2l_ch8.py` (PyTorch 2.15.0) for d2l's ResNet18 with one input channel:
    // `sum(p.numel() for p in net.parameters())`, and the batch norms' running means and
    // variances (buffers in PyTorch; 2 per channel of 17 batch norms, 3904 channels).
    assert_eq!(ResNet18::PARAMS, 11_178_378);
    assert_eq!(summary.non_trainable(), 7_808);
    assert_eq!(ResNet18::OUTPUT, [10]);
    // The 1x1 convolution on the shortcut: only in the first residual of b3, b4 and b5.
    let shortcut_convs: Vec<&str> = summary
        .rows
        .iter()
        .filter(|row| row.name == "conv3")
        .map(|row| row.path)
        .collect();
    assert_eq!(
        shortcut_convs,
        ["net.b3.0.conv3", "net.b4.0.conv3", "net.b5.0.conv3"]
    );

    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<ResNet18, f32>();
    assert_eq!(net.num_trainable_params(), ResNet18::PARAMS);
    // d2l's `init_cnn`, which the book applies to every network of the chapter: Xavier-uniform
    // weights for each convolution and linear layer (with the layers' defaults, PyTorch's, the
    // signal fades through a deep stack).
    let weights = xavier_uniform_(&mut net, &mut StdRng::seed_from_u64(0)).unwrap();
    let layers = summary
        .rows
        .iter()
        .filter(|row| row.kind.starts_with("conv2d(") || row.kind.starts_with("linear("))
        .count();
    assert_eq!(weights, layers);
    // Prediction mode: batch norm uses its running statistics.
    let x: Tensor<Rank4<2, 1, 96, 96>, f32, Cpu> = dev.sample_normal();
    let y: Tensor<Rank2<2, 10>, f32, Cpu> = net.forward(x);
    println!("\nlogits of two random images: {:.4?}", y.array());
    assert!(y.as_vec().iter().all(|v| v.is_finite()));
    let [a, b] = y.array();
    assert_ne!(a, b, "two random images, the same logits");
}

#[test]
fn example_runs() {
    main();
}

#[cfg(test)]
#[path = "common/pytorch.rs"]
mod pytorch;

/// d2l's own PyTorch `ResNet18` (`bench/d2l_ch8.py`): its `state_dict` loads into this network by
/// key alone, and both give the same logits in inference mode.
#[test]
fn loads_the_books_pytorch_weights() {
    pytorch::check::<ResNet18, 96>("resnet18");
}
