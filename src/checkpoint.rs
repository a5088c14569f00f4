//! Saving and loading a model's weights as safetensors, safely.
//!
//! dfdx's own `save_safetensors`/`load_safetensors` write in place and, given a checkpoint of
//! another network, fail deep inside with a bare "tensor not found" or a shape panic. These
//! wrappers check the file against the model first (every tensor's name, shape and dtype, with
//! both shapes in the message) and write through a temporary file renamed into place, so a
//! failed save never destroys the previous checkpoint and a refused load leaves the model as it
//! was.
//!
//! [`save_network`]/[`load_network`] do the same for a `cnn!` network and also record its layer
//! table in the file's metadata, so that a network with the same tensors but other layers
//! (d2l's sigmoid LeNet against its ReLU variant, say) is refused too.

use crate::{Network, Summary};
use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorName,
};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use dfdx::shapes::{Dtype, Shape};
use dfdx::tensor::safetensors::SafeDtype;
use dfdx::tensor_ops::Device;
use std::collections::HashMap;
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
    save_with(model, path, None)
}

/// [`save`] for a `cnn!` network, recording its name and layers in the file's metadata
/// (`cnn.network`, `cnn.layers`) for [`load_network`] to check.
///
/// # Errors
/// As [`save`].
pub fn save_network<E, D, M>(model: &M, path: &Path) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: SaveToSafetensors<E, D> + Network,
{
    let metadata = [
        ("cnn.network".to_string(), M::SUMMARY.name.to_string()),
        ("cnn.layers".to_string(), layers(&M::SUMMARY)),
    ];
    save_with(model, path, Some(metadata.into_iter().collect()))
}

/// A network's input and layers as one line: what must agree for its weights to mean the same.
fn layers(s: &Summary) -> String {
    // `; ` separates: a layer's own text has commas, never semicolons
    let kinds: Vec<&str> = s.rows.iter().map(|r| r.kind).collect();
    format!("{:?}; {}", s.input, kinds.join("; "))
}

fn save_with<E, D, M>(
    model: &M,
    path: &Path,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), CheckpointError>
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
    let written = model
        .save_safetensors(&part)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|()| match &metadata {
            // dfdx writes no metadata: write the file again with it.
            Some(_) => {
                let bytes = std::fs::read(&part)?;
                let file = safetensors::SafeTensors::deserialize(&bytes)
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                let with = safetensors::serialize(file.tensors(), &metadata)
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                std::fs::write(&part, with)
            }
            None => Ok(()),
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(io(e));
    }
    std::fs::rename(&part, path).map_err(io)
}

/// [`load`] for a `cnn!` network: when the file records the layers it was saved from (as
/// [`save_network`] does), they must be this network's.
///
/// # Errors
/// As [`load`]; [`CheckpointError::Mismatch`] also when the recorded layers differ, naming the
/// first layer that does.
pub fn load_network<E, D, M>(model: &mut M, path: &Path) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: LoadFromSafetensors<E, D> + Network,
{
    let bytes = read(path)?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(format_error(path))?;
    let recorded = header
        .metadata()
        .as_ref()
        .and_then(|m| Some((m.get("cnn.network")?, m.get("cnn.layers")?)));
    if let Some((name, saved)) = recorded {
        let ours = layers(&M::SUMMARY);
        if *saved != ours {
            let (theirs, mine): (Vec<&str>, Vec<&str>) =
                (saved.split("; ").collect(), ours.split("; ").collect());
            let at = match theirs.iter().zip(&mine).position(|(a, b)| a != b) {
                Some(0) => format!("its input is {} there and {} here", theirs[0], mine[0]),
                Some(i) => {
                    // The rows agree up to here, so our row names the place in both.
                    let path = M::SUMMARY.rows.get(i - 1).map_or("", |row| row.path);
                    let at = if path.is_empty() {
                        format!("layer {i}")
                    } else {
                        format!("layer {i} (`{path}`)")
                    };
                    format!("{at} is `{}` there and `{}` here", theirs[i], mine[i])
                }
                None => format!(
                    "it has {} layers there and {} here",
                    theirs.len() - 1,
                    mine.len() - 1
                ),
            };
            return Err(CheckpointError::Mismatch {
                path: path.to_path_buf(),
                what: format!(
                    "it was saved from `{name}`, not `{}`: {at}",
                    M::SUMMARY.name
                ),
            });
        }
    }
    check_and_load(model, path, &bytes)
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
    check_and_load(model, path, &read(path)?)
}

fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn format_error<T: std::fmt::Debug>(path: &Path) -> impl Fn(T) -> CheckpointError + '_ {
    move |e| CheckpointError::Format {
        path: path.to_path_buf(),
        what: format!("{e:?}"),
    }
}

/// [`load`]'s checks on the file's `bytes`, then the load itself.
fn check_and_load<E, D, M>(model: &mut M, path: &Path, bytes: &[u8]) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: LoadFromSafetensors<E, D>,
{
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(format_error(path))?;
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
    model.load_safetensors(path).map_err(format_error(path))
}
