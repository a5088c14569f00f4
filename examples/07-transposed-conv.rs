//! d2l 14.10, "Transposed Convolution": where a convolution gathers a window of its input into
//! one output pixel, a transposed convolution scatters each input pixel, times the kernel, into
//! a window of its output, so it makes images larger. It is the convolution's matrix transposed,
//! which is why it undoes the convolution's change of shape (not its values).
//!
//! Each layer is a `cnn!` network with `conv_transpose2d`, so every shape is a type the
//! compiler checks; every number the book prints is asserted, and the layer is checked against
//! d2l's own loop (`trans_conv`) and against the transposed matrix.
//!
//! Run: `cargo run --example 07-transposed-conv` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// d2l 14.10.1: a 2x2 input and a 2x2 kernel give (2 - 1) + 2 = 3 rows and columns.
    struct Basic: [1, 2, 2] -> [1, 3, 3] {
        up: conv_transpose2d(1, kernel = 2, bias = false),
    }

    /// d2l 14.10.2: padding removes rows and columns from the output (where a convolution
    /// would add them to its input): 3x3 less one on each side.
    struct Padded: [1, 2, 2] -> [1, 1, 1] {
        up: conv_transpose2d(1, kernel = 2, padding = 1, bias = false),
    }

    /// d2l 14.10.2: stride 2 places the kernel's copies 2 apart, so they no longer overlap.
    struct Strided: [1, 2, 2] -> [1, 4, 4] {
        up: conv_transpose2d(1, kernel = 2, stride = 2, bias = false),
    }

    /// d2l 14.10.3: the convolution written as a matrix, 3x3 to 2x2 ...
    struct Conv: [1, 3, 3] -> [1, 2, 2] {
        conv: conv2d(1, kernel = 2, bias = false),
    }

    /// ... and its transpose, 2x2 back to 3x3.
    struct ConvT: [1, 2, 2] -> [1, 3, 3] {
        up: conv_transpose2d(1, kernel = 2, bias = false),
    }

    /// d2l 14.10.2 (multiple channels): a convolution takes 16x16 to 6x6, and the transposed
    /// convolution with the same kernel, padding and stride takes it back to 16x16.
    struct RoundTrip: [10, 16, 16] -> [10, 16, 16] {
        conv2d(20, kernel = 5, padding = 2, stride = 3) -> [20, 6, 6],
        up: conv_transpose2d(10, kernel = 5, padding = 2, stride = 3),
    }
}

/// d2l's `trans_conv` (14.10.1), the definition as a loop: input pixel `(i, j)` adds
/// `x[i][j] * k` to the output window whose corner is `(i, j)`.
fn trans_conv<const H: usize, const W: usize, const KH: usize, const KW: usize>(
    x: &[[f32; W]; H],
    k: &[[f32; KW]; KH],
) -> Vec<Vec<f32>> {
    let mut y = vec![vec![0.0; W + KW - 1]; H + KH - 1];
    for i in 0..H {
        for j in 0..W {
            for a in 0..KH {
                for b in 0..KW {
                    y[i + a][j + b] += x[i][j] * k[a][b];
                }
            }
        }
    }
    y
}

/// d2l's `kernel2matrix` (14.10.3), for a 2x2 kernel over a 3x3 input: row `r` of `W` is output
/// pixel `r = 2*i + j` of the convolution, holding the kernel at the 3x3 input's positions that
/// its window covers, so `W · vec(X) = vec(conv(X))`.
fn kernel2matrix(k: &[[f32; 2]; 2]) -> [[f32; 9]; 4] {
    let mut w = [[0.0; 9]; 4];
    for i in 0..2 {
        for j in 0..2 {
            for a in 0..2 {
                for b in 0..2 {
                    w[2 * i + j][3 * (i + a) + (j + b)] = k[a][b];
                }
            }
        }
    }
    w
}

fn main() {
    let dev = Cpu::default();

    // 14.10.1: X = [[0, 1], [2, 3]], K = [[0, 1], [2, 3]].
    let x = [[0.0, 1.0], [2.0, 3.0]];
    let k = [[0.0, 1.0], [2.0, 3.0]];
    let mut basic = dev.build_module::<Basic, f32>();
    // The weight is PyTorch's layout for a transposed conv: (IN, OUT / GROUPS, KH, KW).
    basic.up.weight = dev.tensor([[k]]);
    let y = basic.forward(dev.tensor([x])).array()[0];
    println!("14.10.1 transposed conv of X with K:\n  {y:?}");
    // d2l prints tensor([[ 0.,  0.,  1.], [ 0.,  4.,  6.], [ 4., 12.,  9.]]).
    assert_eq!(y, [[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]]);
    assert_eq!(trans_conv(&x, &k), y.map(Vec::from).to_vec());

    // 14.10.2: padding 1 removes the outer ring of that 3x3.
    let mut padded = dev.build_module::<Padded, f32>();
    padded.up.weight = dev.tensor([[k]]);
    let y = padded.forward(dev.tensor([x])).array()[0];
    println!("14.10.2 padding 1:\n  {y:?}");
    // d2l prints tensor([[[[4.]]]]).
    assert_eq!(y, [[4.0]]);

    // 14.10.2: stride 2 puts the four scaled copies of K side by side.
    let mut strided = dev.build_module::<Strided, f32>();
    strided.up.weight = dev.tensor([[k]]);
    let y = strided.forward(dev.tensor([x])).array()[0];
    println!("14.10.2 stride 2:\n  {y:?}");
    // d2l prints tensor([[[[0., 0., 0., 1.], [0., 0., 2., 3.], [0., 2., 0., 3.], [4., 6., 6., 9.]]]]).
    assert_eq!(
        y,
        [
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 2.0, 3.0],
            [0.0, 2.0, 0.0, 3.0],
            [4.0, 6.0, 6.0, 9.0]
        ]
    );

    // 14.10.3: X = arange(9).reshape(3, 3), K = [[1, 2], [3, 4]]. The convolution is the 4x9
    // matrix W times vec(X); the transposed convolution with the same kernel is W^T.
    let x3 = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]];
    let k = [[1.0, 2.0], [3.0, 4.0]];
    let w = kernel2matrix(&k);
    println!("14.10.3 W = kernel2matrix(K):");
    for row in &w {
        println!("  {row:?}");
    }
    // d2l prints this W.
    assert_eq!(
        w,
        [
            [1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0],
        ]
    );
    let w: Tensor<Rank2<4, 9>, f32, Cpu> = dev.tensor(w);

    let mut conv = dev.build_module::<Conv, f32>();
    // A conv's weight is (OUT, IN / GROUPS, KH, KW); with one channel each, the same K.
    conv.conv.weight = dev.tensor([[k]]);
    let x3: Tensor<Rank3<1, 3, 3>, f32, Cpu> = dev.tensor([x3]);
    let y = conv.forward(x3.clone());
    println!("  Y = conv(X) = {:?}", y.array()[0]);
    // d2l prints tensor([[27., 37.], [57., 67.]]).
    assert_eq!(y.array(), [[[27.0, 37.0], [57.0, 67.0]]]);
    // W · vec(X), written vec(X) · W^T: dfdx multiplies a vector by a matrix on its left.
    let wx = x3
        .reshape::<Rank1<9>>()
        .matmul(w.clone().permute::<Rank2<9, 4>, _>());
    println!("  W · vec(X) = {:?}", wx.array());
    assert_eq!(wx.array(), y.clone().reshape::<Rank1<4>>().array());

    let mut convt = dev.build_module::<ConvT, f32>();
    convt.up.weight = dev.tensor([[k]]);
    let z = convt.forward(y.clone());
    println!("  Z = transposed conv(Y) = {:?}", z.array()[0]);
    // d2l only prints that Z equals W^T · vec(Y); these are its entries, by hand: each is a sum
    // of Y's pixels times the kernel taps over it, e.g. the centre 27*4 + 37*3 + 57*2 + 67*1.
    assert_eq!(
        z.array(),
        [[
            [27.0, 91.0, 74.0],
            [138.0, 400.0, 282.0],
            [171.0, 429.0, 268.0]
        ]]
    );
    assert_eq!(
        trans_conv(&y.array()[0], &k),
        z.array()[0].map(Vec::from).to_vec()
    );
    // W^T · vec(Y), written vec(Y) · W.
    let wty = y.reshape::<Rank1<4>>().matmul(w);
    println!("  W^T · vec(Y) = {:?}", wty.array());
    assert_eq!(wty.array(), z.reshape::<Rank1<9>>().array());

    // 14.10.2, multiple channels: conv then transposed conv restores the shape. The types say
    // so: the input and the output are both Rank4<1, 10, 16, 16>.
    let round_trip = dev.build_module::<RoundTrip, f32>();
    let x: Tensor<Rank4<1, 10, 16, 16>, f32, Cpu> = dev.sample_normal();
    let x_shape = x.shape().concrete();
    let y: Tensor<Rank4<1, 10, 16, 16>, f32, Cpu> = round_trip.forward(x);
    println!(
        "\n14.10.2 conv then transposed conv: {x_shape:?} -> {:?}",
        y.shape().concrete()
    );
    println!("{}", RoundTrip::summary());
    // d2l prints True for tconv(conv(X)).shape == X.shape; in between, 16 -> (16 + 4 - 5)/3 + 1
    // = 6, and back, (6 - 1)*3 - 4 + 5 = 16.
    let rows = RoundTrip::summary().rows;
    assert_eq!(rows[0].output, [20, 6, 6]);
    assert_eq!(rows[1].output, [10, 16, 16]);
    assert_eq!(RoundTrip::OUTPUT, RoundTrip::INPUT);
}

#[test]
fn example_runs() {
    main();
}
