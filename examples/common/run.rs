//! What the training examples (`lenet`, `resnet`) share: the command line's common options and
//! their checks, the run itself (data, training, a checkpoint after every epoch, the plot, or
//! `--eval` of a checkpoint) and CI's smoke check. Each example includes it with
//! `#[path = "common/run.rs"] mod run;`.
//!
//! Nothing is reported saved that was not: `--out` is checked before training, a checkpoint or
//! plot that cannot be written ends the run with an error naming the file, and a run that
//! diverges stops, naming the epoch, without writing its NaN weights over the last good
//! checkpoint.

use cnn::data::images::{ImageFolder, ImageLoader, LoaderOptions, OnBad, Transforms};
use cnn::data::{CLASS_NAMES, Dataset, FashionMnist, Locator};
use cnn::prelude::*;
use cnn::train::{
    Batches, Classifier, Config, EpochStats, InMemory, Init, Progress, Schedule, Trainer,
    plot_history,
};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use dfdx::optim::Momentum;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Any error of a run; printed with its causes by [`cnn::error_chain`].
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The device: CUDA under `--features cuda`, else the CPU.
pub type Dev = AutoDevice;
/// A batch of Fashion-MNIST images.
pub type Images = SizedImages<28>;
/// A batch of Fashion-MNIST images resized to `SIDE x SIDE` ([`run_sized`]).
pub type SizedImages<const SIDE: usize> = (usize, Const<1>, Const<SIDE>, Const<SIDE>);

/// The options every training example takes (each adds its own with `#[command(flatten)]`).
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Adam (default lr 0.001), where the example trains with SGD by default.
    #[arg(long)]
    pub adam: bool,
    /// SGD, where the example trains with Adam by default.
    #[arg(long, conflicts_with = "adam")]
    pub sgd: bool,
    /// Passes over the training set (1 to 100000).
    #[arg(long, default_value_t = 10, value_parser = epochs)]
    pub epochs: usize,
    /// Images per mini-batch (1 to 60000, the training set's size).
    #[arg(long, default_value_t = 256, value_parser = batch)]
    pub batch: usize,
    /// Learning rate (default: the example's rate for SGD, 0.001 for Adam).
    #[arg(long, value_parser = learning_rate, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// SGD's momentum, PyTorch's `momentum` (from 0 up to, not including, 1; default none).
    #[arg(long, value_parser = momentum, conflicts_with = "adam", allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// The learning rate over the epochs: `constant`, or `cosine` annealing to 0 (PyTorch's
    /// `CosineAnnealingLR(T_max=epochs)`, stepped per epoch); default: the example's.
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Seed of the initial weights and of the shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: one per core; at most 4 per core).
    #[arg(long, value_parser = threads)]
    pub threads: Option<usize>,
    /// Folder with the four Fashion-MNIST (or MNIST) IDX files, plain or gzipped.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where the checkpoint and the plot go.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Evaluate this checkpoint on the test set instead of training.
    #[arg(long, value_name = "FILE")]
    pub eval: Option<PathBuf>,
    /// A short run for CI: two epochs on 12,000 training images; fails unless the loss falls.
    #[arg(long)]
    pub smoke: bool,
    /// Train on your own images instead of Fashion-MNIST: DIR/<class>/**/<image> (classes
    /// from the sorted folder names, as torchvision's ImageFolder), or DIR/train and DIR/val
    /// (or DIR/test) laid out so; or a `path,label` list file. At most 10 classes.
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    pub images: Option<PathBuf>,
    /// With --images and no train/ and val/: the fraction of each class held out for
    /// validation (seeded by --seed).
    #[arg(long, default_value_t = 0.1, value_parser = fraction)]
    pub val_fraction: f64,
    /// With --images: leave out images that cannot be decoded (counted, the first named)
    /// instead of stopping with an error.
    #[arg(long)]
    pub skip_bad: bool,
    /// With --images: the training transforms, as `resize(32); center_crop(28, 28);
    /// random_horizontal_flip` (default: the example's).
    #[arg(long, value_name = "PIPELINE", value_parser = transforms)]
    pub train_transforms: Option<Transforms>,
    /// With --images: the validation transforms, stored in the checkpoint for `predict`
    /// (default: `resize(S); center_crop(S, S)` for the network's side S).
    #[arg(long, value_name = "PIPELINE", value_parser = transforms)]
    pub val_transforms: Option<Transforms>,
}

/// `--val-fraction`: above 0 and below 1.
fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err("must be a number above 0 and below 1".to_string()),
    }
}

/// `--train-transforms`, `--val-transforms`: a pipeline that parses and checks.
fn transforms(s: &str) -> Result<Transforms, String> {
    s.parse()
        .map_err(|e: cnn::data::images::TransformError| e.to_string())
}

/// `--schedule`'s values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleArg {
    /// The same rate every epoch.
    Constant,
    /// Cosine annealing to 0 over the run.
    Cosine,
}

impl From<ScheduleArg> for Schedule {
    fn from(arg: ScheduleArg) -> Schedule {
        match arg {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Cosine => Schedule::Cosine,
        }
    }
}

/// What an example trains with where its flags do not say.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// Adam rather than SGD, unless `--sgd` or `--adam` says.
    pub adam: bool,
    /// SGD's learning rate when `--lr` is not given.
    pub sgd_lr: f64,
    /// The schedule when `--schedule` is not given.
    pub schedule: Schedule,
    /// With `--images`: mirror training images at random (off where the data should match
    /// Fashion-MNIST's IDX path exactly).
    pub flip: bool,
}

impl Defaults {
    /// Whether the run trains with Adam: the flags', else the example's choice. `--momentum`
    /// with Adam is refused (clap refuses it beside `--adam`; this catches it where Adam is
    /// the example's default).
    fn adam(&self, args: &RunArgs) -> Result<bool, Error> {
        let adam = match (args.adam, args.sgd) {
            (true, _) => true,
            (_, true) => false,
            _ => self.adam,
        };
        if adam && args.momentum.is_some() {
            return Err(
                "--momentum is SGD's, and this example trains with Adam by default: \
                        add --sgd"
                    .into(),
            );
        }
        Ok(adam)
    }
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

/// `--momentum`: a number from 0 up to (not including) 1; at 1 or above the velocity never
/// decays.
fn momentum(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if (0.0..1.0).contains(&m) => Ok(m),
        _ => Err("must be a number from 0 up to (not including) 1".to_string()),
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

pub fn to_batches<const SIDE: usize>(set: Dataset) -> Result<InMemory<SizedImages<SIDE>>, Error> {
    let labels = set.labels.iter().map(|&l| usize::from(l)).collect();
    Ok(InMemory::new(set.images, labels)?)
}

/// Trains `M` on Fashion-MNIST as `args` say (or evaluates a checkpoint with `--eval`), saving
/// `<out>/<name>.safetensors` after every epoch and `<out>/<name>.png` at the end; `defaults`
/// fill in what the flags leave open.
pub fn run<M>(args: &RunArgs, name: &str, defaults: Defaults) -> Result<(), Error>
where
    M: BuildOnDevice<Dev, f32>,
    M::Built: Classifier<Images, f32, Dev, 10>
        + SaveToSafetensors<f32, Dev>
        + LoadFromSafetensors<f32, Dev>
        + Network,
{
    run_sized::<M, 28>(args, name, defaults)
}

/// [`run`] on the images resized to `SIDE x SIDE` first (bilinear, as d2l's
/// `load_data_fashion_mnist(resize=SIDE)` does with torchvision: `Dataset::resized`).
pub fn run_sized<M, const SIDE: usize>(
    args: &RunArgs,
    name: &str,
    defaults: Defaults,
) -> Result<(), Error>
where
    M: BuildOnDevice<Dev, f32>,
    M::Built: Classifier<SizedImages<SIDE>, f32, Dev, 10>
        + SaveToSafetensors<f32, Dev>
        + LoadFromSafetensors<f32, Dev>
        + Network,
{
    // Before anything starts: options that contradict each other are refused.
    let adam = defaults.adam(args)?;
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
    if let Some(dir) = &args.images {
        let (train, val) = image_loaders::<SIDE>(args, defaults, dir)?;
        if let Some(path) = &args.eval {
            let acc = cnn::train::evaluate(&dev, &model, &val, args.batch)?;
            println!("{}: validation acc {acc:.3}", path.display());
            return Ok(());
        }
        // What `predict` needs to use the weights: the class names and the preprocessing.
        let extra = [
            ("cnn.classes", val.classes().join("\n")),
            ("cnn.transforms", val.transforms().to_string()),
        ];
        let files = Files {
            checkpoint: &checkpoint,
            plot: &plot,
            extra: &extra,
        };
        // How long each epoch's training steps waited for the loader: ~0 when it keeps up.
        let waited = || {
            println!(
                "  loader: the training step waited {:.2} s for batches",
                train.waited().as_secs_f64()
            )
        };
        fit::<M, _, _>(
            args, defaults, adam, &dev, &mut model, &train, &val, files, waited,
        )?;
        let skipped = [train.skipped(), val.skipped()].concat();
        if !skipped.is_empty() {
            println!("{}", cnn::data::images::skipped_report(&skipped));
        }
        return Ok(());
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
    if SIDE != data.test.rows {
        let start = std::time::Instant::now();
        data.train = data.train.resized(SIDE, SIDE);
        data.test = data.test.resized(SIDE, SIDE);
        println!(
            "data: resized to {SIDE}x{SIDE} in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let test = to_batches::<SIDE>(data.test)?;

    if let Some(path) = &args.eval {
        let acc = cnn::train::evaluate(&dev, &model, &test, args.batch)?;
        println!("{}: test acc {acc:.3}", path.display());
        return Ok(());
    }

    let train = to_batches::<SIDE>(data.train)?.shuffled(args.seed);
    // `predict` can classify image files with these weights: Fashion-MNIST's classes, and
    // the images brought to the network's size as `Dataset::resized` brings them.
    let extra = [
        ("cnn.classes", CLASS_NAMES.join("\n")),
        ("cnn.transforms", format!("resize({SIDE}, {SIDE})")),
    ];
    let files = Files {
        checkpoint: &checkpoint,
        plot: &plot,
        extra: &extra,
    };
    fit::<M, _, _>(
        args,
        defaults,
        adam,
        &dev,
        &mut model,
        &train,
        &test,
        files,
        || {},
    )
}

/// Where a run's results go, and what its checkpoint records beside the weights.
pub struct Files<'a> {
    /// The weights, saved after every epoch.
    pub checkpoint: &'a Path,
    /// The curves, drawn at the end.
    pub plot: &'a Path,
    /// Metadata for the checkpoint (class names, transforms).
    pub extra: &'a [(&'a str, String)],
}

/// The training sets of `--images`: a loader for training (its transforms, shuffled,
/// `drop_last`) and one for validation, the folder's headers checked first.
fn image_loaders<const SIDE: usize>(
    args: &RunArgs,
    defaults: Defaults,
    dir: &Path,
) -> Result<(ImageLoader<1, SIDE, SIDE>, ImageLoader<1, SIDE, SIDE>), Error> {
    let (mut train, mut val) = if dir.is_file() {
        ImageFolder::from_csv(dir)?.split(args.val_fraction, args.seed)
    } else {
        ImageFolder::train_val(dir, args.val_fraction, args.seed)?
    };
    if train.classes.len() > 10 {
        return Err(format!(
            "{}: {} classes, and the network has 10 outputs (change its last `linear(10)`)",
            dir.display(),
            train.classes.len()
        )
        .into());
    }
    let on_bad = if args.skip_bad {
        OnBad::Skip
    } else {
        OnBad::Error
    };
    let start = std::time::Instant::now();
    let mut skipped = train.check(None, on_bad)?;
    skipped.extend(val.check(None, on_bad)?);
    println!(
        "data: {} ({} classes: {}; {} training and {} validation images, headers read in \
         {:.1} s)",
        dir.display(),
        train.classes.len(),
        train.classes.join(", "),
        train.len(),
        val.len(),
        start.elapsed().as_secs_f64()
    );
    if !skipped.is_empty() {
        println!("{}", cnn::data::images::skipped_report(&skipped));
    }
    let plain = format!("resize({SIDE}); center_crop({SIDE}, {SIDE})");
    let val_t = match &args.val_transforms {
        Some(t) => t.clone(),
        None => plain.parse()?,
    };
    let train_t = match (&args.train_transforms, defaults.flip) {
        (Some(t), _) => t.clone(),
        (None, true) => format!("{plain}; random_horizontal_flip").parse()?,
        (None, false) => plain.parse()?,
    };
    let opts = LoaderOptions {
        seed: args.seed,
        on_bad,
        ..LoaderOptions::default()
    };
    let eval = LoaderOptions {
        on_bad,
        ..LoaderOptions::evaluation()
    };
    Ok((
        ImageLoader::new(train, train_t, opts)?,
        ImageLoader::new(val, val_t, eval)?,
    ))
}

/// Trains `model` on `train`, evaluating on `test`, as `args` and `defaults` say: saves the
/// checkpoint after every epoch and the plot at the end, and prints the summary.
#[allow(clippy::too_many_arguments)]
fn fit<M, Tr, Te>(
    args: &RunArgs,
    defaults: Defaults,
    adam: bool,
    dev: &Dev,
    model: &mut M::Built,
    train: &Tr,
    test: &Te,
    files: Files<'_>,
    after_epoch: impl Fn(),
) -> Result<(), Error>
where
    M: BuildOnDevice<Dev, f32>,
    Tr: Batches<f32>,
    Te: Batches<f32, Shape = Tr::Shape>,
    M::Built: Classifier<Tr::Shape, f32, Dev, 10> + SaveToSafetensors<f32, Dev> + Network,
{
    let epochs = if args.smoke { 2 } else { args.epochs };
    let config = Config {
        epochs,
        batch_size: args.batch,
        progress: Progress::Auto,
        init: Init::XavierUniform { seed: args.seed },
        schedule: args.schedule.map_or(defaults.schedule, Schedule::from),
    };
    let trainer = Trainer::new(dev.clone(), config);
    // Saved after every epoch, so an interrupted run keeps its last complete epoch; a save
    // that fails stops the run (the trainer never passes on weights that diverged).
    let save = |_: &EpochStats, m: &M::Built| -> Result<(), Error> {
        after_epoch();
        cnn::checkpoint::save_network_with(m, files.checkpoint, files.extra)?;
        Ok(())
    };
    let history = match (adam, args.lr) {
        (true, lr) => {
            let cfg = AdamConfig {
                lr: lr.unwrap_or(1e-3),
                ..Default::default()
            };
            let mut opt = Adam::new(&*model, cfg);
            trainer.fit_with(model, &mut opt, train, test, save)?
        }
        (false, lr) => {
            let lr = lr.unwrap_or(defaults.sgd_lr);
            let cfg = SgdConfig {
                lr,
                momentum: args.momentum.filter(|&m| m > 0.0).map(Momentum::Classic),
                weight_decay: None,
            };
            let mut opt = Sgd::new(&*model, cfg);
            trainer.fit_with(model, &mut opt, train, test, save)?
        }
    };
    plot_history(&history, files.plot)?;
    let last = history.last().expect("at least one epoch");
    let seconds: f64 = history.iter().map(|s| s.seconds).sum();
    println!(
        "weights: {}\nplot: {}",
        files.checkpoint.display(),
        files.plot.display()
    );
    println!(
        "{epochs} epochs in {seconds:.1} s, {:.0} images/s",
        last.images_per_s
    );
    println!("{last}");
    if args.smoke {
        smoke_check(&history, files.checkpoint)?;
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

/// Starts `--threads` worker threads (else one per core), and keeps freed memory mapped for
/// the next step ([`cnn::retain_freed_memory`]).
pub fn start_threads(args: &RunArgs) -> Result<(), Error> {
    cnn::retain_freed_memory();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("cannot start {n} threads: {e}"))?;
    }
    Ok(())
}

/// What `main` returns for a run's result, printing an error with its causes.
pub fn exit(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cnn::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// What the examples' tests share.
#[cfg(test)]
pub mod testing {
    /// An IDX file of unsigned bytes.
    pub fn idx(dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    /// A Fashion-MNIST of 4 training and 2 test images (labels `i % 10`, or `labels`), in a
    /// fresh directory.
    pub fn tiny_data(test_labels: &[u8]) -> tempfile::TempDir {
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

    /// A folder of 28x28 PNGs, `per_class` for each of `classes` classes, in a fresh
    /// directory.
    pub fn image_folder(classes: &[&str], per_class: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (k, class) in classes.iter().enumerate() {
            std::fs::create_dir_all(dir.path().join(class)).unwrap();
            for i in 0..per_class {
                image::GrayImage::from_fn(28, 28, |x, y| {
                    image::Luma([((x + y * 3 + i) as u8).wrapping_mul(k as u8 + 1)])
                })
                .save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
            }
        }
        dir
    }
}
