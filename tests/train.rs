//! The training loop on plain dfdx models and synthetic data: it learns, it measures what it
//! claims, it rejects bad input with errors, and its initialiser and plot do what they say.

use cnn::train::{
    Batch, Batches, Config, EpochStats, InMemory, Init, LearningRate, Progress, Schedule,
    TrainError, Trainer, evaluate, plot_history, xavier_uniform_,
};
use dfdx::nn::tensor_collection::{ModuleVisitor, TensorCollection, TensorOptions};
use dfdx::nn::{Module, NonMutableModule, ZeroSizedModule};
use dfdx::optim::{Adam, Sgd};
use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

const CLASSES: usize = 10;

/// `n` examples of `dim` features from 2 Gaussian blobs per class (σ = 0.5). The centres depend
/// only on `dim`, so a train and a test set drawn with different `seed`s share them.
fn blobs(dim: usize, n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut centres_rng = StdRng::seed_from_u64(dim as u64);
    // centres: (CLASSES * 2, dim), uniform in [-2, 2]
    let centres: Vec<f32> = (0..CLASSES * 2 * dim)
        .map(|_| centres_rng.gen_range(-2.0..2.0))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::with_capacity(n * dim), Vec::with_capacity(n));
    for _ in 0..n {
        let blob = rng.gen_range(0..CLASSES * 2);
        let centre = &centres[blob * dim..(blob + 1) * dim];
        x.extend(centre.iter().map(|c| {
            let noise: f32 = rng.sample(StandardNormal);
            c + 0.5 * noise
        }));
        y.push(blob / 2);
    }
    (x, y)
}

fn quiet(epochs: usize, batch_size: usize) -> Config {
    Config {
        epochs,
        batch_size,
        progress: Progress::Quiet,
        init: Init::Keep,
        schedule: Schedule::Constant,
    }
}

#[test]
fn sgd_on_gaussian_blobs_lowers_the_loss_and_separates_the_classes() {
    let dev = Cpu::seed_from_u64(0);
    let (x, y) = blobs(20, 2000, 1);
    let train = InMemory::<(usize, Const<20>)>::new(x, y)
        .unwrap()
        .shuffled(7);
    let (x, y) = blobs(20, 500, 2);
    let test = InMemory::<(usize, Const<20>)>::new(x, y).unwrap();

    let mut model = dev.build_module::<(Linear<20, 32>, ReLU, Linear<32, 10>), f32>();
    let mut opt = Sgd::new(
        &model,
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    );
    let trainer = Trainer::new(dev, quiet(2, 32));
    let mut seen_by_callback = Vec::new();
    let history = trainer
        .fit_with(&mut model, &mut opt, &train, &test, |stats, _model| {
            seen_by_callback.push(*stats);
            Ok(())
        })
        .unwrap();

    assert_eq!(history, seen_by_callback);
    assert_eq!(history.iter().map(|s| s.epoch).collect::<Vec<_>>(), [1, 2]);
    let (first, last) = (history[0], history[1]);
    // chance level is ln(10) = 2.30 and accuracy 0.1
    assert!(first.loss < 2.3, "{first}");
    assert!(last.loss < first.loss, "{first} then {last}");
    assert!(last.train_acc > 0.9, "{last}");
    assert!(last.test_acc > 0.9, "{last}");
    assert!(last.images_per_s > 0.0 && last.seconds > 0.0);
    // test_acc is evaluate() on the model after the last epoch
    assert_eq!(trainer.evaluate(&model, &test).unwrap(), last.test_acc);
}

#[test]
fn adam_trains_an_mlp_on_784_features() {
    let dev = Cpu::seed_from_u64(0);
    let (x, y) = blobs(784, 600, 3);
    let train = InMemory::<(usize, Const<784>)>::new(x, y).unwrap();
    let (x, y) = blobs(784, 200, 4);
    let test = InMemory::<(usize, Const<784>)>::new(x, y).unwrap();

    let mut model = dev.build_module::<(Linear<784, 32>, ReLU, Linear<32, 10>), f32>();
    let mut opt = Adam::new(
        &model,
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    );
    let history = Trainer::new(
        dev,
        Config {
            init: Init::XavierUniform { seed: 0 },
            ..quiet(1, 64)
        },
    )
    .fit(&mut model, &mut opt, &train, &test)
    .unwrap();
    assert!(history[0].test_acc > 0.9, "{}", history[0]);
}

/// Flattens `(batch, 1, 4, 4)` images to `(batch, 16)`: dfdx's `Flatten2D` needs nightly.
#[derive(Debug, Default, Clone, Copy)]
struct Flatten1x4x4;
impl ZeroSizedModule for Flatten1x4x4 {}
impl NonMutableModule for Flatten1x4x4 {}
impl<E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(usize, Const<1>, Const<4>, Const<4>), E, D, T>> for Flatten1x4x4
{
    type Output = Tensor<(usize, Const<16>), E, D, T>;
    type Error = D::Err;

    fn try_forward(
        &self,
        x: Tensor<(usize, Const<1>, Const<4>, Const<4>), E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        let batch = x.shape().0;
        x.try_reshape_like(&(batch, Const))
    }
}

#[test]
fn the_same_loop_trains_on_image_shaped_batches() {
    let dev = Cpu::seed_from_u64(0);
    // a 4x4 image is 16 features; the loop reshapes each batch to (batch, 1, 4, 4)
    let (x, y) = blobs(16, 1000, 5);
    let train = InMemory::<(usize, Const<1>, Const<4>, Const<4>)>::new(x, y).unwrap();
    let (x, y) = blobs(16, 200, 6);
    let test = InMemory::<(usize, Const<1>, Const<4>, Const<4>)>::new(x, y).unwrap();

    let mut model = (
        Flatten1x4x4,
        dev.build_module::<(Linear<16, 32>, ReLU, Linear<32, 10>), f32>(),
    );
    let mut opt = Sgd::new(
        &model,
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    );
    let history = Trainer::new(dev, quiet(3, 32))
        .fit(&mut model, &mut opt, &train, &test)
        .unwrap();
    assert!(history[2].test_acc > 0.8, "{}", history[2]);
}

/// A cosine schedule over 2 epochs trains the first at the optimizer's rate and the second at
/// half of it: the same weights as two one-epoch runs at those rates (plain SGD keeps no state,
/// and unshuffled data gives every epoch the same batches). The optimizer gets its rate back.
#[test]
fn a_cosine_schedule_sets_each_epochs_rate_and_restores_the_optimizers() {
    let dev = Cpu::seed_from_u64(0);
    let (x, y) = blobs(20, 300, 8);
    let data = InMemory::<(usize, Const<20>)>::new(x, y).unwrap();
    let start = dev.build_module::<(Linear<20, 16>, ReLU, Linear<16, 10>), f32>();
    let sgd = |lr| SgdConfig {
        lr,
        ..Default::default()
    };

    let mut scheduled = start.clone();
    let mut opt = Sgd::new(&scheduled, sgd(0.2));
    let config = Config {
        schedule: Schedule::Cosine,
        ..quiet(2, 32)
    };
    let history = Trainer::new(dev.clone(), config)
        .fit(&mut scheduled, &mut opt, &data, &data)
        .unwrap();
    assert_eq!(opt.learning_rate(), 0.2);
    let rates: Vec<f64> = history.iter().map(|s| s.lr).collect();
    assert_eq!(rates[0], 0.2);
    assert!((rates[1] - 0.1).abs() < 1e-15, "{rates:?}");

    let mut by_hand = start.clone();
    for lr in [0.2, 0.1] {
        let mut opt = Sgd::new(&by_hand, sgd(lr));
        Trainer::new(dev.clone(), quiet(1, 32))
            .fit(&mut by_hand, &mut opt, &data, &data)
            .unwrap();
    }
    let mut at_full_rate = start.clone();
    let mut opt = Sgd::new(&at_full_rate, sgd(0.2));
    Trainer::new(dev.clone(), quiet(2, 32))
        .fit(&mut at_full_rate, &mut opt, &data, &data)
        .unwrap();

    type Mlp = (
        dfdx::nn::modules::Linear<20, 16, f32, Cpu>,
        ReLU,
        dfdx::nn::modules::Linear<16, 10, f32, Cpu>,
    );
    let weights = |m: &Mlp| [m.0.weight.as_vec(), m.2.weight.as_vec(), m.2.bias.as_vec()].concat();
    assert_eq!(weights(&scheduled), weights(&by_hand));
    // and the second epoch's rate made a difference
    let moved = weights(&scheduled)
        .iter()
        .zip(weights(&at_full_rate))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        moved > 1e-4,
        "constant and cosine runs differ by only {moved}"
    );
}

#[test]
fn evaluate_agrees_with_a_hand_computed_accuracy() {
    let dev = Cpu::default();
    let mut model = dev.build_module::<Linear<2, 3>, f32>();
    // logits = (x0, x1, x0 + x1): class 2 wins when both features are positive
    model.weight = dev.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]);
    model.bias = dev.zeros();
    let x = vec![
        5.0, -1.0, // logits (5, -1, 4): 0
        -1.0, 5.0, // (-1, 5, 4): 1
        1.0, 1.0, // (1, 1, 2): 2
        3.0, 2.0, // (3, 2, 5): 2
        -1.0, -2.0, // (-1, -2, -3): 0
    ];
    let labels = vec![0, 1, 2, 0, 1]; // the last two are wrong
    let data = InMemory::<(usize, Const<2>)>::new(x, labels).unwrap();
    // batch sizes that split the data evenly, unevenly, and not at all
    for batch_size in [1, 2, 5, 100] {
        assert_eq!(evaluate(&dev, &model, &data, batch_size).unwrap(), 0.6);
    }
}

/// Batches given verbatim, to feed the loop inconsistent ones.
struct Given(Vec<Batch>);
impl Batches for Given {
    type Shape = (usize, Const<2>);
    fn num_examples(&self) -> usize {
        self.0.iter().map(|b| b.y.len()).sum()
    }
    fn batches(&self, _epoch: usize, _batch_size: usize) -> impl Iterator<Item = Batch> {
        self.0.iter().cloned()
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dev = Cpu::default();
    let model = dev.build_module::<Linear<2, 3>, f32>();
    let good = Batch {
        x: vec![0.0; 4],
        y: vec![0, 1],
    };
    let short = Given(vec![
        good.clone(),
        Batch {
            x: vec![0.0; 3],
            y: vec![0, 1],
        },
    ]);
    let err = evaluate(&dev, &model, &short, 2).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::BatchSize {
                batch: 1,
                labels: 2,
                values: 3,
                per_example: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "batch 1 has 2 labels and 3 values, but needs 2 values per example (4 in all)"
    );

    let label = Given(vec![
        good.clone(),
        Batch {
            x: vec![0.0; 4],
            y: vec![2, 3],
        },
    ]);
    let err = evaluate(&dev, &model, &label, 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch 1, example 1: label 3 is out of range for a model with 3 classes"
    );

    let empty = Given(vec![Batch {
        x: vec![],
        y: vec![],
    }]);
    assert!(matches!(
        evaluate(&dev, &model, &empty, 2),
        Err(TrainError::EmptyDataset { .. })
    ));
    assert!(matches!(
        evaluate(&dev, &model, &Given(vec![good.clone()]), 0),
        Err(TrainError::ZeroBatchSize)
    ));

    // the same checks guard training, and the model is left usable
    let mut model = model;
    let mut opt = Sgd::new(&model, Default::default());
    let trainer = Trainer::new(dev.clone(), quiet(1, 2));
    let err = trainer
        .fit(&mut model, &mut opt, &short, &Given(vec![good.clone()]))
        .unwrap_err();
    assert!(matches!(err, TrainError::BatchSize { batch: 1, .. }));
    let err = trainer
        .fit(&mut model, &mut opt, &Given(vec![good.clone()]), &empty)
        .unwrap_err();
    assert_eq!(err.to_string(), "the test set yielded no examples");
    assert!(evaluate(&dev, &model, &Given(vec![good]), 2).is_ok());
}

/// A conv-shaped layer: weight in PyTorch's layout (out, in, kh, kw), and a bias.
struct ConvLike<E: Dtype, D: Device<E>> {
    weight: Tensor<Rank4<16, 6, 5, 5>, E, D>,
    bias: Tensor<Rank1<16>, E, D>,
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for ConvLike<E, D> {
    type To<E2: Dtype, D2: Device<E2>> = ConvLike<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_to_ones(),
                ),
            ),
            |(weight, bias)| ConvLike { weight, bias },
        )
    }
}

/// Asserts every value lies in [-a, a], the mean is near 0 and the variance near a²/3.
fn assert_xavier(values: &[f32], fan_in: usize, fan_out: usize) {
    let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let n = values.len() as f64;
    assert!(values.iter().all(|v| (*v as f64).abs() <= a));
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let expected = a * a / 3.0;
    // sd of the sample variance of U(-a, a) is about 0.9 * var / sqrt(n): 5 sd is far above it
    let tolerance = 5.0 * 0.9 * expected / n.sqrt();
    assert!(mean.abs() < 5.0 * (expected / n).sqrt(), "mean {mean}");
    assert!(
        (var - expected).abs() < tolerance,
        "variance {var}, expected {expected} ± {tolerance}"
    );
    // and the values really span the range, rather than sitting in a narrower one
    let max = values.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    assert!(max > 0.99 * a, "max |w| {max} of bound {a}");
}

#[test]
fn xavier_uniform_reinitialises_linear_and_conv_weights_only() {
    let dev = Cpu::default();
    let mut model = (
        ConvLike {
            weight: dev.zeros(),
            bias: dev.ones(),
        },
        dev.build_module::<(Linear<512, 256>, ReLU, Linear<256, 10>), f32>(),
    );
    let biases_before = (model.1.0.bias.as_vec(), model.1.2.bias.as_vec());

    let changed = xavier_uniform_(&mut model, &mut StdRng::seed_from_u64(42)).unwrap();

    assert_eq!(changed, 3);
    // conv (16, 6, 5, 5): fan_in = 6*25, fan_out = 16*25
    assert_xavier(&model.0.weight.as_vec(), 150, 400);
    // linear (256, 512): fan_in = 512, fan_out = 256
    assert_xavier(&model.1.0.weight.as_vec(), 512, 256);
    assert_eq!(model.0.bias.as_vec(), vec![1.0; 16]);
    assert_eq!(
        (model.1.0.bias.as_vec(), model.1.2.bias.as_vec()),
        biases_before
    );

    // the same seed gives the same weights
    let mut again = dev.build_module::<(Linear<512, 256>, ReLU, Linear<256, 10>), f32>();
    let mut twice = again.clone();
    xavier_uniform_(&mut again, &mut StdRng::seed_from_u64(1)).unwrap();
    xavier_uniform_(&mut twice, &mut StdRng::seed_from_u64(1)).unwrap();
    assert_eq!(again.0.weight.as_vec(), twice.0.weight.as_vec());
}

fn history() -> Vec<EpochStats> {
    // the shape of d2l's LeNet curves on Fashion-MNIST
    let rows = [
        (2.32, 0.10, 0.10),
        (1.35, 0.47, 0.60),
        (0.85, 0.67, 0.70),
        (0.69, 0.73, 0.71),
        (0.61, 0.76, 0.76),
        (0.56, 0.78, 0.71),
        (0.52, 0.80, 0.79),
        (0.49, 0.81, 0.80),
        (0.47, 0.82, 0.78),
        (0.45, 0.83, 0.80),
    ];
    rows.iter()
        .enumerate()
        .map(|(i, &(loss, train_acc, test_acc))| EpochStats {
            epoch: i + 1,
            loss,
            train_acc,
            test_acc,
            lr: 0.9,
            images_per_s: 5000.0,
            seconds: 12.0,
        })
        .collect()
}

#[test]
fn plot_history_writes_a_png() {
    let dir = std::env::temp_dir().join(format!("cnn-train-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, history) in [("ten.png", history()), ("one.png", history()[..1].to_vec())] {
        let path = dir.join(name);
        plot_history(&history, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{name} is not a PNG"
        );
        assert!(bytes.len() > 5_000, "{name} is only {} bytes", bytes.len());
    }
    // Set CNN_TRAIN_PLOT to a path to keep a copy to look at.
    if let Some(path) = std::env::var_os("CNN_TRAIN_PLOT") {
        plot_history(&history(), path.as_ref()).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plot_history_reports_failures_and_keeps_the_previous_plot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plot.png");
    plot_history(&history(), &path).unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = plot_history(&[], &path).unwrap_err();
    assert!(matches!(err, TrainError::Plot { .. }));
    assert_eq!(
        cnn::error_chain(&err),
        format!("cannot plot to {}: no epochs to plot", path.display())
    );
    let jpeg = dir.path().join("plot.jpg");
    let err = plot_history(&history(), &jpeg).unwrap_err();
    assert_eq!(
        cnn::error_chain(&err),
        format!(
            "cannot plot to {}: only PNG is written: name the file `.png`",
            jpeg.display()
        )
    );
    // A file where the plot's folder goes.
    let under_file = path.join("x.png");
    let err = plot_history(&history(), &under_file).unwrap_err();
    assert!(
        cnn::error_chain(&err).starts_with(&format!("cannot plot to {}: ", under_file.display())),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Blobs of 20 features in 10 classes, one batch of `n` per epoch when `batch_size` is `n`.
fn blob_set(n: usize, seed: u64) -> InMemory<(usize, Const<20>)> {
    let (x, y) = blobs(20, n, seed);
    InMemory::new(x, y).unwrap()
}

#[test]
fn a_run_that_diverges_stops_naming_the_epoch_and_batch_before_its_update() {
    let dev = Cpu::seed_from_u64(0);
    let (train, test) = (blob_set(64, 1), blob_set(16, 2));
    let mut model = dev.build_module::<(Linear<20, 32>, ReLU, Linear<32, 10>), f32>();
    // lr NaN: batch 0's loss is finite, its update makes every weight NaN, batch 1's loss is
    // NaN; the run stops there, before batch 1's update.
    let sgd = |lr| SgdConfig {
        lr,
        ..Default::default()
    };
    let mut opt = Sgd::new(&model, sgd(f64::NAN));
    let mut calls = 0;
    let err = Trainer::new(dev.clone(), quiet(3, 16))
        .fit_with(&mut model, &mut opt, &train, &test, |_, _| {
            calls += 1;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, TrainError::NonFiniteLoss { epoch: 1, batch: 1, loss } if loss.is_nan()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "epoch 1, batch 1: the loss is NaN, so training stopped (the run diverged: try a lower \
         learning rate)"
    );
    assert_eq!(calls, 0, "the callback must never see diverged weights");

    // lr infinite, one batch per epoch: the epoch's only loss is finite, its update is not;
    // the weights are checked before the callback.
    let mut model = dev.build_module::<(Linear<20, 32>, ReLU, Linear<32, 10>), f32>();
    let mut opt = Sgd::new(&model, sgd(f64::INFINITY));
    let err = Trainer::new(dev, quiet(3, 64))
        .fit_with(&mut model, &mut opt, &train, &test, |_, _| {
            calls += 1;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(&err, TrainError::NonFiniteWeights { epoch: 1, found } if found.tensor == "0.weight"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(
            "epoch 1: the model's tensor `0.weight` has 640 non-finite values (the first is "
        ),
        "{err}"
    );
    assert_eq!(calls, 0, "the callback must never see diverged weights");
}

#[test]
fn a_failing_callback_stops_training_and_absurd_epoch_counts_allocate_nothing() {
    let dev = Cpu::seed_from_u64(0);
    let (train, test) = (blob_set(32, 1), blob_set(8, 2));
    let mut model = dev.build_module::<(Linear<20, 16>, ReLU, Linear<16, 10>), f32>();
    let mut opt = Sgd::new(&model, Default::default());
    // usize::MAX epochs once made `Vec::with_capacity(epochs)` panic before any training.
    let trainer = Trainer::new(dev, quiet(usize::MAX, 16));
    let mut epochs_seen = Vec::new();
    let err = trainer
        .fit_with(&mut model, &mut opt, &train, &test, |stats, _| {
            epochs_seen.push(stats.epoch);
            if stats.epoch == 2 {
                let disk: std::io::Error = std::io::ErrorKind::StorageFull.into();
                return Err(disk.into());
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(epochs_seen, [1, 2]);
    assert!(
        matches!(err, TrainError::Callback { epoch: 2, .. }),
        "{err:?}"
    );
    let disk: std::io::Error = std::io::ErrorKind::StorageFull.into();
    assert_eq!(cnn::error_chain(&err), format!("epoch 2: {disk}"));
}
