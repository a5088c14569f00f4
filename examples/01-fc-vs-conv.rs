//! d2l 6.1, "From Fully-Connected Layers to Convolutions" (7.1 in the current online edition):
//! why a convolution needs so few parameters. Every network here is a `cnn!` type whose `PARAMS`
//! the macro counts at compile time, so the layer with a billion weights is never built.
//!
//! Run: `cargo run --example 01-fc-vs-conv` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// d2l 6.1: "a one-megapixel image ... into one thousand hidden dimensions ... 10^6 x 10^3 =
    /// 10^9 parameters".
    struct Dense: [1, 1000, 1000] -> [1000] {
        flatten,
        linear(1000),
    }

    /// d2l 6.1.2: hidden units as many as pixels; "10^12 parameters".
    struct DenseImage: [1, 1000, 1000] -> [1000000] {
        flatten,
        linear(1000000),
    }

    /// d2l 6.1.2.2, locality: each hidden unit looks at a (2Δ+1)x(2Δ+1) patch, Δ = 10, the same
    /// weights everywhere (translation invariance).
    struct Local: [1, 1000, 1000] -> [1, 1000, 1000] {
        conv2d(1, kernel = 21, padding = 10),
    }

    /// The small kernel of d2l 6.2 onwards: 3x3, Δ = 1.
    struct Small: [1, 1000, 1000] -> [1, 1000, 1000] {
        conv2d(1, kernel = 3, padding = 1),
    }

    /// d2l 6.6's LeNet.
    struct LeNet: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }
}

fn main() {
    println!("A one-megapixel image (d2l 6.1), parameters counted by the compiler:");
    let rows = [
        ("fully connected, 1000 hidden units", Dense::PARAMS),
        ("fully connected, 10^6 hidden units", DenseImage::PARAMS),
        ("conv 21x21 (locality, Δ = 10)", Local::PARAMS),
        ("conv 3x3 (Δ = 1)", Small::PARAMS),
    ];
    for (what, params) in rows {
        println!("  {what:<36} {:>17}", thousands(params));
    }
    // d2l 6.1: 10^9 weights (plus 1000 biases); 6.1.2: 10^12.
    assert_eq!(Dense::PARAMS, 1_000_000_000 + 1000);
    assert_eq!(DenseImage::PARAMS, 1_000_000_000_000 + 1_000_000);
    // d2l 6.1.2.2: locality leaves (2Δ+1)^2 = 441 weights ("4Δ^2"), whatever the image size.
    assert_eq!(Local::PARAMS, 21 * 21 + 1);
    assert_eq!(Small::PARAMS, 3 * 3 + 1);

    // LeNet (d2l 6.6) layer by layer, from the summary the macro writes.
    let summary = LeNet::summary();
    println!("\n{summary}\n");
    let counts: Vec<(&str, usize)> = summary
        .rows
        .iter()
        .filter(|row| row.params > 0)
        .map(|row| (row.name, row.params))
        .collect();
    let terms: Vec<String> = counts
        .iter()
        .map(|(name, n)| format!("{name} {}", thousands(*n)))
        .collect();
    println!(
        "LeNet: {} = {} parameters",
        terms.join(" + "),
        thousands(LeNet::PARAMS)
    );
    // weights + biases: OUT * IN * KH * KW + OUT for a conv, IN * OUT + OUT for a linear layer;
    // each named by its position, as PyTorch's `nn.Sequential` numbers it (`0.weight`, ...).
    let expected = [
        ("0", 6 * 5 * 5 + 6),
        ("3", 16 * 6 * 5 * 5 + 16),
        ("7", 400 * 120 + 120),
        ("9", 120 * 84 + 84),
        ("11", 84 * 10 + 10),
    ];
    assert_eq!(counts, expected);
    // PyTorch's `sum(p.numel() for p in net.parameters())` for d2l's LeNet.
    assert_eq!(LeNet::PARAMS, 61_706);
    assert_eq!(summary.params(), LeNet::PARAMS);
    // The built network holds exactly that many.
    let dev = Cpu::default();
    let net = dev.build_module::<LeNet, f32>();
    assert_eq!(net.num_trainable_params(), LeNet::PARAMS);
}

/// `61706` -> `61,706`
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn example_runs() {
    main();
}
