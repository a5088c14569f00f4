//! d2l 8.3, "Network in Network (NiN)": the book's `nin_block` (a convolution followed by two
//! 1x1 convolutions, each with ReLU) as a `cnn!` block whose kernel, stride and padding are
//! parameters, and the NiN network on Fashion-MNIST's one channel at 224x224: no fully
//! connected layer at all, the last block makes 10 channels and global average pooling turns
//! them into the 10 logits. The shapes are d2l's printout, checked by the compiler; the
//! parameter count is PyTorch's for the same definition; one forward pass runs on two random
//! images.
//!
//! The network is written as the book's class (its layers in `self.net`), so the book's PyTorch
//! weights load into it by key: `cargo test` compares the logits with PyTorch's when PyTorch is
//! installed.
//!
//! Run: `cargo run --release --example 12-nin` (also run by `cargo test`).

use cnn::prelude::*;
use cnn::train::xavier_uniform_;
use rand::{SeedableRng, rngs::StdRng};

cnn! {
    /// d2l 8.3's `nin_block(out_channels, kernel_size, strides, padding)`.
    block NinBlock(c, kernel, stride, padding) {
        conv2d(c, kernel = kernel, stride = stride, padding = padding), relu,
        conv2d(c, kernel = 1), relu,
        conv2d(c, kernel = 1), relu,
    }

    /// d2l 8.3's `NiN`. `AdaptiveAvgPool2d((1, 1))` then `Flatten` is
    /// `adaptive_avg_pool2d(1), flatten` (`global_avg_pool2d` would do both at once).
    pub struct NiN: [1, 224, 224] -> [10] {
        net: {
            NinBlock(96, 11, 4, 0) -> [96, 54, 54],
            max_pool2d(kernel = 3, stride = 2),
            NinBlock(256, 5, 1, 2) -> [256, 26, 26],
            max_pool2d(kernel = 3, stride = 2),
            NinBlock(384, 3, 1, 1) -> [384, 12, 12],
            max_pool2d(kernel = 3, stride = 2),
            dropout(0.5),
            NinBlock(10, 3, 1, 1) -> [10, 5, 5],
            adaptive_avg_pool2d((1, 1)) -> [10, 1, 1],
            flatten,
        }
    }
}

/// d2l 8.3's printout for a `(1, 1, 224, 224)` input, without the batch axis; the same from
/// `bench/d2l_ch8.py`.
const D2L: [&[usize]; 10] = [
    &[96, 54, 54],  // Sequential
    &[96, 26, 26],  // MaxPool2d
    &[256, 26, 26], // Sequential
    &[256, 12, 12], // MaxPool2d
    &[384, 12, 12], // Sequential
    &[384, 5, 5],   // MaxPool2d
    &[384, 5, 5],   // Dropout
    &[10, 5, 5],    // Sequential
    &[10, 1, 1],    // AdaptiveAvgPool2d
    &[10],          // Flatten
];

fn main() {
    let summary = NiN::summary();
    println!("{summary}");

    let shapes: Vec<&[usize]> = summary.inside("net").map(|row| row.output).collect();
    assert_eq!(shapes, D2L);
    // `sum(p.numel() for p in net.parameters())` for d2l's NiN with one input channel, from
    // `bench/d2l_ch8.py` (PyTorch 2.15.0): AlexNet's 46.8 million less its linear layers.
    assert_eq!(NiN::PARAMS, 1_992_166);
    assert_eq!(NiN::OUTPUT, [10]);

    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<NiN, f32>();
    assert_eq!(net.num_trainable_params(), NiN::PARAMS);
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

/// d2l's own PyTorch `NiN` (`bench/d2l_ch8.py`): its `state_dict` loads into this network by
/// key alone, and both give the same logits in inference mode.
#[test]
fn loads_the_books_pytorch_weights() {
    pytorch::check::<NiN, 224>("nin");
}
