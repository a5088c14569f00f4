//! d2l 6.6, "Convolutional Neural Networks (LeNet)" (7.6 in the current online edition): the
//! output shape after every layer for one 28x28 image, as the book prints it, twice: from the
//! summary the `cnn!` macro works out at compile time, and by running the layers one at a time
//! on a real tensor, where each intermediate shape is a type the compiler checks.
//!
//! Run: `cargo run --example 06-lenet-shapes` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// d2l 6.6's LeNet, every layer named so that every layer is a field (unnamed stateless
    /// layers have none). The names are the checkpoint keys too (`conv1.weight`), where the
    /// unnamed layers of the lenet example are keyed by position (`0.weight`), as PyTorch's
    /// `nn.Sequential` keys them.
    struct LeNet: [1, 28, 28] -> [10] {
        conv1: conv2d(6, kernel = 5, padding = 2), sigmoid1: sigmoid,
        pool1: avg_pool2d(kernel = 2, stride = 2),
        conv2: conv2d(16, kernel = 5), sigmoid2: sigmoid,
        pool2: avg_pool2d(kernel = 2, stride = 2),
        flatten: flatten,
        linear1: linear(120), sigmoid3: sigmoid,
        linear2: linear(84), sigmoid4: sigmoid,
        linear3: linear(10),
    }
}

/// d2l 6.6's printout: each layer's PyTorch class and output shape for a `(1, 1, 28, 28)` input.
const D2L: [(&str, &[usize]); 12] = [
    ("Conv2d", &[1, 6, 28, 28]),
    ("Sigmoid", &[1, 6, 28, 28]),
    ("AvgPool2d", &[1, 6, 14, 14]),
    ("Conv2d", &[1, 16, 10, 10]),
    ("Sigmoid", &[1, 16, 10, 10]),
    ("AvgPool2d", &[1, 16, 5, 5]),
    ("Flatten", &[1, 400]),
    ("Linear", &[1, 120]),
    ("Sigmoid", &[1, 120]),
    ("Linear", &[1, 84]),
    ("Sigmoid", &[1, 84]),
    ("Linear", &[1, 10]),
];

type T<S> = Tensor<S, f32, Cpu>;

fn shape<S: Shape>(t: &T<S>) -> Vec<usize> {
    t.shape().concrete().into()
}

fn main() {
    // Layer by layer, as d2l's `for layer in net: X = layer(X)`. Each annotation is the shape
    // d2l prints; a wrong one is a compile error.
    let dev = Cpu::seed_from_u64(0);
    let net = dev.build_module::<LeNet, f32>();
    // d2l: X = torch.rand(size=(1, 1, 28, 28))
    let x: T<Rank4<1, 1, 28, 28>> = dev.sample_uniform();
    let mut ran = Vec::new();
    let y: T<Rank4<1, 6, 28, 28>> = net.conv1.forward(x.clone());
    ran.push(shape(&y));
    let y: T<Rank4<1, 6, 28, 28>> = net.sigmoid1.forward(y);
    ran.push(shape(&y));
    let y: T<Rank4<1, 6, 14, 14>> = net.pool1.forward(y);
    ran.push(shape(&y));
    let y: T<Rank4<1, 16, 10, 10>> = net.conv2.forward(y);
    ran.push(shape(&y));
    let y: T<Rank4<1, 16, 10, 10>> = net.sigmoid2.forward(y);
    ran.push(shape(&y));
    let y: T<Rank4<1, 16, 5, 5>> = net.pool2.forward(y);
    ran.push(shape(&y));
    let y: T<Rank2<1, 400>> = net.flatten.forward(y);
    ran.push(shape(&y));
    let y: T<Rank2<1, 120>> = net.linear1.forward(y);
    ran.push(shape(&y));
    let y: T<Rank2<1, 120>> = net.sigmoid3.forward(y);
    ran.push(shape(&y));
    let y: T<Rank2<1, 84>> = net.linear2.forward(y);
    ran.push(shape(&y));
    let y: T<Rank2<1, 84>> = net.sigmoid4.forward(y);
    ran.push(shape(&y));
    let y: T<Rank2<1, 10>> = net.linear3.forward(y);
    ran.push(shape(&y));

    // The summary's numbers, worked out by the macro for one image; the batch axis goes in front.
    let rows = LeNet::summary().rows;
    let from_summary: Vec<Vec<usize>> = rows
        .iter()
        .map(|row| [1].iter().chain(row.output).copied().collect())
        .collect();

    println!("LeNet on a 1x1x28x28 tensor (d2l 6.6), and the summary's row for each layer:");
    for (((class, _), shape), row) in D2L.iter().zip(&ran).zip(rows) {
        println!(
            "  {class:<9} output shape: \t {:<16} {}",
            format!("{shape:?}"),
            row.kind
        );
    }
    let d2l: Vec<Vec<usize>> = D2L.iter().map(|(_, shape)| shape.to_vec()).collect();
    assert_eq!(ran, d2l);
    assert_eq!(from_summary, d2l);

    // The whole network (which runs conv -> sigmoid -> pool as one fused op) gives the same.
    let whole = net.forward(x);
    let diff = whole
        .as_vec()
        .iter()
        .zip(y.as_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        diff < 1e-5,
        "the layers one by one differ from the network by {diff}"
    );
}

#[test]
fn example_runs() {
    main();
}
