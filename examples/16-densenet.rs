//! d2l 8.7, "Densely Connected Networks (DenseNet)": the book's `conv_block`, `DenseBlock`
//! (each convolution block's output concatenated onto its input: `concat { identity, .. }`
//! inside `repeat`) and `transition_block`, and its `DenseNet` (64 channels after the stem,
//! growth rate 32, four dense blocks of four convolutions) on Fashion-MNIST's one channel at
//! 96x96 with 10 classes. The book's running count of channels, `num_channels //= 2` before
//! each transition, is `Transition(C / 2)`: `C` is the channels flowing into that entry, which
//! the macro knows. The parameter count is PyTorch's for the same definition; one forward pass
//! runs on two random images.
//!
//! The network is written as the book's class (its layers in `self.net`), so the book's PyTorch
//! weights load into it by key: `cargo test` compares the logits with PyTorch's when PyTorch is
//! installed.
//!
//! Run: `cargo run --release --example 16-densenet` (also run by `cargo test`).

use cnn::prelude::*;
use cnn::train::xavier_uniform_;
use rand::{SeedableRng, rngs::StdRng};

cnn! {
    /// d2l 8.7's `DenseBlock(num_convs, num_channels)`: each of its `num_convs` convolution
    /// blocks (the book's `conv_block(num_channels)`: batch norm, ReLU, 3x3 convolution) adds
    /// `growth` channels, stacked onto its input. The book keeps the blocks in `self.net`, an
    /// `nn.Sequential`, and concatenates in `forward`: a named repeat of `concat`s.
    block DenseBlock(num_convs, growth) {
        net: repeat(num_convs) {
            concat { identity, { batch_norm2d, relu, conv2d(growth, kernel = 3, padding = 1) } }
        }
    }

    /// d2l 8.7's `transition_block(num_channels)`: a 1x1 convolution to `c` channels and a
    /// 2x2 average pool that halves height and width.
    block Transition(c) {
        batch_norm2d, relu, conv2d(c, kernel = 1), avg_pool2d(kernel = 2, stride = 2),
    }

    /// d2l 8.7's `DenseNet(num_channels=64, growth_rate=32, arch=(4, 4, 4, 4))`, its parts
    /// named as the book's `add_module` calls name them.
    pub struct DenseNet: [1, 96, 96] -> [10] {
        net: {
            {
                conv2d(64, kernel = 7, stride = 2, padding = 3), batch_norm2d, relu,
                max_pool2d(kernel = 3, stride = 2, padding = 1),
            },
            dense_blk1: DenseBlock(4, 32),
            tran_blk1: Transition(C / 2),
            dense_blk2: DenseBlock(4, 32),
            tran_blk2: Transition(C / 2),
            dense_blk3: DenseBlock(4, 32),
            tran_blk3: Transition(C / 2),
            dense_blk4: DenseBlock(4, 32),
            last: {
                batch_norm2d, relu,
                adaptive_avg_pool2d((1, 1)), flatten,
                linear(10),
            },
        }
    }
}

/// The output shape of each part of d2l's `DenseNet` for one 96x96 image, without the batch
/// axis, from `bench/d2l_ch8.py`: 64 + 4 * 32 = 192 channels, halved to 96, + 128 = 224, ...
const PYTORCH: [&[usize]; 9] = [
    &[64, 24, 24],  // b1
    &[192, 24, 24], // dense_blk1
    &[96, 12, 12],  // tran_blk1
    &[224, 12, 12], // dense_blk2
    &[112, 6, 6],   // tran_blk2
    &[240, 6, 6],   // dense_blk3
    &[120, 3, 3],   // tran_blk3
    &[248, 3, 3],   // dense_blk4
    &[10],          // last
];

fn main() {
    let summary = DenseNet::summary();
    println!("{summary}");

    let shapes: Vec<&[usize]> = summary.inside("net").map(|row| row.output).collect();
    assert_eq!(shapes, PYTORCH);
    // From `bench/d2l_ch8.py` (PyTorch 2.15.0) for d2l's DenseNet with one input channel:
    // `sum(p.numel() for p in net.parameters())`, and the batch norms' running means and
    // variances (buffers in PyTorch).
    assert_eq!(DenseNet::PARAMS, 758_226);
    assert_eq!(summary.non_trainable(), 6_608);
    assert_eq!(DenseNet::OUTPUT, [10]);

    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<DenseNet, f32>();
    assert_eq!(net.num_trainable_params(), DenseNet::PARAMS);
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

/// d2l's own PyTorch `DenseNet` (`bench/d2l_ch8.py`): its `state_dict` loads into this network by
/// key alone, and both give the same logits in inference mode.
#[test]
fn loads_the_books_pytorch_weights() {
    pytorch::check::<DenseNet, 96>("densenet");
}
