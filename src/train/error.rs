//! The one error type of the training loop.

use std::fmt;
use std::path::PathBuf;

use crate::finite::NonFinite;

/// An error from an epoch callback or a plot's renderer: anything that can say what happened.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while training, evaluating, initialising or plotting.
///
/// Bad input (a batch whose sizes disagree, a label outside the model's classes, an empty data
/// set) is reported here rather than left to panic inside dfdx; so is a run that diverged. The
/// cause, where there is one, is the [`source`](std::error::Error::source), not part of the
/// message: print the chain with [`crate::error_chain`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The configured batch size is zero.
    #[error("batch size must be at least 1")]
    ZeroBatchSize,
    /// A data set yielded no examples, so its loss and accuracy would be 0/0.
    #[error("the {which} set yielded no examples")]
    EmptyDataset {
        /// Which data set: `"training"`, `"test"` or `"evaluation"`.
        which: &'static str,
    },
    /// A batch's feature buffer does not hold one example per label.
    #[error(
        "batch {batch} has {labels} labels and {values} values, but needs {per_example} values \
         per example ({} in all)",
        labels.saturating_mul(*per_example)
    )]
    BatchSize {
        /// Index of the batch within its epoch, from 0.
        batch: usize,
        /// Number of labels in the batch.
        labels: usize,
        /// Number of feature values in the batch.
        values: usize,
        /// Number of feature values one example must have (the input shape without its batch
        /// dimension).
        per_example: usize,
    },
    /// A label is not smaller than the number of classes the model predicts.
    #[error(
        "batch {batch}, example {position}: label {label} is out of range for a model with \
         {classes} classes"
    )]
    LabelOutOfRange {
        /// Index of the batch within its epoch, from 0.
        batch: usize,
        /// The example's position in its batch, from 0.
        position: usize,
        /// The offending label.
        label: usize,
        /// The number of classes of the model's output.
        classes: usize,
    },
    /// A data set could not deliver its batches (an image that would not decode, say); its
    /// error is the source. Training stopped at that point.
    #[error("epoch {epoch}: the {which} data failed")]
    Data {
        /// The epoch, from 1 (0 for an evaluation outside training).
        epoch: usize,
        /// Which data set: `"training"`, `"test"` or `"evaluation"`.
        which: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A batch's loss came out NaN or infinite: the run diverged (a learning rate too high, or
    /// bad input). Training stopped before that batch's update.
    #[error(
        "epoch {epoch}, batch {batch}: the loss is {loss}, so training stopped (the run \
         diverged: try a lower learning rate)"
    )]
    NonFiniteLoss {
        /// The epoch, from 1.
        epoch: usize,
        /// Index of the batch within its epoch, from 0.
        batch: usize,
        /// The loss: NaN or an infinity.
        loss: f64,
    },
    /// After an epoch, a weight is NaN or infinite: the run diverged. Training stopped before
    /// the epoch's callback, so no checkpoint of these weights was made.
    #[error(
        "epoch {epoch}: the model's {found}, so training stopped (the run diverged: try a lower \
         learning rate)"
    )]
    NonFiniteWeights {
        /// The epoch, from 1.
        epoch: usize,
        /// The first tensor with such values.
        found: NonFinite,
    },
    /// A device (allocation or kernel) error, or a module's forward error, as dfdx worded it.
    #[error("device error: {0}")]
    Device(String),
    /// The optimizer found parameters that received no gradient, or failed on the device.
    #[error("optimizer update failed: {0}")]
    Optimizer(String),
    /// The callback after an epoch failed (to save a checkpoint, say); training stopped there.
    #[error("epoch {epoch}")]
    Callback {
        /// The epoch, from 1.
        epoch: usize,
        /// What the callback returned.
        #[source]
        source: BoxError,
    },
    /// Rendering or writing a plot failed; the file that was at `path`, if any, is unchanged.
    #[error("cannot plot to {}", .path.display())]
    Plot {
        /// The file that was being written.
        path: PathBuf,
        /// What went wrong: the renderer's or the operating system's error.
        #[source]
        source: BoxError,
    },
}

impl TrainError {
    /// Wraps an error of dfdx's, whose types differ per device (and of which a module's
    /// forward pass promises only `Debug`), as text.
    pub(crate) fn device(err: impl fmt::Debug) -> Self {
        TrainError::Device(device_text(&format!("{err:?}")))
    }
}

/// dfdx's device errors in words: the CPU's error prints only its variant's name, with
/// `Debug` (`OutOfMemory`) and `Display` (`CpuError::OutOfMemory`) alike.
pub(crate) fn device_text(text: &str) -> String {
    match text.trim_start_matches("CpuError::") {
        "OutOfMemory" => "out of memory".to_string(),
        "WrongNumElements" => "a tensor was given the wrong number of elements".to_string(),
        _ => text.to_string(),
    }
}
