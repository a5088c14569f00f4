//! d2l 8.2, "Networks Using Blocks (VGG)": the book's `vgg_block` as a `cnn!` block with
//! parameters (`repeat(num_convs)` of 3x3 convolutions, then a 2x2 max pool), and VGG-11, the
//! book's `VGG(arch=((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)))`, on Fashion-MNIST's one
//! channel at 224x224 with 10 classes. Each block's output shape is the one d2l prints, checked
//! by the compiler; the parameter count is PyTorch's for the same definition; one forward pass
//! runs on a batch of two random images (about 15 billion multiply-adds: use `--release`).
//!
//! The network is written as the book's class (its layers in `self.net`), so the book's PyTorch
//! weights load into it by key: `cargo test` compares the logits with PyTorch's when PyTorch is
//! installed.
//!
//! Run: `cargo run --release --example 11-vgg` (also run by `cargo test`).

use cnn::prelude::*;
use cnn::train::xavier_uniform_;
use rand::{SeedableRng, rngs::StdRng};

cnn! {
    /// d2l 8.2's `vgg_block(num_convs, out_channels)`: `num_convs` 3x3 convolutions (padding 1,
    /// so the size stays) with ReLU, then a max pool that halves height and width.
    block VggBlock(num_convs, c) {
        repeat(num_convs) { conv2d(c, kernel = 3, padding = 1), relu },
        max_pool2d(kernel = 2, stride = 2),
    }

    /// d2l 8.2's VGG-11: `VGG(arch=((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)))`.
    pub struct Vgg11: [1, 224, 224] -> [10] {
        net: {
            VggBlock(1, 64) -> [64, 112, 112],
            VggBlock(1, 128) -> [128, 56, 56],
            VggBlock(2, 256) -> [256, 28, 28],
            VggBlock(2, 512) -> [512, 14, 14],
            VggBlock(2, 512) -> [512, 7, 7],
            flatten -> [25088],
            linear(4096), relu, dropout(0.5),
            linear(4096), relu, dropout(0.5),
            linear(10),
        }
    }
}

/// d2l 8.2's printout for a `(1, 1, 224, 224)` input: the output shape of each part of the
/// `nn.Sequential` (five blocks, then the head), without the batch axis; the same from
/// `bench/d2l_ch8.py`.
const D2L: [&[usize]; 13] = [
    &[64, 112, 112], // Sequential
    &[128, 56, 56],  // Sequential
    &[256, 28, 28],  // Sequential
    &[512, 14, 14],  // Sequential
    &[512, 7, 7],    // Sequential
    &[25088],        // Flatten
    &[4096],         // Linear
    &[4096],         // ReLU
    &[4096],         // Dropout
    &[4096],         // Linear
    &[4096],         // ReLU
    &[4096],         // Dropout
    &[10],           // Linear
];

fn main() {
    let summary = Vgg11::summary();
    println!("{summary}");

    // The network's own entries (depth 0), as d2l's loop over `net` sees them.
    let shapes: Vec<&[usize]> = summary.inside("net").map(|row| row.output).collect();
    assert_eq!(shapes, D2L);
    // `sum(p.numel() for p in net.parameters())` for d2l's VGG-11 with one input channel, from
    // `bench/d2l_ch8.py` (PyTorch 2.15.0). Most of it is the first linear layer,
    // 25088 * 4096 + 4096.
    assert_eq!(Vgg11::PARAMS, 128_806_154);
    assert_eq!(Vgg11::OUTPUT, [10]);

    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<Vgg11, f32>();
    assert_eq!(net.num_trainable_params(), Vgg11::PARAMS);
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
    let x: Tensor<Rank4<2, 1, 224, 224>, f32, Cpu> = dev.sample_normal();
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

/// d2l's own PyTorch `Vgg11` (`bench/d2l_ch8.py`): its `state_dict` loads into this network by
/// key alone, and both give the same logits in inference mode.
#[test]
fn loads_the_books_pytorch_weights() {
    pytorch::check::<Vgg11, 224>("vgg11");
}
