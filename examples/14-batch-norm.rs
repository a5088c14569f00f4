//! d2l 8.5, "Batch Normalization": the book's concise `BNLeNet` (8.5.5), LeNet with a batch
//! norm after every convolution (`batch_norm2d`, PyTorch's `nn.LazyBatchNorm2d`) and every
//! hidden linear layer (`batch_norm1d`, `nn.LazyBatchNorm1d`), on Fashion-MNIST's 28x28 images.
//! The parameter count is PyTorch's for the same definition, and batch norm's running mean and
//! variance are counted apart, as PyTorch keeps them as buffers. Then the two modes of 8.5.2:
//! training normalises with the minibatch's statistics and updates the running ones
//! (`forward_mut` on a traced input); prediction normalises with the running ones (`forward`).
//!
//! d2l's `BNLeNet` has no padding on its first convolution, unlike 6.6's LeNet: 28 -> 24.
//!
//! The network is written as the book's class (its layers in `self.net`), so the book's PyTorch
//! weights load into it by key: `cargo test` compares the logits with PyTorch's when PyTorch is
//! installed.
//!
//! Run: `cargo run --release --example 14-batch-norm` (also run by `cargo test`).

use cnn::prelude::*;
use cnn::train::xavier_uniform_;
use rand::{SeedableRng, rngs::StdRng};

cnn! {
    /// d2l 8.5.5's `BNLeNet`.
    pub struct BNLeNet: [1, 28, 28] -> [10] {
        net: {
            conv2d(6, kernel = 5), batch_norm2d, sigmoid,
            avg_pool2d(kernel = 2, stride = 2) -> [6, 12, 12],
            conv2d(16, kernel = 5), batch_norm2d, sigmoid,
            avg_pool2d(kernel = 2, stride = 2) -> [16, 4, 4],
            flatten, linear(120), batch_norm1d,
            sigmoid, linear(84), batch_norm1d,
            sigmoid, linear(10),
        }
    }
}

/// The output shape of each layer of d2l's `BNLeNet` for one 28x28 image, from
/// `bench/d2l_ch8.py`.
const PYTORCH: [&[usize]; 16] = [
    &[6, 24, 24], // Conv2d
    &[6, 24, 24], // BatchNorm2d
    &[6, 24, 24], // Sigmoid
    &[6, 12, 12], // AvgPool2d
    &[16, 8, 8],  // Conv2d
    &[16, 8, 8],  // BatchNorm2d
    &[16, 8, 8],  // Sigmoid
    &[16, 4, 4],  // AvgPool2d
    &[256],       // Flatten
    &[120],       // Linear
    &[120],       // BatchNorm1d
    &[120],       // Sigmoid
    &[84],        // Linear
    &[84],        // BatchNorm1d
    &[84],        // Sigmoid
    &[10],        // Linear
];

fn main() {
    let summary = BNLeNet::summary();
    println!("{summary}");

    let shapes: Vec<&[usize]> = summary.inside("net").map(|row| row.output).collect();
    assert_eq!(shapes, PYTORCH);
    // From `bench/d2l_ch8.py` (PyTorch 2.15.0) for d2l's BNLeNet: `sum(p.numel() for p in
    // net.parameters())`, which counts each batch norm's scale and shift (2 per channel or
    // feature), and the running means and variances, buffers in PyTorch (another 2 each:
    // 2 * (6 + 16 + 120 + 84) = 452).
    assert_eq!(BNLeNet::PARAMS, 44_878);
    assert_eq!(summary.non_trainable(), 452);
    assert_eq!(BNLeNet::OUTPUT, [10]);

    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<BNLeNet, f32>();
    assert_eq!(net.num_trainable_params(), BNLeNet::PARAMS);
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

    // Prediction mode (no tape): the running statistics, mean 0 and variance 1 at the start.
    let x: Tensor<Rank4<2, 1, 28, 28>, f32, Cpu> = dev.sample_normal();
    let y: Tensor<Rank2<2, 10>, f32, Cpu> = net.forward(x.clone());
    println!(
        "\nprediction mode, logits of two random images: {:.4?}",
        y.array()
    );
    assert!(y.as_vec().iter().all(|v| v.is_finite()));
    let [a, b] = y.array();
    assert_ne!(a, b, "two random images, the same logits");

    // Training mode (a traced input): each channel is normalised with the minibatch's mean and
    // variance, and the running mean moves a tenth of the way (momentum 0.1, PyTorch's) to the
    // minibatch's.
    let batch_mean: Tensor<Rank1<6>, f32, Cpu> =
        net.net._0.forward(x.clone()).mean::<_, Axes3<0, 2, 3>>();
    let (y_train, _tape) = net.forward_mut(x.trace(net.alloc_grads())).split_tape();
    let y_train: Tensor<Rank2<2, 10>, f32, Cpu> = y_train;
    println!(
        "training mode, the same two images:              {:.4?}",
        y_train.array()
    );
    let running = net.net._1.running_mean.as_vec();
    println!("the first batch norm's running mean after one training step: {running:.5?}");
    for (r, m) in running.iter().zip(batch_mean.as_vec()) {
        assert!(
            (r - 0.1 * m).abs() < 1e-5,
            "running mean {r}, minibatch mean {m}"
        );
    }
    // The two modes normalise differently, so they disagree.
    assert_ne!(y.array(), y_train.array());
}

#[test]
fn example_runs() {
    main();
}

#[cfg(test)]
#[path = "common/pytorch.rs"]
mod pytorch;

/// d2l's own PyTorch `BNLeNet` (`bench/d2l_ch8.py`): its `state_dict` loads into this network by
/// key alone, and both give the same logits in inference mode.
#[test]
fn loads_the_books_pytorch_weights() {
    pytorch::check::<BNLeNet, 28>("bnlenet");
}
