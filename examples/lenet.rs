//! d2l 6.6, end to end: LeNet trained on Fashion-MNIST, the project's main job.
//!
//! Run: `cargo run --release --example lenet` — d2l's settings (sigmoid, average pooling, SGD
//! lr 0.9, batch 256, 10 epochs, Xavier init). It prints the network's summary, one line per
//! epoch, and ends with `loss L, train acc A, test acc T`; it saves the weights
//! (`runs/lenet-d2l.safetensors`) and a plot of the curves (`runs/lenet-d2l.png`).
//!
//! - `--modern`: ReLU and max pooling (add `--adam`, or keep SGD with `--lr 0.1`: at lr 0.9 it
//!   diverges, in PyTorch too).
//! - `--epochs N`, `--batch N`, `--lr X`, `--seed N`, `--threads N`, `--data DIR`, `--out DIR`.
//! - `--eval FILE`: load a checkpoint and report its test accuracy (another network's
//!   checkpoint is refused, naming the tensor and both shapes, or the first layer that differs).
//! - `--smoke`: a short run for CI (two epochs on a subset); exits non-zero unless the loss falls.
//!
//! Data: `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`), `--data`,
//! `$CNN_DATA` or `~/.cache/cnn/fashion-mnist`; downloaded only when none has it.

use clap::Parser;
use cnn::data::{Dataset, FashionMnist};
use cnn::prelude::*;
use cnn::train::{Classifier, Config, EpochStats, InMemory, Init, Progress, Trainer, plot_history};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per mini-batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Learning rate (default: 0.9 for SGD as in d2l, 0.1 for SGD with --modern, 0.001 for Adam).
    #[arg(long)]
    lr: Option<f64>,
    /// Seed of the initial weights and of the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
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

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(n) = args.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            eprintln!("error: cannot start {n} threads: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = if args.modern {
        run::<LeNetModern>(&args, "lenet-modern")
    } else {
        run::<LeNet>(&args, "lenet-d2l")
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn to_batches(set: Dataset) -> Result<InMemory<Images>, Box<dyn std::error::Error>> {
    let labels = set.labels.iter().map(|&l| usize::from(l)).collect();
    Ok(InMemory::new(set.images, labels)?)
}

fn run<M>(args: &Args, name: &str) -> Result<(), Box<dyn std::error::Error>>
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
    let mut data = FashionMnist::locate_or_download(args.data.as_deref())?;
    if args.smoke {
        data.train = data.train.subset(12_000);
        data.test = data.test.subset(2_000);
    }
    let test = to_batches(data.test)?;
    let mut model = dev.build_module::<M, f32>();

    if let Some(path) = &args.eval {
        cnn::checkpoint::load_network(&mut model, path)?;
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
    let checkpoint = args.out.join(format!("{name}.safetensors"));
    // Saved after every epoch, so an interrupted run keeps its last complete epoch; a save
    // that fails stops the run.
    let save = |_: &EpochStats, m: &M::Built| -> Result<(), cnn::train::BoxError> {
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
    let plot = args.out.join(format!("{name}.png"));
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
