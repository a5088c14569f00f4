//! d2l 6.5, "Pooling" (7.5 in the current online edition): maximum and average pooling written
//! out by hand and by the crate's layers; padding and stride; several channels pooled each on
//! its own.
//!
//! Run: `cargo run --example 05-pooling` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// d2l 6.5.1's `pool2d(X, (2, 2))`: a 2x2 window moved one step at a time.
    struct MaxPool: [1, 3, 3] -> [1, 2, 2] {
        max_pool2d(kernel = 2, stride = 1),
    }
    /// `pool2d(X, (2, 2), 'avg')`.
    struct AvgPool: [1, 3, 3] -> [1, 2, 2] {
        avg_pool2d(kernel = 2, stride = 1),
    }

    /// d2l 6.5.2: `nn.MaxPool2d(3)`; the stride defaults to the window, so one 3x3 window fits.
    struct Window3: [1, 4, 4] -> [1, 1, 1] {
        max_pool2d(kernel = 3),
    }
    /// `nn.MaxPool2d(3, padding=1, stride=2)`.
    struct Padded: [1, 4, 4] -> [1, 2, 2] {
        max_pool2d(kernel = 3, padding = 1, stride = 2),
    }
    /// `nn.MaxPool2d((2, 3), stride=(2, 3), padding=(0, 1))`.
    struct Rect: [1, 4, 4] -> [1, 2, 2] {
        max_pool2d(kernel = (2, 3), padding = (0, 1), stride = (2, 3)),
    }

    /// d2l 6.5.3: the same pooling over two channels.
    struct TwoChannels: [2, 4, 4] -> [2, 2, 2] {
        max_pool2d(kernel = 3, padding = 1, stride = 2),
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Max,
    Avg,
}

/// d2l 6.5.1's `pool2d`: the maximum or the mean of each `p_h x p_w` window, stride 1. The
/// output size `(H - p_h + 1) x (W - p_w + 1)` is the caller's annotation.
fn pool2d<const H: usize, const W: usize, const OH: usize, const OW: usize>(
    x: &[[f32; W]; H],
    (p_h, p_w): (usize, usize),
    mode: Mode,
) -> [[f32; OW]; OH] {
    assert!(
        OH == H - p_h + 1 && OW == W - p_w + 1,
        "pool2d: output must be (H-p_h+1) x (W-p_w+1)"
    );
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let window = x[i..i + p_h].iter().flat_map(|row| &row[j..j + p_w]);
            match mode {
                Mode::Max => window.copied().fold(f32::NEG_INFINITY, f32::max),
                Mode::Avg => window.sum::<f32>() / (p_h * p_w) as f32,
            }
        })
    })
}

fn main() {
    let dev = Cpu::default();

    // d2l 6.5.1: X = [[0, 1, 2], [3, 4, 5], [6, 7, 8]], a 2x2 window.
    let x = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]];
    let max: [[f32; 2]; 2] = pool2d(&x, (2, 2), Mode::Max);
    let avg: [[f32; 2]; 2] = pool2d(&x, (2, 2), Mode::Avg);
    println!("6.5.1 max pooling {max:?}, average pooling {avg:?}");
    // d2l 6.5.1: tensor([[4., 5.], [7., 8.]]) and tensor([[2., 3.], [5., 6.]])
    assert_eq!(max, [[4.0, 5.0], [7.0, 8.0]]);
    assert_eq!(avg, [[2.0, 3.0], [5.0, 6.0]]);
    // The layers agree.
    let max_layer = dev.build_module::<MaxPool, f32>().forward(dev.tensor([x]));
    let avg_layer = dev.build_module::<AvgPool, f32>().forward(dev.tensor([x]));
    assert_eq!((max_layer.array(), avg_layer.array()), ([max], [avg]));

    // d2l 6.5.2: X = torch.arange(16).reshape((1, 1, 4, 4))
    let arange: [[f32; 4]; 4] =
        std::array::from_fn(|i| std::array::from_fn(|j| (4 * i + j) as f32));
    let x = dev.tensor(arange);
    let one_channel: Tensor<Rank3<1, 4, 4>, f32, Cpu> = x.clone().reshape();
    let window3 = dev
        .build_module::<Window3, f32>()
        .forward(one_channel.clone())
        .array();
    let padded = dev
        .build_module::<Padded, f32>()
        .forward(one_channel.clone())
        .array();
    let rect = dev.build_module::<Rect, f32>().forward(one_channel).array();
    println!("\n6.5.2 X = arange(16) as 4x4:");
    println!(
        "  window 3                                     -> {:?}",
        window3[0]
    );
    println!(
        "  window 3, padding 1, stride 2                -> {:?}",
        padded[0]
    );
    println!(
        "  window (2, 3), padding (0, 1), stride (2, 3) -> {:?}",
        rect[0]
    );
    // d2l 6.5.2: tensor([[[[10.]]]]), then tensor([[[[ 5.,  7.], [13., 15.]]]]) twice.
    assert_eq!(window3, [[[10.0]]]);
    assert_eq!(padded, [[[5.0, 7.0], [13.0, 15.0]]]);
    assert_eq!(rect, [[[5.0, 7.0], [13.0, 15.0]]]);

    // d2l 6.5.3: X = torch.cat((X, X + 1), 1): two channels, pooled separately, so the output
    // has two channels too.
    let x2: Tensor<Rank3<2, 4, 4>, f32, Cpu> = [x.clone(), x + 1.0].stack();
    let y = dev.build_module::<TwoChannels, f32>().forward(x2).array();
    println!("\n6.5.3 two channels, window 3, padding 1, stride 2 -> {y:?}");
    // d2l 6.5.3: tensor([[[[ 5.,  7.], [13., 15.]], [[ 6.,  8.], [14., 16.]]]])
    assert_eq!(y, [[[5.0, 7.0], [13.0, 15.0]], [[6.0, 8.0], [14.0, 16.0]]]);
}

#[test]
fn example_runs() {
    main();
}
