//! d2l 8.1, "Deep Convolutional Neural Networks (AlexNet)": the book's AlexNet for
//! Fashion-MNIST (one input channel, images resized to 224x224, 10 classes), written as the
//! book's class (its `nn.Sequential` in `self.net`), so that the book's PyTorch weights load
//! into it (`cargo test` checks the logits against PyTorch's when PyTorch is installed). Every
//! layer's output shape is the one d2l prints, checked by the compiler; the parameter count is
//! PyTorch's for the same definition; one forward pass runs on a batch of two random images.
//!
//! Run: `cargo run --release --example 10-alexnet` (also run by `cargo test`).

use cnn::prelude::*;
use cnn::train::xavier_uniform_;
use rand::{SeedableRng, rngs::StdRng};

cnn! {
    /// d2l 8.1's `AlexNet`: five convolutions (11x11 stride 4, 5x5, three 3x3) with max
    /// pooling, then two hidden fully connected layers of 4096 with dropout; in `net`, as the
    /// book's class keeps them in `self.net`, so that its `state_dict` loads.
    pub struct AlexNet: [1, 224, 224] -> [10] {
        net: {
            conv2d(96, kernel = 11, stride = 4, padding = 1), relu -> [96, 54, 54],
            max_pool2d(kernel = 3, stride = 2) -> [96, 26, 26],
            conv2d(256, kernel = 5, padding = 2), relu,
            max_pool2d(kernel = 3, stride = 2) -> [256, 12, 12],
            conv2d(384, kernel = 3, padding = 1), relu,
            conv2d(384, kernel = 3, padding = 1), relu,
            conv2d(256, kernel = 3, padding = 1), relu,
            max_pool2d(kernel = 3, stride = 2) -> [256, 5, 5],
            flatten -> [6400],
            linear(4096), relu, dropout(0.5),
            linear(4096), relu, dropout(0.5),
            linear(10),
        }
    }
}

/// d2l 8.1's printout for a `(1, 1, 224, 224)` input: each layer's output shape, without the
/// batch axis (the same from `bench/d2l_ch8.py`).
const D2L: [&[usize]; 21] = [
    &[96, 54, 54],  // Conv2d
    &[96, 54, 54],  // ReLU
    &[96, 26, 26],  // MaxPool2d
    &[256, 26, 26], // Conv2d
    &[256, 26, 26], // ReLU
    &[256, 12, 12], // MaxPool2d
    &[384, 12, 12], // Conv2d
    &[384, 12, 12], // ReLU
    &[384, 12, 12], // Conv2d
    &[384, 12, 12], // ReLU
    &[256, 12, 12], // Conv2d
    &[256, 12, 12], // ReLU
    &[256, 5, 5],   // MaxPool2d
    &[6400],        // Flatten
    &[4096],        // Linear
    &[4096],        // ReLU
    &[4096],        // Dropout
    &[4096],        // Linear
    &[4096],        // ReLU
    &[4096],        // Dropout
    &[10],          // Linear
];

fn main() {
    let summary = AlexNet::summary();
    println!("{summary}");

    // The macro's shapes, layer by layer (the entries of `net`), are the book's.
    let shapes: Vec<&[usize]> = summary.inside("net").map(|row| row.output).collect();
    assert_eq!(shapes, D2L);
    // `sum(p.numel() for p in net.parameters())` for d2l's AlexNet with one input channel,
    // from `bench/d2l_ch8.py` (PyTorch 2.15.0).
    assert_eq!(AlexNet::PARAMS, 46_764_746);
    assert_eq!(AlexNet::OUTPUT, [10]);

    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<AlexNet, f32>();
    assert_eq!(net.num_trainable_params(), AlexNet::PARAMS);
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
    // Inference: no tape, so dropout passes everything through.
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

/// d2l's own PyTorch `AlexNet` (`bench/d2l_ch8.py`): its `state_dict` loads into this network by
/// key alone, and both give the same logits in inference mode.
#[test]
fn loads_the_books_pytorch_weights() {
    pytorch::check::<AlexNet, 224>("alexnet");
}
