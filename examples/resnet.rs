//! The second main job: a ResNet trained on Fashion-MNIST with d2l 8.6's residual blocks (the
//! `resnet` network of `../shared/bench/README.md`, the same one `bench` times): a 3x3 stem
//! with batch norm, `Residual(32)` twice, `Residual(64, use_1x1conv = true, stride = 2)`,
//! `Residual(64)`, global average pooling and a linear layer, on the 28x28 images.
//!
//! Run: `cargo run --release --example resnet` (Adam at lr 0.001 annealed to 0 by a cosine
//! over the epochs, batch 256, 10 epochs, Xavier init; `-- --sgd` for SGD at lr 0.1, annealed
//! alike, `--schedule constant` for a constant rate).
//! It prints the network's summary, one line per epoch, and ends with `loss L, train acc A,
//! test acc T`; it saves the weights (`runs/resnet.safetensors`) and a plot of the curves
//! (`runs/resnet.png`). The options are `lenet`'s (`--epochs N`, `--batch N`, `--lr X`,
//! `--momentum M` (with `--sgd`), `--adam`, `--schedule constant|cosine`, `--seed N`, `--threads N`,
//! `--data DIR`, `--out DIR`, `--eval FILE`, `--smoke`, and `--images DIR` with its options, for
//! your own images), with the same checks. With `--images` the training images are also
//! mirrored at random (`random_horizontal_flip`).
//!
//! On the CPU an epoch takes minutes where LeNet's takes seconds: the network does about 130
//! times the multiply-adds per image.
//!
//! `--resnet18` trains d2l 8.6's ResNet-18 instead, as the book does: on the images resized to
//! 96x96 (bilinear, bit for bit as torchvision's `Resize(96)`), SGD lr 0.05
//! (`runs/resnet18.*`). `bench/torch_resnet18.py` is the same run in PyTorch.

#[path = "common/run.rs"]
mod run;

use clap::Parser;
use cnn::train::Schedule;
use run::{Defaults, Error, RunArgs};
use std::process::ExitCode;

#[path = "common/resnets.rs"]
mod resnets;

use resnets::{ResNet, ResNet18};

#[derive(Parser, Debug)]
#[command(about = "Train a ResNet (d2l 8.6's residual blocks) on Fashion-MNIST")]
struct Args {
    /// d2l's ResNet-18 on the images resized to 96x96 (SGD lr 0.05), instead of the small ResNet.
    #[arg(long)]
    resnet18: bool,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    run::exit(start(&Args::parse()))
}

/// The run `args` ask for, once clap has checked each value.
fn start(args: &Args) -> Result<(), Error> {
    run::start_threads(&args.run)?;
    // d2l's settings for its ResNet-18. The small one trains with Adam at 0.001 annealed by a
    // cosine, which took it to 0.929 in ten epochs; at a constant rate Adam ended at 0.909, SGD
    // with momentum at 0.899 (README).
    let d2l_resnet18 = Defaults {
        adam: false,
        sgd_lr: 0.05,
        schedule: Schedule::Constant,
        flip: true,
    };
    let small = Defaults {
        adam: true,
        sgd_lr: 0.1,
        schedule: Schedule::Cosine,
        flip: true,
    };
    match args.resnet18 {
        true => run::run_sized::<ResNet18, 96>(&args.run, "resnet18", d2l_resnet18),
        false => run::run::<ResNet>(&args.run, "resnet", small),
    }
}

#[cfg(test)]
#[path = "common/pytorch.rs"]
mod pytorch;

#[cfg(test)]
mod tests {
    //! The example end to end on a tiny data set (its options and their checks are `lenet`'s,
    //! tested there): it trains, saves, and evaluates its own checkpoint.

    use super::*;
    use run::testing::{image_folder, tiny_data};

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

    #[test]
    fn trains_on_an_image_folder() {
        let data = image_folder(&["a", "b"], 5);
        let out = tempfile::tempdir().unwrap();
        start(&args(&[
            "--images",
            data.path().to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
            "--epochs",
            "1",
            "--batch",
            "4",
        ]))
        .unwrap();
        let meta = cnn::checkpoint::metadata(&out.path().join("resnet.safetensors")).unwrap();
        assert_eq!(
            (meta["cnn.network"].as_str(), meta["cnn.classes"].as_str()),
            ("ResNet", "a\nb")
        );
    }

    /// Adam is this example's default: `--momentum` needs `--sgd` (before anything runs),
    /// and `--sgd` and `--adam` exclude each other.
    #[test]
    fn momentum_asks_for_sgd() {
        let err = start(&args(&["--momentum", "0.9", "--data", "/nonexistent"])).unwrap_err();
        assert!(err.to_string().contains("add --sgd"), "{err}");
        assert!(Args::try_parse_from(["resnet", "--sgd", "--adam"]).is_err());
        let ok = args(&["--sgd", "--momentum", "0.9"]);
        assert!(ok.run.sgd && ok.run.momentum == Some(0.9));
    }

    #[test]
    fn resnet18_trains_on_resized_images() {
        let data = tiny_data(&[4, 5]);
        let data = data.path().to_str().unwrap();
        let out = tempfile::tempdir().unwrap();
        let out_dir = out.path().to_str().unwrap();
        start(&args(&[
            "--resnet18",
            "--data",
            data,
            "--out",
            out_dir,
            "--epochs",
            "1",
            "--batch",
            "2",
        ]))
        .unwrap();
        assert!(out.path().join("resnet18.safetensors").is_file());
    }

    /// `--resnet18`'s network is d2l's `ResNet18` key for key: the book's own PyTorch
    /// network's `state_dict` (`bench/d2l_ch8.py`) loads into it with no key map, and both
    /// give the same logits (skipped, saying so, without PyTorch).
    #[test]
    fn resnet18_loads_the_books_pytorch_weights() {
        super::pytorch::check::<ResNet18, 96>("resnet18");
    }
}
