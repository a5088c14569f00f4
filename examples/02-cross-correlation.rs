//! d2l 6.2, "Convolutions for Images" (7.2 in the current online edition): the cross-correlation
//! written out by hand and by the crate's `conv2d`, detecting edges with a 1x2 kernel, learning
//! that kernel back from data by gradient descent, and how a strict convolution differs.
//!
//! Run: `cargo run --example 02-cross-correlation` (also run by `cargo test`).

use cnn::prelude::*;

cnn! {
    /// One 2x2 kernel over a 3x3 image, as in d2l 6.2.1.
    struct Corr: [1, 3, 3] -> [1, 2, 2] {
        conv: conv2d(1, kernel = 2, bias = false),
    }

    /// d2l 6.2.4's `nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False)` on the 6x8 image.
    struct EdgeDetector: [1, 6, 8] -> [1, 6, 7] {
        conv: conv2d(1, kernel = (1, 2), bias = false),
    }
}

/// d2l 6.2.1's `corr2d`: slide the kernel `k` over `x`; each output is the sum of the products
/// of the kernel with the window under it. The output size, `(H - KH + 1) x (W - KW + 1)`, is
/// the caller's annotation, checked at compile time.
fn corr2d<
    const H: usize,
    const W: usize,
    const KH: usize,
    const KW: usize,
    const OH: usize,
    const OW: usize,
>(
    x: &[[f32; W]; H],
    k: &[[f32; KW]; KH],
) -> [[f32; OW]; OH] {
    const {
        assert!(
            OH == H - KH + 1 && OW == W - KW + 1,
            "corr2d: output must be (H-KH+1) x (W-KW+1)"
        )
    };
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let mut sum = 0.0;
            for a in 0..KH {
                for b in 0..KW {
                    sum += x[i + a][j + b] * k[a][b];
                }
            }
            sum
        })
    })
}

/// Strict convolution from its definition, `(x * k)[n, m] = Σ_a Σ_b k[a, b] x[n - a, m - b]`
/// (d2l 6.1.3), at the positions where the whole kernel overlaps `x`: `n = i + KH - 1`,
/// `m = j + KW - 1`.
fn conv2d_strict<
    const H: usize,
    const W: usize,
    const KH: usize,
    const KW: usize,
    const OH: usize,
    const OW: usize,
>(
    x: &[[f32; W]; H],
    k: &[[f32; KW]; KH],
) -> [[f32; OW]; OH] {
    const {
        assert!(
            OH == H - KH + 1 && OW == W - KW + 1,
            "conv2d_strict: output must be (H-KH+1) x (W-KW+1)"
        )
    };
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let (n, m) = (i + KH - 1, j + KW - 1);
            let mut sum = 0.0;
            for a in 0..KH {
                for b in 0..KW {
                    sum += k[a][b] * x[n - a][m - b];
                }
            }
            sum
        })
    })
}

fn transpose<const H: usize, const W: usize>(x: &[[f32; W]; H]) -> [[f32; H]; W] {
    std::array::from_fn(|j| std::array::from_fn(|i| x[i][j]))
}

/// The kernel turned by 180 degrees: flipped upside down and left to right.
fn flip<const H: usize, const W: usize>(k: &[[f32; W]; H]) -> [[f32; W]; H] {
    std::array::from_fn(|a| std::array::from_fn(|b| k[H - 1 - a][W - 1 - b]))
}

fn main() {
    let dev = Cpu::seed_from_u64(0);

    // d2l 6.2.1: X = [[0, 1, 2], [3, 4, 5], [6, 7, 8]], K = [[0, 1], [2, 3]].
    let x = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]];
    let k = [[0.0, 1.0], [2.0, 3.0]];
    let y: [[f32; 2]; 2] = corr2d(&x, &k);
    println!("6.2.1 corr2d(X, K) = {y:?}");
    // d2l 6.2.1: tensor([[19., 25.], [37., 43.]])
    assert_eq!(y, [[19.0, 25.0], [37.0, 43.0]]);
    // The crate's conv2d is the same cross-correlation.
    let mut corr = dev.build_module::<Corr, f32>();
    corr.conv.weight = dev.tensor([[k]]);
    let y_layer = corr.forward(dev.tensor([x]));
    println!("      conv2d layer   = {:?}", y_layer.array()[0]);
    assert_eq!(y_layer.array(), [y]);

    // d2l 6.2.3: a 6x8 image, white (1) with a black (0) band in columns 2 to 5.
    let mut x = [[1.0f32; 8]; 6];
    for row in &mut x {
        row[2..6].fill(0.0);
    }
    let k = [[1.0, -1.0]];
    let y: [[f32; 7]; 6] = corr2d(&x, &k);
    println!("\n6.2.3 edges of X (6x8) with K = [1, -1]:");
    for row in &y {
        println!("  {row:?}");
    }
    // d2l 6.2.3: 1 for the edge from white to black (column 1), -1 from black to white (column 5).
    let mut expected = [[0.0f32; 7]; 6];
    for row in &mut expected {
        row[1] = 1.0;
        row[5] = -1.0;
    }
    assert_eq!(y, expected);
    // The same with the layer.
    let mut edges = dev.build_module::<EdgeDetector, f32>();
    edges.conv.weight = dev.tensor([[k]]);
    assert_eq!(edges.forward(dev.tensor([x])).array(), [y]);
    // d2l 6.2.3: on the transposed image the edges are horizontal, and K finds none.
    let y_t: [[f32; 5]; 8] = corr2d(&transpose(&x), &k);
    println!(
        "  K on X transposed (8x6) finds nothing: all {} outputs are 0",
        8 * 5
    );
    assert_eq!(y_t, [[0.0; 5]; 8]);

    // d2l 6.2.4: learn K back from X and Y. Squared error summed, plain gradient descent with
    // lr 3e-2 for 10 epochs, updating the weight by hand as the book does.
    println!("\n6.2.4 learning the kernel from (X, Y):");
    let mut net = dev.build_module::<EdgeDetector, f32>();
    let (x, y) = (dev.tensor([x]), dev.tensor([y]));
    let lr = 3e-2;
    for epoch in 1..=10 {
        let y_hat = net.forward(x.trace(net.alloc_grads()));
        let loss = (y_hat - y.clone()).square().sum();
        let loss_value = loss.array();
        let grads = loss.backward();
        // d2l: conv2d.weight.data[:] -= lr * conv2d.weight.grad
        let grad = grads.get(&net.conv.weight);
        net.conv.weight.axpy(1.0, &grad, -lr);
        if epoch % 2 == 0 {
            println!("  epoch {epoch}, loss {loss_value:.3}");
        }
    }
    let learned = net.conv.weight.array()[0][0][0];
    println!("  learned kernel: {learned:.4?}");
    // d2l 6.2.4 learns tensor([[ 1.0010, -0.9739]]) (from its own random start): close to [1, -1].
    assert!(
        (learned[0] - 1.0).abs() < 0.1 && (learned[1] + 1.0).abs() < 0.1,
        "{learned:?}"
    );

    // d2l 6.2.5: a strict convolution is the cross-correlation with the kernel flipped both
    // ways. On the asymmetric K of 6.2.1 the two differ.
    let x = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]];
    let k = [[0.0, 1.0], [2.0, 3.0]];
    let conv: [[f32; 2]; 2] = conv2d_strict(&x, &k);
    let corr_flipped: [[f32; 2]; 2] = corr2d(&x, &flip(&k));
    let corr_plain: [[f32; 2]; 2] = corr2d(&x, &k);
    println!("\n6.2.5 strict convolution of X with K = {conv:?}");
    println!("      cross-correlation with flip(K) = {corr_flipped:?}");
    println!("      cross-correlation with K       = {corr_plain:?}");
    // By hand: flip(K) = [[3, 2], [1, 0]]; 0*3 + 1*2 + 3*1 + 4*0 = 5, and so on.
    assert_eq!(conv, [[5.0, 11.0], [23.0, 29.0]]);
    assert_eq!(conv, corr_flipped);
    assert_ne!(conv, corr_plain);
    // A conv2d layer holding the flipped kernel computes the strict convolution.
    corr.conv.weight = dev.tensor([[flip(&k)]]);
    assert_eq!(corr.forward(dev.tensor([x])).array(), [conv]);
}

#[test]
fn example_runs() {
    main();
}
