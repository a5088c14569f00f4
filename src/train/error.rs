//! The one error type of the training loop.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while training, evaluating, initialising or plotting.
///
/// Bad input (a batch whose sizes disagree, a label outside the model's classes, an empty data
/// set) is reported here rather than left to panic inside dfdx.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrainError {
    /// The configured batch size is zero.
    ZeroBatchSize,
    /// A data set yielded no examples, so its loss and accuracy would be 0/0.
    EmptyDataset {
        /// Which data set: `"training"` or `"test"`.
        which: &'static str,
    },
    /// A batch's feature buffer does not hold one example per label.
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
    LabelOutOfRange {
        /// The offending label.
        label: usize,
        /// The number of classes of the model's output.
        classes: usize,
    },
    /// A device (allocation or kernel) error, or a module's forward error, as dfdx worded it.
    Device(String),
    /// The optimizer found parameters that received no gradient, or failed on the device.
    Optimizer(String),
    /// Rendering or writing a plot failed.
    Plot {
        /// The file that was being written.
        path: PathBuf,
        /// What plotters reported.
        message: String,
    },
}

impl TrainError {
    /// Wraps an error of dfdx's, whose types differ per device, as text.
    pub(crate) fn device(err: impl fmt::Debug) -> Self {
        TrainError::Device(format!("{err:?}"))
    }
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::ZeroBatchSize => write!(f, "batch size must be at least 1"),
            TrainError::EmptyDataset { which } => {
                write!(f, "the {which} set yielded no examples")
            }
            TrainError::BatchSize {
                batch,
                labels,
                values,
                per_example,
            } => write!(
                f,
                "batch {batch} has {labels} labels and {values} values, \
                 but needs {per_example} values per example ({} in all)",
                labels * per_example
            ),
            TrainError::LabelOutOfRange { label, classes } => write!(
                f,
                "label {label} is out of range for a model with {classes} classes"
            ),
            TrainError::Device(message) => write!(f, "device error: {message}"),
            TrainError::Optimizer(message) => write!(f, "optimizer update failed: {message}"),
            TrainError::Plot { path, message } => {
                write!(f, "cannot plot to {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for TrainError {}
