//! What a trained LeNet (d2l 6.6; 7.6 in the current online edition) has learned, as pictures:
//! its first layer's six 5x5 kernels, and what one test image looks like after each
//! convolution (six 28x28 feature maps after conv1's sigmoid, sixteen 10x10 after conv2's).
//!
//! Run: `cargo run --release --example lenet` (trains d2l's LeNet and saves
//! `runs/lenet-d2l.safetensors`), then `cargo run --release --example 09-visualise`. Without a
//! checkpoint it first trains LeNet for one epoch on 12,000 images (a few seconds in release).
//! It writes four PNG files to `runs/` and prints their paths:
//!
//! - `lenet-kernels.png`: the 6 kernels, 20 px per weight, red positive, blue negative, white 0
//!   (one scale for all six, so they can be compared);
//! - `lenet-input.png`: the test image (`--image N`, default 0);
//! - `lenet-conv1.png`, `lenet-conv2.png`: its feature maps, each map scaled from black (its
//!   smallest value) to white (its largest).
//!
//! Options: `--weights FILE`, `--out DIR`, `--image N`, `--data DIR`. Under `cargo test` only
//! the drawing runs, on a random model and a random image.

use clap::Parser;
use cnn::data::{CLASS_NAMES, FashionMnist};
use cnn::prelude::*;
use cnn::train::{Config, InMemory, Init, Progress, Trainer};
use image::{Rgb, RgbImage};
use std::error::Error;
use std::path::{Path, PathBuf};

cnn! {
    /// d2l 6.6's LeNet, the layers after the convolutions named so that the feature maps can be
    /// taken between them. The names hold no weights and the layers keep their positions (the
    /// convolutions are `_0` and `_3`): the lenet example's checkpoints load.
    struct LeNet: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid1: sigmoid,
        pool1: avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid2: sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }
}

#[derive(Parser, Debug)]
#[command(about = "Draw a trained LeNet's kernels and feature maps as PNG files")]
struct Args {
    /// The lenet example's checkpoint; trained briefly here when there is none.
    #[arg(long, default_value = "runs/lenet-d2l.safetensors")]
    weights: PathBuf,
    /// Where the PNG files go.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Which Fashion-MNIST test image to show.
    #[arg(long, default_value_t = 0)]
    image: usize,
    /// Folder with the Fashion-MNIST files.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Pixels per weight in the kernel picture, per pixel in the input and in the feature maps.
const KERNEL_SCALE: u32 = 20;
const INPUT_SCALE: u32 = 10;
const CONV1_SCALE: u32 = 6;
const CONV2_SCALE: u32 = 12;

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let dev = Cpu::seed_from_u64(0);
    let mut net = dev.build_module::<LeNet, f32>();
    let data = FashionMnist::locate_or_download(args.data.as_deref())?;
    if args.weights.is_file() {
        cnn::checkpoint::load_network(&mut net, &args.weights)?;
        println!("weights: {}", args.weights.display());
    } else {
        println!(
            "no checkpoint at {}: training one epoch on 12,000 images",
            args.weights.display()
        );
        train_briefly(&dev, &mut net, &data)?;
    }
    let index = args.image;
    if index >= data.test.len() {
        return Err(format!(
            "--image {index}: the test set has {} images",
            data.test.len()
        )
        .into());
    }
    let label = CLASS_NAMES[usize::from(data.test.labels[index])];
    println!("test image {index}: {label}");
    for path in draw(&dev, &net, data.test.image(index), &args.out)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// One epoch of Adam (lr 3e-3, batches of 32) on a fifth of the training set: enough for the
/// kernels to take shape, at about 65% test accuracy. d2l's SGD at lr 0.9 with batches of 256
/// stays at chance level for its whole first epoch.
fn train_briefly(
    dev: &Cpu,
    net: &mut LeNet<f32, Cpu>,
    data: &FashionMnist,
) -> Result<(), Box<dyn Error>> {
    type Images = (usize, Const<1>, Const<28>, Const<28>);
    let to_batches = |set: cnn::data::Dataset| {
        let labels = set.labels.iter().map(|&l| usize::from(l)).collect();
        InMemory::<Images>::new(set.images, labels)
    };
    let train = to_batches(data.train.subset(12_000))?.shuffled(0);
    let test = to_batches(data.test.subset(2_000))?;
    let config = Config {
        epochs: 1,
        batch_size: 32,
        progress: Progress::Auto,
        init: Init::XavierUniform { seed: 0 },
        ..Default::default()
    };
    let mut opt = Adam::new(
        net,
        AdamConfig {
            lr: 3e-3,
            ..Default::default()
        },
    );
    Trainer::new(dev.clone(), config).fit(net, &mut opt, &train, &test)?;
    Ok(())
}

/// Writes the four pictures of `net` and the 28x28 `image` into `out`; returns their paths.
fn draw(
    dev: &Cpu,
    net: &LeNet<f32, Cpu>,
    image: &[f32],
    out: &Path,
) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    std::fs::create_dir_all(out)?;

    // conv1's weight: (6, 1, 5, 5), one 5x5 tile per output channel, on one shared scale.
    let weights = net._0.weight.as_vec();
    let max_abs = weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
    let kernels = tiles(&weights, 6, |w| diverging(w / max_abs));

    // The feature maps, between the layers: (6, 28, 28) after conv1's sigmoid, (16, 10, 10)
    // after conv2's.
    let x: Tensor<Rank3<1, 28, 28>, f32, Cpu> =
        dev.tensor_from_vec(image.to_vec(), Default::default());
    let maps1 = net.sigmoid1.forward(net._0.forward(x.clone()));
    let maps2 = net
        .sigmoid2
        .forward(net._3.forward(net.pool1.forward(maps1.clone())));

    let pictures = [
        ("lenet-kernels.png", grid(&kernels, (5, 5), 6, KERNEL_SCALE)),
        (
            "lenet-input.png",
            grid(&tiles(image, 1, grey), (28, 28), 1, INPUT_SCALE),
        ),
        (
            "lenet-conv1.png",
            grid(&stretched(&maps1.as_vec(), 6), (28, 28), 3, CONV1_SCALE),
        ),
        (
            "lenet-conv2.png",
            grid(&stretched(&maps2.as_vec(), 16), (10, 10), 4, CONV2_SCALE),
        ),
    ];
    let mut paths = Vec::new();
    for (name, picture) in pictures {
        let path = out.join(name);
        picture.save(&path)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Splits `values` into `n` equal tiles and colours every value.
fn tiles(values: &[f32], n: usize, colour: impl Fn(f32) -> Rgb<u8>) -> Vec<Vec<Rgb<u8>>> {
    values
        .chunks(values.len() / n)
        .map(|tile| tile.iter().map(|&v| colour(v)).collect())
        .collect()
}

/// [`tiles`] in grey, each tile stretched from black (its minimum) to white (its maximum).
fn stretched(values: &[f32], n: usize) -> Vec<Vec<Rgb<u8>>> {
    values
        .chunks(values.len() / n)
        .map(|tile| {
            let lo = tile.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = tile.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let range = if hi > lo { hi - lo } else { 1.0 };
            tile.iter().map(|&v| grey((v - lo) / range)).collect()
        })
        .collect()
}

/// Lays out tiles of `h x w` coloured cells, `cols` a row, each cell a `scale x scale` square,
/// with a light grey gap of `scale / 2` (at least 2 px) around every tile.
fn grid(tiles: &[Vec<Rgb<u8>>], (h, w): (usize, usize), cols: usize, scale: u32) -> RgbImage {
    let gap = (scale / 2).max(2);
    let rows = tiles.len().div_ceil(cols) as u32;
    let (tile_h, tile_w) = (h as u32 * scale, w as u32 * scale);
    let width = cols as u32 * (tile_w + gap) + gap;
    let height = rows * (tile_h + gap) + gap;
    let mut img = RgbImage::from_pixel(width, height, Rgb([230, 230, 230]));
    for (t, tile) in tiles.iter().enumerate() {
        let (x0, y0) = (
            gap + (t % cols) as u32 * (tile_w + gap),
            gap + (t / cols) as u32 * (tile_h + gap),
        );
        for y in 0..tile_h {
            for x in 0..tile_w {
                let cell = (y / scale) as usize * w + (x / scale) as usize;
                img.put_pixel(x0 + x, y0 + y, tile[cell]);
            }
        }
    }
    img
}

/// `t` in [0, 1] as grey, black to white.
fn grey(t: f32) -> Rgb<u8> {
    let v = (t.clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb([v, v, v])
}

/// `t` in [-1, 1] on a diverging scale: blue for negative, white for 0, red for positive
/// (ColorBrewer's RdBu ends).
fn diverging(t: f32) -> Rgb<u8> {
    let (end, t) = if t < 0.0 {
        ([33.0, 102.0, 172.0], -t)
    } else {
        ([178.0, 24.0, 43.0], t)
    };
    let t = t.min(1.0);
    Rgb(end.map(|c: f32| (255.0 + (c - 255.0) * t).round() as u8))
}

/// The fast part, for `cargo test`: draw a random model's pictures of a random image and check
/// their sizes and colours.
#[test]
fn drawing_runs() {
    let dev = Cpu::seed_from_u64(1);
    let net = dev.build_module::<LeNet, f32>();
    let image: Tensor<Rank1<784>, f32, Cpu> = dev.sample_uniform();
    let out = tempfile::tempdir().unwrap();
    let paths = draw(&dev, &net, &image.as_vec(), out.path()).unwrap();
    let sizes: Vec<(u32, u32)> = paths
        .iter()
        .map(|p| image::open(p).unwrap().to_rgb8().dimensions())
        .collect();
    // kernels: 6 tiles of 100 px in a row, 10 px gaps; input 280 px, 5 px gaps; conv1 maps
    // 3x2 tiles of 168 px, 3 px gaps; conv2 maps 4x4 tiles of 120 px, 6 px gaps.
    assert_eq!(
        sizes,
        [
            (6 * 110 + 10, 120),
            (290, 290),
            (3 * 171 + 3, 2 * 171 + 3),
            (4 * 126 + 6, 4 * 126 + 6)
        ]
    );
    // The colour scales: 0 is white on the diverging one, the extremes are its ends.
    assert_eq!(diverging(0.0), Rgb([255, 255, 255]));
    assert_eq!(
        (diverging(-1.0), diverging(1.0)),
        (Rgb([33, 102, 172]), Rgb([178, 24, 43]))
    );
    // The largest weight in absolute value is drawn at full colour.
    let kernels = image::open(&paths[0]).unwrap().to_rgb8();
    assert!(
        kernels
            .pixels()
            .any(|&p| p == Rgb([33, 102, 172]) || p == Rgb([178, 24, 43]))
    );
}
