//! How fast the image loader delivers batches: decode + transforms + batching of one pass over
//! an image folder, without a network, in images/s (`bench/torch_loader.py` times torchvision's
//! `DataLoader` on the same folder with the same transforms).
//!
//! Run: `cargo run --release --example loader-bench -- DIR [--workers N] [--batch N]
//! [--passes N]`; DIR is a class-per-folder tree (`scripts/fashion-mnist-png.py` writes one).
//! The transforms are `random_resized_crop(28, 28); random_horizontal_flip;
//! normalize(0.5, 0.5)` on grey images, the prefetch depth 2.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use cnn::data::images::{ImageFolder, ImageLoader, LoaderOptions};
use cnn::train::Batches;

#[derive(Parser, Debug)]
#[command(about = "Time the image loader on a folder")]
struct Args {
    /// A class-per-folder tree of images.
    dir: PathBuf,
    /// Decoding threads (0: one per core).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Passes timed (each reported).
    #[arg(long, default_value_t = 2)]
    passes: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let set = ImageFolder::open(&args.dir)?;
    let transforms =
        "random_resized_crop(28, 28); random_horizontal_flip; normalize(0.5, 0.5)".parse()?;
    let opts = LoaderOptions {
        workers: args.workers,
        ..LoaderOptions::default()
    };
    let loader = ImageLoader::<1, 28, 28>::new(set, transforms, opts)?;
    for pass in 0..args.passes {
        let start = Instant::now();
        let images: usize = loader.batches(pass, args.batch).map(|b| b.y.len()).sum();
        if let Some(e) = loader.take_error() {
            return Err(e);
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "{{\"case\": \"loader_w{}\", \"pass\": {pass}, \"images\": {images}, \"seconds\": {s:.2}, \"images_per_s\": {:.0}}}",
            args.workers,
            images as f64 / s
        );
    }
    Ok(())
}
