//! Dilated convolutions: a 3x3 kernel with gaps of `d - 1` pixels between its taps spans
//! `d * (3 - 1) + 1` pixels, so stacking dilations 1, 2, 4 grows the receptive field
//! exponentially (3, 7, 15), where plain 3x3 convolutions grow it linearly (3, 5, 7), for the
//! same 9 weights a layer. This follows Yu & Koltun, "Multi-Scale Context Aggregation by Dilated
//! Convolutions" (ICLR 2016), section 2; d2l 6.3 covers the padding and stride half of the
//! output-size formula, PyTorch's `nn.Conv2d` docs the dilation half:
//! `floor((n + 2p - d(k - 1) - 1) / s) + 1`.
//!
//! Each stack is a `cnn!` network: the compiler checks the declared shapes, the summary's last
//! column holds the receptive field, and a gradient shows it: the pixels that one output unit's
//! gradient reaches are its receptive field.
//!
//! Run: `cargo run --example 08-dilated` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// One 3x3 kernel with dilation 2, no padding: it spans 5x5, so 32 -> 28.
    struct OneDilated: [1, 32, 32] -> [1, 28, 28] {
        conv2d(1, kernel = 3, dilation = 2, bias = false),
    }

    /// Three plain 3x3 convolutions, no padding: 32 -> 30 -> 28 -> 26.
    struct Plain: [1, 32, 32] -> [1, 26, 26] {
        conv2d(1, kernel = 3, bias = false) -> [1, 30, 30],
        conv2d(1, kernel = 3, bias = false) -> [1, 28, 28],
        conv2d(1, kernel = 3, bias = false) -> [1, 26, 26],
    }

    /// Dilations 1, 2, 4, no padding: each takes 2d pixels off, 32 -> 30 -> 26 -> 18.
    struct Dilated: [1, 32, 32] -> [1, 18, 18] {
        conv2d(1, kernel = 3, dilation = 1, bias = false) -> [1, 30, 30],
        conv2d(1, kernel = 3, dilation = 2, bias = false) -> [1, 26, 26],
        conv2d(1, kernel = 3, dilation = 4, bias = false) -> [1, 18, 18],
    }

    /// Dilations 1, 2, 4 with padding d, as Yu & Koltun's context module: the size is kept.
    struct DilatedSame: [1, 32, 32] -> [1, 32, 32] {
        conv2d(1, kernel = 3, dilation = 1, padding = 1, bias = false),
        conv2d(1, kernel = 3, dilation = 2, padding = 2, bias = false),
        conv2d(1, kernel = 3, dilation = 4, padding = 4, bias = false),
    }
}

type Traced<S> = Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>;

/// The receptive field of the centre output unit, measured: back-propagate from that one unit
/// through `layers` and see which input pixels get a gradient. Returns the height and width of
/// the smallest box holding them, and how many of the box's pixels are reached.
fn measured_field<const OH: usize, const OW: usize>(
    dev: &Cpu,
    layers: impl Fn(Traced<Rank3<1, 32, 32>>) -> Traced<Rank3<1, OH, OW>>,
) -> ((usize, usize), usize) {
    let x: Tensor<Rank3<1, 32, 32>, f32, Cpu> = dev.ones();
    let mut pick = [[[0.0f32; OW]; OH]; 1];
    pick[0][OH / 2][OW / 2] = 1.0;
    let y = layers(x.leaky_trace());
    let grads = (y * dev.tensor(pick)).sum().backward();
    let g = grads.get(&x).array()[0];
    let reached: Vec<(usize, usize)> = (0..32)
        .flat_map(|i| (0..32).map(move |j| (i, j)))
        .filter(|&(i, j)| g[i][j] != 0.0)
        .collect();
    let extent = |axis: fn(&(usize, usize)) -> usize| {
        let values = reached.iter().map(axis);
        values.clone().max().unwrap() - values.min().unwrap() + 1
    };
    ((extent(|p| p.0), extent(|p| p.1)), reached.len())
}

fn main() {
    let dev = Cpu::default();
    // Every weight 1, so no gradient cancels by chance: a pixel's gradient counts its paths to
    // the output unit.
    let mut one = dev.build_module::<OneDilated, f32>();
    let mut plain = dev.build_module::<Plain, f32>();
    let mut dilated = dev.build_module::<Dilated, f32>();
    let mut same = dev.build_module::<DilatedSame, f32>();
    for w in [
        &mut one._0.weight,
        &mut plain._0.weight,
        &mut plain._1.weight,
        &mut plain._2.weight,
        &mut dilated._0.weight,
        &mut dilated._1.weight,
        &mut dilated._2.weight,
        &mut same._0.weight,
        &mut same._1.weight,
        &mut same._2.weight,
    ] {
        w.fill_with_ones();
    }

    let summaries = [
        OneDilated::summary(),
        Plain::summary(),
        Dilated::summary(),
        DilatedSame::summary(),
    ];
    // The layers one at a time: a network's own `forward` does not compute the gradient for
    // its input images, which training never needs.
    let measured = [
        measured_field(&dev, |x| one._0.forward(x)),
        measured_field(&dev, |x| {
            let x = plain._0.forward(x);
            let x = plain._1.forward(x);
            plain._2.forward(x)
        }),
        measured_field(&dev, |x| {
            let x = dilated._0.forward(x);
            let x = dilated._1.forward(x);
            dilated._2.forward(x)
        }),
        measured_field(&dev, |x| {
            let x = same._0.forward(x);
            let x = same._1.forward(x);
            same._2.forward(x)
        }),
    ];
    for (summary, (field, reached)) in summaries.iter().zip(measured) {
        println!("{summary}");
        println!(
            "measured: the centre unit's gradient reaches {reached} pixels of a {field:?} box\n"
        );
        let last = summary.rows.last().unwrap().receptive_field;
        assert_eq!(
            last,
            Some(field),
            "{}: the summary and the gradient disagree",
            summary.name
        );
    }

    // The receptive fields, layer by layer, from the summaries' last column.
    let fields = |rows: &[cnn::LayerRow]| -> Vec<usize> {
        rows.iter().map(|r| r.receptive_field.unwrap().0).collect()
    };
    // Yu & Koltun 2016, section 2: 3x3 kernels with dilations 1, 2, 4 give receptive fields
    // 3x3, 7x7, 15x15: 2^(i+1) - 1 after layer i.
    assert_eq!(fields(Dilated::summary().rows), [3, 7, 15]);
    assert_eq!(fields(DilatedSame::summary().rows), [3, 7, 15]);
    // Plain 3x3 kernels add 2 each: 3, 5, 7.
    assert_eq!(fields(Plain::summary().rows), [3, 5, 7]);
    // One dilated kernel spans 5x5 but touches only its 9 taps; the 1, 2, 4 stack fills its
    // 15x15 field without holes.
    assert_eq!(fields(OneDilated::summary().rows), [5]);
    assert_eq!(
        measured.map(|(_, reached)| reached),
        [9, 7 * 7, 15 * 15, 15 * 15]
    );

    // Output sizes, floor((n + 2p - d(k - 1) - 1) / s) + 1; also checked by the types above.
    let outputs = summaries.map(|s| s.output()[1]);
    assert_eq!(outputs, [28, 26, 18, 32]);
    println!(
        "outputs for 32x32: dilation 2 alone {}, plain stack {}, dilations 1, 2, 4 {} (padded: {})",
        outputs[0], outputs[1], outputs[2], outputs[3]
    );
}

#[test]
fn example_runs() {
    main();
}
