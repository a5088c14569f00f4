//! d2l 6.6, end to end: LeNet trained on Fashion-MNIST, the project's main job.
//!
//! Run: `cargo run --release --example lenet` — d2l's settings (sigmoid, average pooling, SGD
//! lr 0.9, batch 256, 10 epochs, Xavier init). It prints the network's summary, one line per
//! epoch, and ends with `loss L, train acc A, test acc T`; it saves the weights
//! (`runs/lenet-d2l.safetensors`) and a plot of the curves (`runs/lenet-d2l.png`).
//!
//! - `--modern`: ReLU and max pooling (add `--adam`, or keep SGD with `--lr 0.1`: at lr 0.9 it
//!   diverges, in PyTorch too).
//! - `--epochs N`, `--batch N`, `--lr X`, `--seed N`, `--threads N`, `--data DIR`, `--out DIR`;
//!   values that cannot work (0 epochs, a NaN learning rate, 10000 threads) are refused before
//!   anything starts.
//! - `--eval FILE`: load a checkpoint and report its test accuracy (another network's
//!   checkpoint is refused, naming the tensor and both shapes, or the first layer that differs;
//!   so is one that holds NaN or infinity).
//! - `--smoke`: a short run for CI (two epochs on a subset); exits non-zero unless the loss falls.
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

use clap::Parser;
use cnn::data::{Dataset, FashionMnist, Locator};
use cnn::prelude::*;
use cnn::train::{Classifier, Config, EpochStats, InMemory, Init, Progress, Trainer, plot_history};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Any error of a run; printed with its causes by [`cnn::error_chain`].
type Error = Box<dyn std::error::Error + Send + Sync>;

cnn! {
    /// d2l's LeNet (6.6): sigmoid activations and average pooling.
    // Trained on images only, never placed after another network: skip the input's gradient.
    #[cnn(input_grad = false)]
    pub struct LeNet: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }

    /// LeNet as it would be written today: ReLU and max pooling.
    // Trained on images only, never placed after another network: skip the input's gradient.
    #[cnn(input_grad = false)]
    pub struct LeNetModern: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), relu,
        max_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), relu,
        max_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), relu,
        linear(84), relu,
        linear(10),
    }
}

/// The device: CUDA under `--features cuda`, else the CPU.
type Dev = AutoDevice;
/// A batch of Fashion-MNIST images.
type Images = (usize, Const<1>, Const<28>, Const<28>);

#[derive(Parser, Debug)]
#[command(about = "Train d2l's LeNet on Fashion-MNIST")]
struct Args {
    /// ReLU and max pooling instead of d2l's sigmoid and average pooling.
    #[arg(long)]
    modern: bool,
    /// Adam (default lr 0.001) instead of SGD.
    #[arg(long)]
    adam: bool,
    /// Passes over the training set (1 to 100000).
    #[arg(long, default_value_t = 10, value_parser = epochs)]
    epochs: usize,
    /// Images per mini-batch (1 to 60000, the training set's size).
    #[arg(long, default_value_t = 256, value_parser = batch)]
    batch: usize,
    /// Learning rate (default: 0.9 for SGD as in d2l, 0.1 for SGD with --modern, 0.001 for Adam).
    #[arg(long, value_parser = learning_rate, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Seed of the initial weights and of the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: one per core; at most 4 per core).
    #[arg(long, value_parser = threads)]
    threads: Option<usize>,
    /// Folder with the four Fashion-MNIST (or MNIST) IDX files, plain or gzipped.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where the checkpoint and the plot go.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Evaluate this checkpoint on the test set instead of training.
    #[arg(long, value_name = "FILE")]
    eval: Option<PathBuf>,
    /// A short run for CI: two epochs on 12,000 training images; fails unless the loss falls.
    #[arg(long)]
    smoke: bool,
}

/// The most epochs a run may ask for: at about 3 s an epoch, some 3 days of training. More is a
/// typo, not a plan.
const MAX_EPOCHS: usize = 100_000;
/// The largest batch: the whole training set. A larger one is the same batch, with a number
/// that says something else.
const MAX_BATCH: usize = 60_000;
/// Threads per core beyond which more only add switching (the kernels are compute-bound).
const THREADS_PER_CORE: usize = 4;

/// `--epochs`: a count from 1 to [`MAX_EPOCHS`].
fn epochs(s: &str) -> Result<usize, String> {
    count(s, MAX_EPOCHS, "")
}

/// `--batch`: a count from 1 to [`MAX_BATCH`].
fn batch(s: &str) -> Result<usize, String> {
    count(s, MAX_BATCH, " (the training set's size)")
}

/// `--threads`: from 1 to [`THREADS_PER_CORE`] per core of this machine.
fn threads(s: &str) -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    count(
        s,
        THREADS_PER_CORE * cores,
        &format!(" ({THREADS_PER_CORE} per core; this machine has {cores})"),
    )
}

/// A whole number from 1 to `max`; `why` explains the maximum.
fn count(s: &str, max: usize, why: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {max}{why}")),
    }
}

/// `--lr`: a finite number above 0 (NaN or infinity would make every weight NaN at once, and a
/// rate of 0 or below does not descend).
fn learning_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(lr) if lr.is_finite() && lr > 0.0 => Ok(lr),
        _ => Err("must be a finite number above 0".to_string()),
    }
}

fn main() -> ExitCode {
    match start(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cnn::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// The run `args` ask for, once clap has checked each value.
fn start(args: &Args) -> Result<(), Error> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("cannot start {n} threads: {e}"))?;
    }
    if args.modern {
        run::<LeNetModern>(args, "lenet-modern")
    } else {
        run::<LeNet>(args, "lenet-d2l")
    }
}

/// `--out` cannot take one of the run's files.
#[derive(Debug, thiserror::Error)]
#[error(
    "--out {}: cannot write {} there, so the run would save nothing",
    .out.display(),
    .path.display()
)]
struct Unwritable {
    out: PathBuf,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn to_batches(set: Dataset) -> Result<InMemory<Images>, Error> {
    let labels = set.labels.iter().map(|&l| usize::from(l)).collect();
    Ok(InMemory::new(set.images, labels)?)
}

fn run<M>(args: &Args, name: &str) -> Result<(), Error>
where
    M: BuildOnDevice<Dev, f32>,
    M::Built: Classifier<Images, f32, Dev, 10>
        + SaveToSafetensors<f32, Dev>
        + LoadFromSafetensors<f32, Dev>
        + Network,
{
    let dev = Dev::seed_from_u64(args.seed);
    println!(
        "device: {}",
        if cfg!(feature = "cuda") {
            "CUDA"
        } else {
            "CPU"
        }
    );
    println!("{}", <M::Built as Network>::SUMMARY);
    let checkpoint = args.out.join(format!("{name}.safetensors"));
    let plot = args.out.join(format!("{name}.png"));
    if args.eval.is_none() {
        // Before the data is read or an epoch trained: a run whose results cannot be saved is
        // refused now, not after hours of training.
        for path in [&checkpoint, &plot] {
            cnn::atomic::check_writable(path).map_err(|source| Unwritable {
                out: args.out.clone(),
                path: path.clone(),
                source,
            })?;
        }
    }
    let mut model = dev.build_module::<M, f32>();
    if let Some(path) = &args.eval {
        // Before the data is read: a checkpoint that cannot be used is refused at once.
        cnn::checkpoint::load_network(&mut model, path)?;
    }
    let locator = Locator::from_env(args.data.as_deref());
    let dir = locator.locate_or_download()?;
    match locator.named_by {
        "" => println!("data: {}", dir.display()),
        by => println!("data: {} (named by {by})", dir.display()),
    }
    let mut data = FashionMnist::load(&dir)?;
    if args.smoke {
        data.train = data.train.subset(12_000);
        data.test = data.test.subset(2_000);
    }
    let test = to_batches(data.test)?;

    if let Some(path) = &args.eval {
        let acc = cnn::train::evaluate(&dev, &model, &test, args.batch)?;
        println!("{}: test acc {acc:.3}", path.display());
        return Ok(());
    }

    let train = to_batches(data.train)?.shuffled(args.seed);
    let epochs = if args.smoke { 2 } else { args.epochs };
    let config = Config {
        epochs,
        batch_size: args.batch,
        progress: Progress::Auto,
        init: Init::XavierUniform { seed: args.seed },
    };
    let trainer = Trainer::new(dev.clone(), config);
    // Saved after every epoch, so an interrupted run keeps its last complete epoch; a save
    // that fails stops the run (the trainer never passes on weights that diverged).
    let save = |_: &EpochStats, m: &M::Built| -> Result<(), Error> {
        cnn::checkpoint::save_network(m, &checkpoint)?;
        Ok(())
    };
    let history = match (args.adam, args.lr) {
        (true, lr) => {
            let cfg = AdamConfig {
                lr: lr.unwrap_or(1e-3),
                ..Default::default()
            };
            let mut opt = Adam::new(&model, cfg);
            trainer.fit_with(&mut model, &mut opt, &train, &test, save)?
        }
        (false, lr) => {
            let lr = lr.unwrap_or(if args.modern { 0.1 } else { 0.9 });
            let cfg = SgdConfig {
                lr,
                momentum: None,
                weight_decay: None,
            };
            let mut opt = Sgd::new(&model, cfg);
            trainer.fit_with(&mut model, &mut opt, &train, &test, save)?
        }
    };
    plot_history(&history, &plot)?;
    let last = history.last().expect("at least one epoch");
    let seconds: f64 = history.iter().map(|s| s.seconds).sum();
    println!(
        "weights: {}\nplot: {}",
        checkpoint.display(),
        plot.display()
    );
    println!(
        "{epochs} epochs in {seconds:.1} s, {:.0} images/s",
        last.images_per_s
    );
    println!("{last}");
    if args.smoke {
        smoke_check(&history, &checkpoint)?;
    }
    Ok(())
}

/// CI's check: the loss fell from the first epoch to the second, and the checkpoint exists.
fn smoke_check(history: &[EpochStats], checkpoint: &Path) -> Result<(), String> {
    let (first, second) = (history[0].loss, history[1].loss);
    // (written so that a NaN loss fails too)
    if second.partial_cmp(&first) != Some(std::cmp::Ordering::Less) {
        return Err(format!(
            "smoke: the loss did not fall ({first:.4} then {second:.4})"
        ));
    }
    if !checkpoint.is_file() {
        return Err(format!("smoke: no checkpoint at {}", checkpoint.display()));
    }
    println!("smoke: ok, the loss fell from {first:.4} to {second:.4}");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The example as a user meets it, on a tiny data set: `start` is what `main` runs, and
    //! its error is what `main` prints (with `error: ` in front) before exiting with 1.

    use super::*;
    use clap::error::ErrorKind;

    /// An IDX file of unsigned bytes.
    fn idx(dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    /// A Fashion-MNIST of 4 training and 2 test images (labels `i % 10`, or `labels`), in a
    /// fresh directory.
    fn tiny_data(test_labels: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let images = |n: u32| {
            let px: Vec<u8> = (0..n * 784).map(|k| (k % 251) as u8).collect();
            idx(&[n, 28, 28], &px)
        };
        let n = test_labels.len() as u32;
        for (name, bytes) in [
            ("train-images-idx3-ubyte", images(4)),
            ("train-labels-idx1-ubyte", idx(&[4], &[0, 1, 2, 3])),
            ("t10k-images-idx3-ubyte", images(n)),
            ("t10k-labels-idx1-ubyte", idx(&[n], test_labels)),
        ] {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

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
        ] {
            let err = Args::try_parse_from(["lenet", flag, value]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{flag} {value}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("invalid value '{value}' for '{flag}")) && msg.contains(why),
                "{flag} {value}: {msg}"
            );
        }
        assert_eq!(args(&["--lr", "0.5", "--threads", "1"]).lr, Some(0.5));
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
        let w = file.tensor("conv2.weight").unwrap().data();
        let at = w.as_ptr() as usize - bytes.as_ptr() as usize + 4 * 7;
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&ckpt, bytes).unwrap();
        assert_eq!(
            fails(&["--data", data, "--eval", ckpt_s]),
            format!(
                "{ckpt_s} holds unusable weights: its tensor `conv2.weight` has 1 non-finite \
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
}
