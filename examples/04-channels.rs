//! d2l 6.4, "Multiple Input and Multiple Output Channels" (7.4 in the current online edition):
//! a kernel per input channel, summed; a stack of such kernels per output channel; and the 1x1
//! convolution, which is a matrix product over the channels at every pixel.
//!
//! Run: `cargo run --example 04-channels` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// d2l 6.4.1: two input channels, one output channel, 2x2 kernels.
    struct MultiIn: [2, 3, 3] -> [1, 2, 2] {
        conv: conv2d(1, kernel = 2, bias = false),
    }

    /// d2l 6.4.2: the same input, three output channels.
    struct MultiInOut: [2, 3, 3] -> [3, 2, 2] {
        conv: conv2d(3, kernel = 2, bias = false),
    }

    /// d2l 6.4.3: a 1x1 convolution from three channels to two.
    struct OneByOne: [3, 3, 3] -> [2, 3, 3] {
        conv: conv2d(2, kernel = 1, bias = false),
    }
}

/// d2l 6.2.1's `corr2d` on one channel: each output is the sum of the kernel times the window
/// under it.
fn corr2d(x: &[[f32; 3]; 3], k: &[[f32; 2]; 2]) -> [[f32; 2]; 2] {
    let mut y = [[0.0; 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            for a in 0..2 {
                for b in 0..2 {
                    y[i][j] += x[i + a][j + b] * k[a][b];
                }
            }
        }
    }
    y
}

/// d2l 6.4.1's `corr2d_multi_in`: cross-correlate each channel with its own kernel and add up.
fn corr2d_multi_in<const C: usize>(
    x: &[[[f32; 3]; 3]; C],
    k: &[[[f32; 2]; 2]; C],
) -> [[f32; 2]; 2] {
    let mut y = [[0.0; 2]; 2];
    for (x, k) in x.iter().zip(k) {
        let part = corr2d(x, k);
        for (row, part) in y.iter_mut().zip(part) {
            for (v, p) in row.iter_mut().zip(part) {
                *v += p;
            }
        }
    }
    y
}

fn main() {
    let dev = Cpu::seed_from_u64(0);

    // d2l 6.4.1
    let x = [
        [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
        [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
    ];
    let k = [[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]];
    let y = corr2d_multi_in(&x, &k);
    println!("6.4.1 corr2d_multi_in(X, K) = {y:?}");
    // d2l 6.4.1: tensor([[ 56.,  72.], [104., 120.]])
    assert_eq!(y, [[56.0, 72.0], [104.0, 120.0]]);
    // A conv2d layer with weight (1, 2, 2, 2) does the same.
    let mut multi_in = dev.build_module::<MultiIn, f32>();
    multi_in.conv.weight = dev.tensor([k]);
    assert_eq!(multi_in.forward(dev.tensor(x)).array(), [y]);

    // d2l 6.4.2: K = torch.stack((K, K + 1, K + 2), 0), shape (3, 2, 2, 2): one multi-input
    // kernel per output channel.
    let plus = |d: f32| k.map(|channel| channel.map(|row| row.map(|v| v + d)));
    let mut multi_in_out = dev.build_module::<MultiInOut, f32>();
    multi_in_out.conv.weight = dev.tensor([plus(0.0), plus(1.0), plus(2.0)]);
    let y = multi_in_out.forward(dev.tensor(x)).array();
    println!("6.4.2 corr2d_multi_in_out(X, K), one output channel a line:");
    for channel in &y {
        println!("  {channel:?}");
    }
    // d2l 6.4.2's output
    assert_eq!(
        y,
        [
            [[56.0, 72.0], [104.0, 120.0]],
            [[76.0, 100.0], [148.0, 172.0]],
            [[96.0, 128.0], [192.0, 224.0]],
        ]
    );
    // Output channel o is corr2d_multi_in with the o-th kernel.
    for (o, y) in y.iter().enumerate() {
        assert_eq!(*y, corr2d_multi_in(&x, &plus(o as f32)));
    }

    // d2l 6.4.3: X ~ N(0, 1) of shape (3, 3, 3), K ~ N(0, 1) of shape (2, 3, 1, 1).
    let x: Tensor<Rank3<3, 3, 3>, f32, Cpu> = dev.sample_normal();
    let k: Tensor<Rank4<2, 3, 1, 1>, f32, Cpu> = dev.sample_normal();
    // d2l's corr2d_multi_in_out_1x1: (c_o, c_i) @ (c_i, h * w), back to (c_o, h, w).
    let k_matrix: Tensor<Rank2<2, 3>, f32, Cpu> = k.clone().reshape();
    let x_matrix: Tensor<Rank2<3, 9>, f32, Cpu> = x.clone().reshape();
    let y1: Tensor<Rank3<2, 3, 3>, f32, Cpu> = k_matrix.matmul(x_matrix).reshape();
    let mut one_by_one = dev.build_module::<OneByOne, f32>();
    one_by_one.conv.weight = k;
    let y2 = one_by_one.forward(x);
    let diff: Vec<f32> = y1
        .as_vec()
        .iter()
        .zip(y2.as_vec())
        .map(|(a, b)| (a - b).abs())
        .collect();
    let (sum, max) = (
        diff.iter().sum::<f32>(),
        diff.iter().copied().fold(0.0, f32::max),
    );
    println!("6.4.3 1x1 convolution vs matrix product: |Y1 - Y2| sums to {sum:e}, at most {max:e}");
    // d2l 6.4.3: assert float(torch.abs(Y1 - Y2).sum()) < 1e-6
    assert!(sum < 1e-6 && max < 1e-6);
}

#[test]
fn example_runs() {
    main();
}
