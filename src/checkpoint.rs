//! Saving and loading a model's weights as safetensors, safely.
//!
//! dfdx's own `save_safetensors`/`load_safetensors` write in place and, given a checkpoint of
//! another network, fail deep inside with a bare "tensor not found" or a shape panic. These
//! wrappers check the file against the model first (every tensor's name, shape and dtype, with
//! both shapes in the message) and write through a temporary file renamed into place, so a
//! failed save never destroys the previous checkpoint and a refused load leaves the model as it
//! was.

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorName,
};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use dfdx::shapes::{Dtype, Shape};
use dfdx::tensor::safetensors::SafeDtype;
use dfdx::tensor_ops::Device;
use std::path::{Path, PathBuf};

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a safetensors file.
    #[error("{path}: not a safetensors checkpoint ({what})")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The file holds another network's weights.
    #[error("{path} is not a checkpoint of this network: {what}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Every difference, naming the tensors and both shapes.
        what: String,
    },
}

/// The tensors of a model of type `M` as `(name, shape)`, in visiting order: a property of the
/// type alone, so no model is needed.
fn layout<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>() -> Vec<(String, Vec<usize>)> {
    struct Names(Vec<(String, Vec<usize>)>);
    impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Names {
        type Viewer = ViewTensorName;
        type Err = std::convert::Infallible;
        type E2 = E;
        type D2 = D;
        fn visit<S: Shape>(
            &mut self,
            opts: TensorOptions<S, E, D>,
            name: String,
        ) -> Result<Option<dfdx::tensor::Tensor<S, E, D>>, Self::Err> {
            self.0
                .push((name, opts.shape.concrete().into_iter().collect()));
            Ok(None)
        }
    }
    let mut names = Names(Vec::new());
    let Ok(_) = M::iter_tensors(&mut RecursiveWalker {
        m: String::new(),
        f: &mut names,
    });
    names.0
}

/// Writes `model`'s weights to `path` (parent folders created), through a temporary file that
/// is renamed into place only once complete.
///
/// # Errors
/// [`CheckpointError::Io`] when a folder or the file cannot be written.
pub fn save<E, D, M>(model: &M, path: &Path) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: SaveToSafetensors<E, D>,
{
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    model.save_safetensors(&part).map_err(|e| {
        let _ = std::fs::remove_file(&part);
        io(std::io::Error::other(e.to_string()))
    })?;
    std::fs::rename(&part, path).map_err(io)
}

/// Loads `path` into `model` after checking that it holds exactly the model's tensors, with the
/// same shapes and element type. On any error the model is left unchanged.
///
/// # Errors
/// [`CheckpointError::Io`] for a missing or unreadable file, [`CheckpointError::Format`] for a
/// file that is not safetensors, [`CheckpointError::Mismatch`] for another network's weights
/// (naming the tensor and both shapes).
pub fn load<E, D, M>(model: &mut M, path: &Path) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: LoadFromSafetensors<E, D>,
{
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Format {
            path: path.to_path_buf(),
            what: format!("{e:?}"),
        })?;
    // Every difference is listed: a checkpoint of another network usually differs in several.
    let mut problems = Vec::new();
    let expected = layout::<E, D, M>();
    for (name, shape) in &expected {
        match file.tensor(name) {
            Err(_) => problems.push(format!(
                "it has no tensor `{name}` (the model needs {shape:?})"
            )),
            Ok(t) if t.shape() != shape.as_slice() => problems.push(format!(
                "tensor `{name}` is {:?} in the checkpoint but {shape:?} in the model",
                t.shape()
            )),
            Ok(t) if t.dtype() != E::safe_dtype() => problems.push(format!(
                "tensor `{name}` is {:?} in the checkpoint but {:?} in the model",
                t.dtype(),
                E::safe_dtype()
            )),
            Ok(_) => {}
        }
    }
    let mut extra: Vec<_> = file
        .names()
        .into_iter()
        .filter(|n| !expected.iter().any(|(e, _)| e == *n))
        .collect();
    extra.sort();
    for name in extra {
        problems.push(format!(
            "it holds tensor `{name}`, which the model does not have"
        ));
    }
    if !problems.is_empty() {
        return Err(CheckpointError::Mismatch {
            path: path.to_path_buf(),
            what: problems.join("; "),
        });
    }
    model
        .load_safetensors(path)
        .map_err(|e| CheckpointError::Format {
            path: path.to_path_buf(),
            what: format!("{e:?}"),
        })
}
