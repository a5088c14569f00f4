//! d2l 6.3, "Padding and Stride" (7.3 in the current online edition): the output size
//! `floor((n - k + p + s) / s)` per axis (`p` the padding of both sides together), for the
//! book's four convolutions of an 8x8 image. Each is a `cnn!` network whose declared output
//! shape (`-> [1, 8, 8]`) the compiler checks; a wrong one would not build. Running them on a
//! random image shows the same shapes.
//!
//! Run: `cargo run --example 03-padding-stride` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// d2l 6.3.1: `nn.Conv2d(1, 1, kernel_size=3, padding=1)` keeps 8x8.
    struct Pad: [1, 8, 8] -> [1, 8, 8] {
        conv2d(1, kernel = 3, padding = 1),
    }

    /// d2l 6.3.1: `nn.Conv2d(1, 1, kernel_size=(5, 3), padding=(2, 1))` keeps 8x8.
    struct PadRect: [1, 8, 8] -> [1, 8, 8] {
        conv2d(1, kernel = (5, 3), padding = (2, 1)),
    }

    /// d2l 6.3.2: `nn.Conv2d(1, 1, kernel_size=3, padding=1, stride=2)` halves it: 4x4.
    struct Stride: [1, 8, 8] -> [1, 4, 4] {
        conv2d(1, kernel = 3, padding = 1, stride = 2),
    }

    /// d2l 6.3.2: `nn.Conv2d(1, 1, kernel_size=(3, 5), padding=(0, 1), stride=(3, 4))`: 2x2.
    struct StrideRect: [1, 8, 8] -> [1, 2, 2] {
        conv2d(1, kernel = (3, 5), padding = (0, 1), stride = (3, 4)),
    }
}

type Dev = Cpu;

/// d2l's `comp_conv2d`: add the batch and channel axes (1, 1) to an 8x8 image, run the layer,
/// drop them again. The output size `OH x OW` is part of the returned type.
fn comp_conv2d<M, const OH: usize, const OW: usize>(
    conv2d: &M,
    x: &Tensor<Rank2<8, 8>, f32, Dev>,
) -> Tensor<Rank2<OH, OW>, f32, Dev>
where
    M: Module<Tensor<Rank4<1, 1, 8, 8>, f32, Dev>, Output = Tensor<Rank4<1, 1, OH, OW>, f32, Dev>>,
{
    conv2d.forward(x.clone().reshape()).reshape()
}

fn main() {
    let dev = Dev::seed_from_u64(0);
    // d2l: X = torch.rand(size=(8, 8))
    let x: Tensor<Rank2<8, 8>, f32, Dev> = dev.sample_uniform();

    // The annotations are the book's answers; the compiler checks them against the networks.
    let y: Tensor<Rank2<8, 8>, f32, Dev> = comp_conv2d(&dev.build_module::<Pad, f32>(), &x);
    let y_rect: Tensor<Rank2<8, 8>, f32, Dev> =
        comp_conv2d(&dev.build_module::<PadRect, f32>(), &x);
    let y_stride: Tensor<Rank2<4, 4>, f32, Dev> =
        comp_conv2d(&dev.build_module::<Stride, f32>(), &x);
    let y_stride_rect: Tensor<Rank2<2, 2>, f32, Dev> =
        comp_conv2d(&dev.build_module::<StrideRect, f32>(), &x);

    // (kernel, padding, stride) per axis, the network's summary, and what came out.
    let rows = [
        (
            ((3, 3), (1, 1), (1, 1)),
            Pad::summary(),
            y.shape().concrete(),
        ),
        (
            ((5, 3), (2, 1), (1, 1)),
            PadRect::summary(),
            y_rect.shape().concrete(),
        ),
        (
            ((3, 3), (1, 1), (2, 2)),
            Stride::summary(),
            y_stride.shape().concrete(),
        ),
        (
            ((3, 5), (0, 1), (3, 4)),
            StrideRect::summary(),
            y_stride_rect.shape().concrete(),
        ),
    ];
    println!("8x8 input (d2l 6.3):");
    for ((k, p, s), summary, shape) in &rows {
        println!("  kernel {k:?}, padding {p:?}, stride {s:?} -> {shape:?}");
        // What ran agrees with what the macro worked out...
        assert_eq!(summary.output()[1..], shape[..]);
        // ...and with the book's formula, floor((n - k + p_total + s) / s), p_total = 2p.
        let out = |k: usize, p: usize, s: usize| (8 - k + 2 * p + s) / s;
        assert_eq!(*shape, [out(k.0, p.0, s.0), out(k.1, p.1, s.1)]);
    }
    // d2l 6.3: torch.Size([8, 8]), [8, 8], [4, 4], [2, 2].
    let shapes = rows.map(|(_, _, shape)| shape);
    assert_eq!(shapes, [[8, 8], [8, 8], [4, 4], [2, 2]]);
}

#[test]
fn example_runs() {
    main();
}
