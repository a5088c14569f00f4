//! d2l 8.4, "Multi-Branch Networks (GoogLeNet)": the book's `Inception` block (four branches,
//! their channels stacked with `concat`; the pairs `c2`, `c3` are pair arguments such as
//! `(96, 128)`, read as `c2.0`, `c2.1`) and its `GoogleNet` of five stages, on Fashion-MNIST's
//! one channel at 96x96 with 10 classes. Each stage's output shape is the one d2l prints,
//! checked by the compiler; the parameter count is PyTorch's for the same definition; one
//! forward pass runs on two random images.
//!
//! The network is written as the book's class (its layers in `self.net`), so the book's PyTorch
//! weights load into it by key: `cargo test` compares the logits with PyTorch's when PyTorch is
//! installed.
//!
//! Run: `cargo run --release --example 13-googlenet` (also run by `cargo test`).

use cnn::prelude::*;
use cnn::train::xavier_uniform_;
use rand::{SeedableRng, rngs::StdRng};

cnn! {
    /// d2l 8.4's `Inception(c1, c2, c3, c4)`: a 1x1 convolution; 1x1 then 3x3; 1x1 then 5x5;
    /// 3x3 max pool then 1x1; every convolution followed by ReLU, the four outputs
    /// concatenated along the channels (`c1 + c2.1 + c3.1 + c4` of them). The branches' names
    /// are the book's attributes.
    block Inception(c1, c2, c3, c4) {
        concat {
            { b1_1: conv2d(c1, kernel = 1), relu },
            { b2_1: conv2d(c2.0, kernel = 1), relu, b2_2: conv2d(c2.1, kernel = 3, padding = 1), relu },
            { b3_1: conv2d(c3.0, kernel = 1), relu, b3_2: conv2d(c3.1, kernel = 5, padding = 2), relu },
            { b4_1: max_pool2d(kernel = 3, stride = 1, padding = 1), b4_2: conv2d(c4, kernel = 1), relu },
        }
    }

    /// d2l 8.4's `GoogleNet`: its `self.net` is `nn.Sequential(self.b1(), ..., self.b5(),
    /// nn.LazyLinear(10))`, five unnamed `nn.Sequential` stages then the classifier: unnamed
    /// groups, numbered 0 to 4 as the book's stages are.
    pub struct GoogleNet: [1, 96, 96] -> [10] {
        net: {
            // b1
            {
                conv2d(64, kernel = 7, stride = 2, padding = 3), relu,
                max_pool2d(kernel = 3, stride = 2, padding = 1),
            } -> [64, 24, 24],
            // b2
            {
                conv2d(64, kernel = 1), relu,
                conv2d(192, kernel = 3, padding = 1), relu,
                max_pool2d(kernel = 3, stride = 2, padding = 1),
            } -> [192, 12, 12],
            // b3
            {
                Inception(64, (96, 128), (16, 32), 32) -> [256, 12, 12],
                Inception(128, (128, 192), (32, 96), 64) -> [480, 12, 12],
                max_pool2d(kernel = 3, stride = 2, padding = 1),
            } -> [480, 6, 6],
            // b4
            {
                Inception(192, (96, 208), (16, 48), 64),
                Inception(160, (112, 224), (24, 64), 64),
                Inception(128, (128, 256), (24, 64), 64),
                Inception(112, (144, 288), (32, 64), 64),
                Inception(256, (160, 320), (32, 128), 128) -> [832, 6, 6],
                max_pool2d(kernel = 3, stride = 2, padding = 1),
            } -> [832, 3, 3],
            // b5
            {
                Inception(256, (160, 320), (32, 128), 128),
                Inception(384, (192, 384), (48, 128), 128) -> [1024, 3, 3],
                adaptive_avg_pool2d((1, 1)), flatten,
            } -> [1024],
            linear(10),
        }
    }
}

/// d2l 8.4's printout for a `(1, 1, 96, 96)` input: each stage's output shape, without the
/// batch axis; the same from `bench/d2l_ch8.py`.
const D2L: [&[usize]; 6] = [
    &[64, 24, 24],  // Sequential (b1)
    &[192, 12, 12], // Sequential (b2)
    &[480, 6, 6],   // Sequential (b3)
    &[832, 3, 3],   // Sequential (b4)
    &[1024],        // Sequential (b5)
    &[10],          // Linear
];

fn main() {
    let summary = GoogleNet::summary();
    println!("{summary}");

    let shapes: Vec<&[usize]> = summary.inside("net").map(|row| row.output).collect();
    assert_eq!(shapes, D2L);
    // `sum(p.numel() for p in net.parameters())` for d2l's GoogleNet with one input channel,
    // from `bench/d2l_ch8.py` (PyTorch 2.15.0).
    assert_eq!(GoogleNet::PARAMS, 5_977_530);
    assert_eq!(GoogleNet::OUTPUT, [10]);

    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<GoogleNet, f32>();
    assert_eq!(net.num_trainable_params(), GoogleNet::PARAMS);
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

/// d2l's own PyTorch `GoogleNet` (`bench/d2l_ch8.py`): its `state_dict` loads into this network by
/// key alone, and both give the same logits in inference mode.
#[test]
fn loads_the_books_pytorch_weights() {
    pytorch::check::<GoogleNet, 96>("googlenet");
}
