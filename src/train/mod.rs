//! A small training loop for any dfdx classifier: fit over epochs of mini-batches with
//! cross-entropy and one of dfdx's optimizers (its learning rate on a [`Schedule`]), evaluate
//! accuracy, report progress, plot history.
//!
//! The loop knows nothing about the model beyond dfdx's traits (see [`Classifier`]) and nothing
//! about the data beyond [`Batches`], whose [`Batches::Shape`] says how a batch of flat features
//! becomes the model's input tensor; so the same loop trains an MLP on `(usize, Const<784>)` and
//! a CNN on `(usize, Const<1>, Const<28>, Const<28>)`.
//!
//! ```
//! use cnn::train::{Config, InMemory, Progress, Trainer, plot_history};
//! use dfdx::{optim::Sgd, prelude::*};
//!
//! let dev = Cpu::default();
//! let mut model = dev.build_module::<(Linear<4, 8>, ReLU, Linear<8, 2>), f32>();
//! let mut opt = Sgd::new(&model, SgdConfig { lr: 0.1, ..Default::default() });
//! // 2 examples of 4 features: class 0 is all -1, class 1 all +1
//! let x = vec![-1., -1., -1., -1., 1., 1., 1., 1.];
//! let data = InMemory::<(usize, Const<4>)>::new(x, vec![0, 1])?;
//!
//! let config = Config { epochs: 20, batch_size: 2, progress: Progress::Quiet, ..Default::default() };
//! let trainer = Trainer::new(dev, config);
//! let history = trainer.fit(&mut model, &mut opt, &data, &data)?;
//! println!("{}", history[19]); // loss 0.0.., train acc 1.000, test acc 1.000
//! assert_eq!(trainer.evaluate(&model, &data)?, 1.0);
//! plot_history(&history, &std::env::temp_dir().join("cnn-train-doc.png"))?;
//! # Ok::<(), cnn::train::TrainError>(())
//! ```

mod batches;
mod error;
mod init;
mod plot;
mod progress;
mod schedule;
mod stats;

use std::time::Instant;

use dfdx::data::OneHotEncode;
use dfdx::losses::cross_entropy_with_logits_loss;
use dfdx::nn::{Module, ModuleMut, ZeroGrads, tensor_collection::TensorCollection};
use dfdx::optim::{Optimizer, OptimizerUpdateError};
use dfdx::shapes::{Const, Dtype};
use dfdx::tensor::{OwnedTape, Tensor, Trace};
use dfdx::tensor_ops::{Backward, Device};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::finite::find_non_finite;

pub use batches::{Batch, BatchShape, Batches, InMemory};
pub use error::{BoxError, TrainError};
pub use init::xavier_uniform_;
pub use plot::plot_history;
pub use progress::Progress;
pub use schedule::{LearningRate, Schedule};
pub use stats::EpochStats;

use progress::EpochBar;

/// How the model's parameters are set before the first epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// Keep the parameters the model has (dfdx's defaults when freshly built).
    #[default]
    Keep,
    /// d2l's choice: [`xavier_uniform_`] on every weight, from a generator seeded with `seed`.
    XavierUniform {
        /// Seed of the generator the weights are drawn from.
        seed: u64,
    },
}

/// What [`Trainer`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Number of passes over the training set.
    pub epochs: usize,
    /// Examples per mini-batch, for training and evaluation alike.
    pub batch_size: usize,
    /// How much to print.
    pub progress: Progress,
    /// How to initialise the model before training.
    pub init: Init,
    /// The learning rate of each epoch, relative to the optimizer's when training starts.
    pub schedule: Schedule,
}

impl Default for Config {
    /// d2l's LeNet settings: 10 epochs of 256 examples at a constant learning rate, with
    /// progress, keeping the model's initial weights.
    fn default() -> Self {
        Config {
            epochs: 10,
            batch_size: 256,
            progress: Progress::Auto,
            init: Init::Keep,
            schedule: Schedule::Constant,
        }
    }
}

/// A model the loop can train as a classifier of `C` classes on inputs of shape `S`: its
/// parameters can be walked (gradients, optimizers, init), it runs with a tape for training
/// ([`ModuleMut`], so layers such as dropout know they are training) and without one for
/// evaluation ([`Module`]), giving logits of shape `(batch, C)` either way.
///
/// Implemented for every type that has those traits; dfdx's layers and tuples of them do. A
/// struct that implements only [`Module`] gets [`ModuleMut`] by implementing dfdx's
/// `NonMutableModule` marker.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a classifier of inputs `{S}` that the training loop can train",
    note = "it needs `TensorCollection`, `ModuleMut<Tensor<S, E, D, OwnedTape<E, D>>>` and \
            `Module<Tensor<S, E, D>>`, both with output `Tensor<(usize, Const<C>), ..>`"
)]
pub trait Classifier<S: BatchShape, E: Dtype, D: Device<E>, const C: usize>:
    TensorCollection<E, D>
    + ModuleMut<
        Tensor<S, E, D, OwnedTape<E, D>>,
        Output = Tensor<(usize, Const<C>), E, D, OwnedTape<E, D>>,
    > + Module<Tensor<S, E, D>, Output = Tensor<(usize, Const<C>), E, D>>
{
}

impl<M, S, E, D, const C: usize> Classifier<S, E, D, C> for M
where
    S: BatchShape,
    E: Dtype,
    D: Device<E>,
    M: TensorCollection<E, D>
        + ModuleMut<
            Tensor<S, E, D, OwnedTape<E, D>>,
            Output = Tensor<(usize, Const<C>), E, D, OwnedTape<E, D>>,
        > + Module<Tensor<S, E, D>, Output = Tensor<(usize, Const<C>), E, D>>,
{
}

/// Trains and evaluates classifiers on one device with one [`Config`].
#[derive(Debug, Clone)]
pub struct Trainer<D> {
    dev: D,
    config: Config,
}

impl<D> Trainer<D> {
    /// A trainer that builds its batch tensors on `dev`, which must be the model's device.
    pub fn new(dev: D, config: Config) -> Self {
        Trainer { dev, config }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Trains `model` for [`Config::epochs`] epochs, evaluating on `test` after each, and
    /// returns every epoch's metrics. See [`Trainer::fit_with`].
    ///
    /// # Errors
    /// As [`Trainer::fit_with`].
    pub fn fit<M, O, E, Tr, Te, const C: usize>(
        &self,
        model: &mut M,
        opt: &mut O,
        train: &Tr,
        test: &Te,
    ) -> Result<Vec<EpochStats>, TrainError>
    where
        E: Dtype,
        D: Device<E>,
        Tr: Batches<E>,
        Te: Batches<E, Shape = Tr::Shape>,
        M: Classifier<Tr::Shape, E, D, C>,
        O: Optimizer<M, D, E> + LearningRate,
    {
        self.fit_with(model, opt, train, test, |_, _| Ok(()))
    }

    /// Trains `model` with `opt` on `train` and evaluates it on `test`, epoch after epoch, calling
    /// `on_epoch` with each epoch's metrics and the model as it then is (to save a checkpoint,
    /// say). An error from `on_epoch` stops training: a checkpoint that cannot be saved is
    /// not a reason to spend hours on epochs that will be lost.
    ///
    /// Before each epoch the optimizer's learning rate is set from [`Config::schedule`], as a
    /// factor of the rate it had when `fit_with` was called; after the last epoch it is left
    /// at that starting rate, so the optimizer can train on as it was given.
    ///
    /// Each batch: forward with a tape, [`cross_entropy_with_logits_loss`] against one-hot labels,
    /// backward, `opt.update`, zero the gradients. Loss and training accuracy are accumulated
    /// from the same forward pass, so they describe the model while it changed during the epoch,
    /// as d2l reports them; test accuracy is measured after the epoch by [`evaluate`].
    ///
    /// A run that diverges stops: at the first batch whose loss is NaN or infinite, before its
    /// update, and after any epoch that leaves a weight NaN or infinite, before `on_epoch` sees
    /// it. So a callback that saves checkpoints only ever sees finite weights.
    ///
    /// # Errors
    /// [`TrainError::ZeroBatchSize`]; [`TrainError::EmptyDataset`] when either set yields no
    /// examples; [`TrainError::BatchSize`] or [`TrainError::LabelOutOfRange`] for a bad batch;
    /// [`TrainError::NonFiniteLoss`] or [`TrainError::NonFiniteWeights`] when the run diverges;
    /// [`TrainError::Callback`] when `on_epoch` fails; [`TrainError::Optimizer`] when `opt`
    /// fails (for instance on parameters that got no gradient); [`TrainError::Data`] when a data
    /// set reports that a pass ended early ([`Batches::take_error`]: an image that would not
    /// decode); [`TrainError::Device`] for dfdx's device errors. The model keeps the updates
    /// made before the error.
    pub fn fit_with<M, O, E, Tr, Te, const C: usize>(
        &self,
        model: &mut M,
        opt: &mut O,
        train: &Tr,
        test: &Te,
        mut on_epoch: impl FnMut(&EpochStats, &M) -> Result<(), BoxError>,
    ) -> Result<Vec<EpochStats>, TrainError>
    where
        E: Dtype,
        D: Device<E>,
        Tr: Batches<E>,
        Te: Batches<E, Shape = Tr::Shape>,
        M: Classifier<Tr::Shape, E, D, C>,
        O: Optimizer<M, D, E> + LearningRate,
    {
        let start_lr = opt.learning_rate();
        let history = self.epochs(model, opt, start_lr, train, test, &mut on_epoch);
        opt.set_learning_rate(start_lr);
        history
    }

    /// [`Trainer::fit_with`]'s epochs, `opt`'s rate scheduled from `start_lr`.
    fn epochs<M, O, E, Tr, Te, const C: usize>(
        &self,
        model: &mut M,
        opt: &mut O,
        start_lr: f64,
        train: &Tr,
        test: &Te,
        on_epoch: &mut impl FnMut(&EpochStats, &M) -> Result<(), BoxError>,
    ) -> Result<Vec<EpochStats>, TrainError>
    where
        E: Dtype,
        D: Device<E>,
        Tr: Batches<E>,
        Te: Batches<E, Shape = Tr::Shape>,
        M: Classifier<Tr::Shape, E, D, C>,
        O: Optimizer<M, D, E> + LearningRate,
    {
        let Config {
            epochs,
            batch_size,
            progress,
            init,
            schedule,
        } = self.config;
        if batch_size == 0 {
            return Err(TrainError::ZeroBatchSize);
        }
        if let Init::XavierUniform { seed } = init {
            xavier_uniform_(model, &mut StdRng::seed_from_u64(seed))?;
        }

        let mut grads = model.try_alloc_grads().map_err(TrainError::device)?;
        // logits of the current batch, read back to the host: (batch, C)
        let mut logits_host: Vec<E> = Vec::new();
        // Grown as epochs finish: `epochs` is a request, not a size to reserve up front.
        let mut history = Vec::new();
        for epoch in 0..epochs {
            let lr = start_lr * schedule.factor(epoch, epochs);
            opt.set_learning_rate(lr);
            let start = Instant::now();
            let bar = EpochBar::new(progress, epoch + 1, epochs, train.num_examples());
            let (mut seen, mut correct, mut loss_sum) = (0usize, 0usize, 0.0f64);

            for (index, batch) in train.batches(epoch, batch_size).enumerate() {
                let b = batch.y.len();
                if b == 0 {
                    continue;
                }
                let Batch { x, y: labels } = batch;
                let x = to_input::<Tr::Shape, E, D>(&self.dev, x, &labels, index, C)?;
                let targets = self.dev.one_hot_encode(Const::<C>, labels.clone());

                let logits = model
                    .try_forward_mut(x.traced(grads))
                    .map_err(TrainError::device)?;
                logits_host.resize(b * C, E::default());
                logits.copy_into(&mut logits_host);
                correct += count_correct(&logits_host, &labels, C);

                let loss = cross_entropy_with_logits_loss(logits, targets);
                // the loss is a batch mean; weight it by the batch size for the epoch mean
                let mut batch_loss = [E::default()];
                loss.copy_into(&mut batch_loss);
                let batch_loss = batch_loss[0].to_f64().unwrap_or(f64::NAN);
                if !batch_loss.is_finite() {
                    // Its gradient would make every weight NaN: stop before the update.
                    return Err(TrainError::NonFiniteLoss {
                        epoch: epoch + 1,
                        batch: index,
                        loss: batch_loss,
                    });
                }
                loss_sum += batch_loss * b as f64;
                grads = loss.try_backward().map_err(TrainError::device)?;
                opt.update(model, &grads).map_err(optimizer_error)?;
                model
                    .try_zero_grads(&mut grads)
                    .map_err(TrainError::device)?;

                seen += b;
                let elapsed = start.elapsed().as_secs_f64();
                bar.update(seen, loss_sum / seen as f64, seen as f64 / elapsed);
            }
            if let Some(source) = train.take_error() {
                return Err(TrainError::Data {
                    epoch: epoch + 1,
                    which: "training",
                    source,
                });
            }
            if seen == 0 {
                return Err(TrainError::EmptyDataset { which: "training" });
            }
            let train_seconds = start.elapsed().as_secs_f64();
            // The loss was finite before every update, yet the last update may still have
            // overflowed a weight.
            if let Some(found) = find_non_finite(model) {
                return Err(TrainError::NonFiniteWeights {
                    epoch: epoch + 1,
                    found,
                });
            }

            bar.evaluating();
            let test_acc =
                accuracy(&self.dev, model, test, batch_size, "test").map_err(|e| match e {
                    TrainError::Data { which, source, .. } => TrainError::Data {
                        epoch: epoch + 1,
                        which,
                        source,
                    },
                    e => e,
                })?;
            let stats = EpochStats {
                epoch: epoch + 1,
                loss: loss_sum / seen as f64,
                train_acc: correct as f64 / seen as f64,
                test_acc,
                lr,
                images_per_s: seen as f64 / train_seconds,
                seconds: start.elapsed().as_secs_f64(),
            };
            bar.finish(progress, &stats, epochs);
            history.push(stats);
            on_epoch(&stats, model).map_err(|source| TrainError::Callback {
                epoch: epoch + 1,
                source,
            })?;
        }
        Ok(history)
    }

    /// Accuracy of `model` on `data`, in batches of [`Config::batch_size`]; see [`evaluate`].
    ///
    /// # Errors
    /// As [`evaluate`].
    pub fn evaluate<M, E, B, const C: usize>(&self, model: &M, data: &B) -> Result<f64, TrainError>
    where
        E: Dtype,
        D: Device<E>,
        B: Batches<E>,
        M: Module<Tensor<B::Shape, E, D>, Output = Tensor<(usize, Const<C>), E, D>>,
    {
        evaluate(&self.dev, model, data, self.config.batch_size)
    }
}

/// The fraction of `data`'s examples (epoch 0's batches) whose largest logit is at the label's
/// index, running `model` without a tape in batches of `batch_size`. A row of logits that are
/// all NaN counts as wrong.
///
/// # Errors
/// [`TrainError::ZeroBatchSize`]; [`TrainError::EmptyDataset`] when `data` yields no example;
/// [`TrainError::BatchSize`] or [`TrainError::LabelOutOfRange`] for a bad batch;
/// [`TrainError::Data`] (epoch 0) when `data` reports that its pass ended early;
/// [`TrainError::Device`] when the forward pass fails.
pub fn evaluate<M, E, D, B, const C: usize>(
    dev: &D,
    model: &M,
    data: &B,
    batch_size: usize,
) -> Result<f64, TrainError>
where
    E: Dtype,
    D: Device<E>,
    B: Batches<E>,
    M: Module<Tensor<B::Shape, E, D>, Output = Tensor<(usize, Const<C>), E, D>>,
{
    accuracy(dev, model, data, batch_size, "evaluation")
}

/// [`evaluate`], naming the data set `which` in errors.
fn accuracy<M, E, D, B, const C: usize>(
    dev: &D,
    model: &M,
    data: &B,
    batch_size: usize,
    which: &'static str,
) -> Result<f64, TrainError>
where
    E: Dtype,
    D: Device<E>,
    B: Batches<E>,
    M: Module<Tensor<B::Shape, E, D>, Output = Tensor<(usize, Const<C>), E, D>>,
{
    if batch_size == 0 {
        return Err(TrainError::ZeroBatchSize);
    }
    // logits read back to the host, reused across batches: (batch, C)
    let mut logits_host: Vec<E> = Vec::new();
    let (mut seen, mut correct) = (0usize, 0usize);
    for (index, batch) in data.batches(0, batch_size).enumerate() {
        let b = batch.y.len();
        if b == 0 {
            continue;
        }
        let Batch { x, y: labels } = batch;
        let x = to_input::<B::Shape, E, D>(dev, x, &labels, index, C)?;
        let logits = model.try_forward(x).map_err(TrainError::device)?;
        logits_host.resize(b * C, E::default());
        logits.copy_into(&mut logits_host);
        correct += count_correct(&logits_host, &labels, C);
        seen += b;
    }
    if let Some(source) = data.take_error() {
        return Err(TrainError::Data {
            epoch: 0,
            which,
            source,
        });
    }
    if seen == 0 {
        return Err(TrainError::EmptyDataset { which });
    }
    Ok(correct as f64 / seen as f64)
}

/// Checks batch `index` (features `x`, labels `y`) against the input shape and the number of
/// classes, then moves its features into a tensor of shape `S` on `dev`.
fn to_input<S: BatchShape, E: Dtype, D: Device<E>>(
    dev: &D,
    x: Vec<E>,
    y: &[usize],
    index: usize,
    classes: usize,
) -> Result<Tensor<S, E, D>, TrainError> {
    if x.len() != y.len() * S::EXAMPLE_NUMEL {
        return Err(TrainError::BatchSize {
            batch: index,
            labels: y.len(),
            values: x.len(),
            per_example: S::EXAMPLE_NUMEL,
        });
    }
    if let Some((position, &label)) = y.iter().enumerate().find(|(_, l)| **l >= classes) {
        return Err(TrainError::LabelOutOfRange {
            batch: index,
            position,
            label,
            classes,
        });
    }
    dev.try_tensor_from_vec(x, S::with_batch(y.len()))
        .map_err(TrainError::device)
}

/// The optimizer's error in words: dfdx prints unused parameters as a `Debug` list of ids.
fn optimizer_error<Err: std::fmt::Display>(err: OptimizerUpdateError<Err>) -> TrainError {
    TrainError::Optimizer(match err {
        OptimizerUpdateError::UnusedParams(unused) => format!(
            "{} parameter tensors received no gradient (not used by the forward pass?)",
            unused.ids.len()
        ),
        OptimizerUpdateError::DeviceError(err) => error::device_text(&err.to_string()),
    })
}

/// How many rows of `logits` (row-major `(labels.len(), classes)`) have their first largest
/// value at the label's index. NaN never wins a comparison, so an all-NaN row is wrong.
fn count_correct<E: PartialOrd>(logits: &[E], labels: &[usize], classes: usize) -> usize {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, label)| {
            let mut best: Option<(usize, &E)> = None;
            for (i, v) in row.iter().enumerate() {
                let better = match best {
                    // only NaN is unordered against itself; it must not become the first candidate
                    None => v.partial_cmp(v).is_some(),
                    Some((_, b)) => v > b,
                };
                if better {
                    best = Some((i, v));
                }
            }
            best.map(|(i, _)| i) == Some(**label)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::count_correct;

    #[test]
    fn count_correct_takes_the_first_maximum_and_rejects_nan_rows() {
        let logits = [
            0.1,
            0.9,
            0.0, // argmax 1
            0.5,
            0.5,
            0.2, // tie: first wins, 0
            f32::NAN,
            0.2,
            0.3, // NaN skipped: 2
            f32::NAN,
            f32::NAN,
            f32::NAN, // no winner
        ];
        assert_eq!(count_correct(&logits, &[1, 0, 2, 0], 3), 3);
        assert_eq!(count_correct(&logits, &[1, 1, 2, 0], 3), 2);
    }
}
