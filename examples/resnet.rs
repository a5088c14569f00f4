//! The second main job: a ResNet trained on Fashion-MNIST with d2l 8.6's residual blocks (the
//! `resnet` network of `../shared/bench/README.md`, the same one `bench` times): a 3x3 stem
//! with batch norm, `Residual(32)` twice, `Residual(64, use_1x1conv = true, stride = 2)`,
//! `Residual(64)`, global average pooling and a linear layer, on the 28x28 images.
//!
//! Run: `cargo run --release --example resnet` (SGD lr 0.1, batch 256, 10 epochs, Xavier init).
//! It prints the network's summary, one line per epoch, and ends with `loss L, train acc A,
//! test acc T`; it saves the weights (`runs/resnet.safetensors`) and a plot of the curves
//! (`runs/resnet.png`). The options are `lenet`'s (`--epochs N`, `--batch N`, `--lr X`,
//! `--adam`, `--seed N`, `--threads N`, `--data DIR`, `--out DIR`, `--eval FILE`, `--smoke`),
//! with the same checks.
//!
//! On the CPU an epoch takes minutes where LeNet's takes seconds: the network does about 130
//! times the multiply-adds per image.

#[path = "common/run.rs"]
mod run;

use clap::Parser;
use cnn::prelude::*;
use run::{Error, RunArgs};
use std::process::ExitCode;

cnn! {
    /// d2l 8.6's residual block: two 3x3 convolutions with batch norm, added to the input (through
    /// a 1x1 convolution when the shape changes), then ReLU.
    block Residual(c, use_1x1conv = false, stride = 1) {
        residual {
            conv1: conv2d(c, kernel = 3, padding = 1, stride = stride), bn1: batch_norm2d, relu,
            conv2: conv2d(c, kernel = 3, padding = 1), bn2: batch_norm2d,
        } shortcut {
            if use_1x1conv { conv3: conv2d(c, kernel = 1, stride = stride) }
        },
        relu,
    }

    /// A small ResNet for 28x28 images.
    // Trained on images only, never placed after another network: skip the input's gradient.
    #[cnn(input_grad = false)]
    pub struct ResNet: [1, 28, 28] -> [10] {
        conv2d(32, kernel = 3, padding = 1), batch_norm2d, relu,
        Residual(32), Residual(32),
        Residual(64, use_1x1conv = true, stride = 2), Residual(64),
        global_avg_pool2d, linear(10),
    }
}

#[derive(Parser, Debug)]
#[command(about = "Train a ResNet (d2l 8.6's residual blocks) on Fashion-MNIST")]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    run::exit(start(&Args::parse()))
}

/// The run `args` ask for, once clap has checked each value.
fn start(args: &Args) -> Result<(), Error> {
    run::start_threads(&args.run)?;
    run::run::<ResNet>(&args.run, "resnet", 0.1)
}

#[cfg(test)]
mod tests {
    //! The example end to end on a tiny data set (its options and their checks are `lenet`'s,
    //! tested there): it trains, saves, and evaluates its own checkpoint.

    use super::*;
    use run::testing::tiny_data;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("resnet").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn trains_saves_and_evaluates() {
        let data = tiny_data(&[4, 5]);
        let data = data.path().to_str().unwrap();
        let out = tempfile::tempdir().unwrap();
        let out_s = out.path().to_str().unwrap();
        start(&args(&[
            "--data", data, "--out", out_s, "--epochs", "1", "--batch", "2",
        ]))
        .unwrap();
        let ckpt = out.path().join("resnet.safetensors");
        assert!(ckpt.is_file() && out.path().join("resnet.png").is_file());
        start(&args(&["--data", data, "--eval", ckpt.to_str().unwrap()])).unwrap();
    }
}
