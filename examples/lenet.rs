//! d2l 6.6, end to end: LeNet trained on Fashion-MNIST, the project's main job.
//!
//! Run: `cargo run --release --example lenet` — d2l's settings (sigmoid, average pooling, SGD
//! lr 0.9, batch 256, 10 epochs, Xavier init). It prints the network's summary, one line per
//! epoch, and ends with `loss L, train acc A, test acc T`; it saves the weights
//! (`runs/lenet-d2l.safetensors`) and a plot of the curves (`runs/lenet-d2l.png`).
//!
//! - `--modern`: ReLU and max pooling (add `--adam`, or keep SGD with `--lr 0.1`: at lr 0.9 it
//!   diverges, in PyTorch too).
//! - `--epochs N`, `--batch N`, `--lr X`, `--momentum M` (SGD's), `--schedule constant|cosine`
//!   (the rate over the epochs; d2l's is constant), `--seed N`, `--threads N`, `--data DIR`,
//!   `--out DIR`; values that cannot work (0 epochs, a NaN learning rate, 10000 threads) are refused before
//!   anything starts.
//! - `--eval FILE`: load a checkpoint and report its test accuracy (another network's
//!   checkpoint is refused, naming the tensor and both shapes, or the first layer that differs;
//!   so is one that holds NaN or infinity).
//! - `--smoke`: a short run for CI (two epochs on a subset); exits non-zero unless the loss falls.
//! - `--images DIR`: train on your own images instead: `DIR/<class>/**/<image>` (classes are
//!   the sorted folder names, as torchvision's `ImageFolder`; at most 10), `DIR/train` and
//!   `DIR/val`, or a `path,label` list; `--val-fraction F` (default 0.1) of each class held out
//!   when there is no `val/`; `--skip-bad` to leave out (and list) files that will not decode;
//!   `--train-transforms`/`--val-transforms` as torchvision-style pipelines (default
//!   `resize(28); center_crop(28, 28)`, colour converted to grey as Pillow's `L`). The
//!   checkpoint records the class names and the validation transforms, which
//!   `cargo run --example predict -- --weights FILE image.png` uses.
//!
//! Nothing is reported saved that was not: `--out` is checked before training, a checkpoint or
//! plot that cannot be written ends the run with an error (exit 1) naming the file, and a run
//! that diverges stops, naming the epoch, without writing its NaN weights over the last good
//! checkpoint. Files are replaced atomically, so two runs with the same `--out` leave one
//! run's whole checkpoint.
//!
//! Data: `--data DIR` or else `$CNN_DATA` (only that directory), or else
//! `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`) or
//! `~/.cache/cnn/fashion-mnist`; downloaded only when none has it. The directory used is
//! printed.

#[path = "common/run.rs"]
mod run;

use clap::Parser;
use cnn::train::Schedule;
use run::{Defaults, Error, RunArgs};
use std::process::ExitCode;

#[path = "common/lenets.rs"]
mod lenets;

use lenets::{LeNet, LeNetModern};

#[derive(Parser, Debug)]
#[command(about = "Train d2l's LeNet on Fashion-MNIST")]
struct Args {
    /// ReLU and max pooling instead of d2l's sigmoid and average pooling (SGD lr 0.1 instead of
    /// d2l's 0.9).
    #[arg(long)]
    modern: bool,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    run::exit(start(&Args::parse()))
}

/// The run `args` ask for, once clap has checked each value.
fn start(args: &Args) -> Result<(), Error> {
    run::start_threads(&args.run)?;
    // d2l's constant learning rate (`--schedule cosine` anneals it)
    let d2l = |sgd_lr| Defaults {
        adam: false,
        sgd_lr,
        schedule: Schedule::Constant,
        // the same images as the IDX path sees, so that the two can be compared
        flip: false,
    };
    if args.modern {
        run::run::<LeNetModern>(&args.run, "lenet-modern", d2l(0.1))
    } else {
        run::run::<LeNet>(&args.run, "lenet-d2l", d2l(0.9))
    }
}

#[cfg(test)]
mod tests {
    //! The example as a user meets it, on a tiny data set: `start` is what `main` runs, and
    //! its error is what `main` prints (with `error: ` in front) before exiting with 1.

    use super::*;
    use clap::error::ErrorKind;

    use run::testing::{image_folder, tiny_data};

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("lenet").chain(list.iter().copied())).unwrap()
    }

    /// What `main` would print after `error: `.
    fn fails(list: &[&str]) -> String {
        cnn::error_chain(&*start(&args(list)).unwrap_err())
    }

    #[test]
    fn absurd_values_are_refused_before_anything_starts() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        for (flag, value, why) in [
            (
                "--epochs",
                "18446744073709551615",
                "must be a whole number from 1 to 100000",
            ),
            ("--epochs", "0", "must be a whole number from 1 to 100000"),
            ("--batch", "0", "must be a whole number from 1 to 60000"),
            ("--batch", "1000000", "(the training set's size)"),
            (
                "--threads",
                "10000",
                &format!("4 per core; this machine has {cores}"),
            ),
            ("--threads", "0", "must be a whole number from 1 to"),
            ("--lr", "nan", "must be a finite number above 0"),
            ("--lr", "inf", "must be a finite number above 0"),
            ("--lr", "-1", "must be a finite number above 0"),
            ("--lr", "0", "must be a finite number above 0"),
            (
                "--momentum",
                "1",
                "must be a number from 0 up to (not including) 1",
            ),
            (
                "--momentum",
                "-0.1",
                "must be a number from 0 up to (not including) 1",
            ),
            (
                "--momentum",
                "nan",
                "must be a number from 0 up to (not including) 1",
            ),
        ] {
            let err = Args::try_parse_from(["lenet", flag, value]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{flag} {value}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("invalid value '{value}' for '{flag}")) && msg.contains(why),
                "{flag} {value}: {msg}"
            );
        }
        assert_eq!(args(&["--lr", "0.5", "--threads", "1"]).run.lr, Some(0.5));
        assert_eq!(args(&["--momentum", "0.9"]).run.momentum, Some(0.9));
        // Momentum is SGD's: with Adam it would be ignored, so it is refused.
        let err = Args::try_parse_from(["lenet", "--adam", "--momentum", "0.9"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn an_out_that_cannot_be_written_is_refused_before_the_data_is_read() {
        let root = tempfile::tempdir().unwrap();
        // The data directory does not exist: the --out error must come first.
        let data = root.path().join("no-data");
        let data = data.to_str().unwrap();

        let file = root.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let out = file.to_str().unwrap();
        assert_eq!(
            fails(&["--out", out, "--data", data]),
            format!(
                "--out {out}: cannot write {out}/lenet-d2l.safetensors there, so the run would \
                 save nothing: {out} is not a directory"
            )
        );

        let taken = root.path().join("taken");
        std::fs::create_dir_all(taken.join("lenet-d2l.png")).unwrap();
        let out = taken.to_str().unwrap();
        assert_eq!(
            fails(&["--out", out, "--data", data]),
            format!(
                "--out {out}: cannot write {out}/lenet-d2l.png there, so the run would save \
                 nothing: {out}/lenet-d2l.png is a directory"
            )
        );

        // A place that takes no files, even from root.
        if cfg!(target_os = "linux") {
            let msg = fails(&["--out", "/proc/cnn-lenet", "--data", data]);
            assert!(
                msg.starts_with(
                    "--out /proc/cnn-lenet: cannot write /proc/cnn-lenet/lenet-d2l.safetensors \
                     there, so the run would save nothing: "
                ),
                "{msg}"
            );
        }
    }

    #[test]
    fn trains_saves_evaluates_and_refuses_a_checkpoint_holding_nan() {
        let data = tiny_data(&[4, 5]);
        let data = data.path().to_str().unwrap();
        let out = tempfile::tempdir().unwrap();
        let out_s = out.path().to_str().unwrap();
        start(&args(&[
            "--data", data, "--out", out_s, "--epochs", "2", "--batch", "2",
        ]))
        .unwrap();
        let ckpt = out.path().join("lenet-d2l.safetensors");
        assert!(out.path().join("lenet-d2l.png").is_file());
        let ckpt_s = ckpt.to_str().unwrap();
        start(&args(&["--data", data, "--eval", ckpt_s])).unwrap();

        // The checkpoint of a run that diverged (as dfdx's own save would have written it).
        let mut bytes = std::fs::read(&ckpt).unwrap();
        let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let w = file.tensor("3.weight").unwrap().data();
        let at = w.as_ptr() as usize - bytes.as_ptr() as usize + 4 * 7;
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&ckpt, bytes).unwrap();
        assert_eq!(
            fails(&["--data", data, "--eval", ckpt_s]),
            format!(
                "{ckpt_s} holds unusable weights: its tensor `3.weight` has 1 non-finite \
                 value (the first is NaN, at index 7)"
            )
        );
    }

    #[test]
    fn a_run_that_diverges_stops_and_keeps_the_last_good_checkpoint() {
        let data = tiny_data(&[4, 5]);
        let data = data.path().to_str().unwrap();
        let out = tempfile::tempdir().unwrap();
        let out_s = out.path().to_str().unwrap();
        let ckpt = out.path().join("lenet-d2l.safetensors");
        start(&args(&[
            "--data", data, "--out", out_s, "--epochs", "1", "--batch", "2",
        ]))
        .unwrap();
        let good = std::fs::read(&ckpt).unwrap();

        let msg = fails(&[
            "--data", data, "--out", out_s, "--epochs", "5", "--batch", "1", "--lr", "1e38",
        ]);
        assert!(
            msg.starts_with("epoch 1, batch ") || msg.starts_with("epoch 1: the model's tensor"),
            "{msg}"
        );
        assert!(
            msg.ends_with("so training stopped (the run diverged: try a lower learning rate)"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&ckpt).unwrap(), good);
    }

    #[test]
    fn a_label_out_of_range_is_named_with_its_file_and_index_before_training() {
        let data = tiny_data(&[4, 12]);
        let out = tempfile::tempdir().unwrap();
        let labels = data.path().join("t10k-labels-idx1-ubyte");
        let msg = fails(&[
            "--data",
            data.path().to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
        ]);
        assert_eq!(
            msg,
            format!(
                "{}: label 12 at index 1 is out of range: there are 10 classes, 0 to 9",
                labels.display()
            )
        );
        assert!(!out.path().join("lenet-d2l.safetensors").exists());
    }

    #[test]
    fn trains_on_an_image_folder_and_records_its_classes_and_transforms() {
        let data = image_folder(&["boot", "shirt", "sock"], 6);
        let dir = data.path().to_str().unwrap();
        let out = tempfile::tempdir().unwrap();
        let out_s = out.path().to_str().unwrap();
        start(&args(&[
            "--images", dir, "--out", out_s, "--epochs", "1", "--batch", "4", "--modern",
        ]))
        .unwrap();
        let ckpt = out.path().join("lenet-modern.safetensors");
        let meta = cnn::checkpoint::metadata(&ckpt).unwrap();
        assert_eq!(meta["cnn.classes"], "boot\nshirt\nsock");
        assert_eq!(
            meta["cnn.transforms"],
            "resize(28, bilinear); center_crop(28, 28)"
        );
        let ckpt_s = ckpt.to_str().unwrap();
        start(&args(&["--images", dir, "--eval", ckpt_s, "--modern"])).unwrap();

        // A file that is no image stops the run before training, naming it; --skip-bad goes on.
        std::fs::write(data.path().join("sock/notes.png"), b"not a picture").unwrap();
        let msg = fails(&["--images", dir, "--out", out_s, "--epochs", "1"]);
        assert!(
            msg.starts_with("1 of 16 image files cannot be used:"),
            "{msg}"
        );
        assert!(msg.contains("sock/notes.png: not an image"), "{msg}");
        start(&args(&[
            "--images",
            dir,
            "--out",
            out_s,
            "--epochs",
            "1",
            "--batch",
            "4",
            "--skip-bad",
        ]))
        .unwrap();
    }

    #[test]
    fn image_folders_the_network_cannot_take_are_refused() {
        let names: Vec<String> = (0..11).map(|i| format!("c{i:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let data = image_folder(&names, 2);
        let dir = data.path().to_str().unwrap();
        assert_eq!(
            fails(&["--images", dir]),
            format!(
                "{dir}: 11 classes, and the network has 10 outputs (change its last `linear(10)`)"
            )
        );
        let err = Args::try_parse_from(["lenet", "--images", dir, "--data", dir]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err = Args::try_parse_from(["lenet", "--train-transforms", "blur(2)"]).unwrap_err();
        assert!(
            err.to_string().contains("unknown transform `blur`"),
            "{err}"
        );
    }
}
