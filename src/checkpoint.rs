//! Saving and loading a model's weights as safetensors, safely.
//!
//! dfdx's own `save_safetensors`/`load_safetensors` write in place and, given a checkpoint of
//! another network, fail deep inside with a bare "tensor not found" or a shape panic. These
//! wrappers check the file against the model first (every tensor's name, shape and dtype, with
//! both shapes in the message) and write through [`crate::atomic::write`]: a temporary file
//! with a unique name, flushed to the disk and renamed into place. A failed save never
//! destroys the previous checkpoint, two processes saving to one path leave one of their files
//! whole, and a refused load leaves the model as it was.
//!
//! Weights that hold NaN or infinity are neither saved ([`CheckpointError::NonFiniteModel`])
//! nor loaded ([`CheckpointError::NonFiniteFile`]): a model that diverged has nothing worth
//! keeping, and saving it would replace a checkpoint that has.
//!
//! [`save_network`]/[`load_network`] do the same for a `cnn!` network and also record its layer
//! table in the file's metadata, so that a network with the same tensors but other layers
//! (d2l's sigmoid LeNet against its ReLU variant, say) is refused too.
//!
//! [`load_pytorch`]/[`save_pytorch`] read and write the `state_dict` of the PyTorch module that
//! mirrors a network, as `safetensors.torch.save_file` writes it: a `cnn!` network's keys are
//! PyTorch's (see "Names, paths and checkpoint keys" in [`cnn!`](crate::cnn)), so no key map
//! is written.

use crate::atomic::{self, Sink};
use crate::finite::{NonFinite, find_non_finite};
use crate::{Network, Summary};
use dfdx::nn::LoadFromSafetensors;
use dfdx::nn::tensor_collection::{
    RecursiveWalker, ScalarOptions, TensorCollection, TensorOptions, TensorVisitor, ViewTensorName,
    ViewTensorRef,
};
use dfdx::shapes::{Dtype, HasShape, Shape};
use dfdx::tensor::Tensor;
use dfdx::tensor::safetensors::SafeDtype;
use dfdx::tensor_ops::Device;
use safetensors::tensor::{Dtype as SDtype, SafeTensorError, SafeTensors, TensorView};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

mod pytorch;
pub use pytorch::{ShapeMismatch, StateDictReport, load_pytorch, save_pytorch};

/// Why a checkpoint could not be saved or loaded.
///
/// The messages name the file; the operating system's error, where there is one, is the
/// [`source`](std::error::Error::source) (print the chain with [`crate::error_chain`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading the file failed.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Writing the file failed (a full disk, a read-only folder, a directory in its place);
    /// the file that was there before, if any, is unchanged.
    #[error("could not save {} (any earlier file there is unchanged)", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a safetensors file.
    #[error("{} is not a safetensors checkpoint: {what}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The file holds another network's weights.
    #[error("{} is not a checkpoint of this network: {what}", .path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Every difference, naming the tensors and both shapes.
        what: String,
    },
    /// A PyTorch `state_dict` that does not fit the network: every key missing from it, every
    /// key it has that the network does not, every shape and element type that differs.
    #[error("{} does not fit this network: {report}", .path.display())]
    StateDict {
        /// The file.
        path: PathBuf,
        /// What differs, key by key.
        report: StateDictReport,
    },
    /// The model to be saved holds NaN or infinity (training diverged); nothing was written.
    #[error("not saving {}: the model's {found}", .path.display())]
    NonFiniteModel {
        /// The file that was not written.
        path: PathBuf,
        /// The first tensor with such values.
        found: NonFinite,
    },
    /// The file holds NaN or infinity: the weights of a run that diverged.
    #[error("{} holds unusable weights: its {found}", .path.display())]
    NonFiniteFile {
        /// The file.
        path: PathBuf,
        /// The first tensor with such values.
        found: NonFinite,
    },
    /// An `f64` file holds a value too large for the model's `f32` (it would load as infinity).
    #[error(
        "{} does not fit an f32 model: `{tensor}` holds {count} value(s) beyond f32's range \
         (±{max:e}), the first {value:e} at index {index}",
        .path.display()
    )]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// How many of its values do not fit.
        count: usize,
        /// The flat index of the first.
        index: usize,
        /// The first.
        value: f64,
        /// The largest magnitude the model's element type holds.
        max: f64,
    },
}

/// One entry of a model's checkpoint: a tensor, or a scalar (batch norm's momentum), which
/// safetensors stores as an `f64` of shape `[]`.
struct Entry {
    name: String,
    shape: Vec<usize>,
    /// For a scalar: whether an `f64` converts to its type (dfdx panics on one that does not).
    scalar: Option<fn(f64) -> bool>,
}

/// The entries of a model of type `M`, in visiting order: a property of the type alone, so no
/// model is needed.
fn layout<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>() -> Vec<Entry> {
    struct Names(Vec<Entry>);
    fn fits<N: num_traits::NumCast>(v: f64) -> bool {
        N::from(v).is_some()
    }
    impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Names {
        type Viewer = ViewTensorName;
        type Err = std::convert::Infallible;
        type E2 = E;
        type D2 = D;
        fn visit<S: Shape>(
            &mut self,
            opts: TensorOptions<S, E, D>,
            name: String,
        ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
            self.0.push(Entry {
                name,
                shape: opts.shape.concrete().into_iter().collect(),
                scalar: None,
            });
            Ok(None)
        }
        fn visit_scalar<N: num_traits::NumCast>(
            &mut self,
            _: ScalarOptions<N>,
            name: String,
        ) -> Result<Option<N>, Self::Err> {
            self.0.push(Entry {
                name,
                shape: Vec::new(),
                scalar: Some(fits::<N>),
            });
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

/// One tensor of a model as safetensors wants it.
struct Stored {
    name: String,
    dtype: SDtype,
    shape: Vec<usize>,
    /// Little-endian.
    bytes: Vec<u8>,
    /// A scalar setting (batch norm's momentum), stored as an `f64` of shape `[]`.
    scalar: bool,
}

/// A model's tensors as safetensors wants them.
fn tensors<E, D, M>(model: &M) -> Vec<Stored>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    // dfdx's own writer does this too, but only into a file it opens itself.
    struct Collect(Vec<Stored>);
    impl<E: Dtype + SafeDtype, D: Device<E>> TensorVisitor<E, D> for Collect {
        type Viewer = (ViewTensorRef, ViewTensorName);
        type Err = std::convert::Infallible;
        type E2 = E;
        type D2 = D;
        fn visit<S: Shape>(
            &mut self,
            _: TensorOptions<S, E, D>,
            (t, name): (&Tensor<S, E, D>, String),
        ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
            let shape = t.shape().concrete().into_iter().collect();
            // (dfdx's `as_vec` cannot read a tensor of no elements.)
            let bytes = match t.shape().num_elements() {
                0 => Vec::new(),
                _ => t.as_vec().into_iter().flat_map(E::to_le_bytes).collect(),
            };
            self.0.push(Stored {
                name,
                dtype: E::safe_dtype(),
                shape,
                bytes,
                scalar: false,
            });
            Ok(None)
        }
        fn visit_scalar<N: num_traits::NumCast>(
            &mut self,
            _: ScalarOptions<N>,
            (n, name): (&N, String),
        ) -> Result<Option<N>, Self::Err> {
            // Checked finite by the caller, so it converts.
            let v = n.to_f64().unwrap_or(f64::NAN);
            self.0.push(Stored {
                name,
                dtype: SDtype::F64,
                shape: Vec::new(),
                bytes: v.to_le_bytes().to_vec(),
                scalar: true,
            });
            Ok(None)
        }
    }
    let mut collect = Collect(Vec::new());
    let Ok(_) = M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut collect,
    });
    collect.0
}

/// Writes `model`'s weights to `path` (parent folders created), atomically: see the [module
/// docs](self).
///
/// # Errors
/// [`CheckpointError::NonFiniteModel`] when a weight is NaN or infinite (nothing is written);
/// [`CheckpointError::Write`] when the folder or the file cannot be written. Either way the
/// file that was at `path` is unchanged.
pub fn save<E, D, M>(model: &M, path: &Path) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    save_with(model, path, None, |file| file)
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
    M: TensorCollection<E, D> + Network,
{
    save_with(model, path, Some(network_metadata::<M>()), |file| file)
}

/// [`save_network`], recording `extra` in the file's metadata beside the network's own keys:
/// what a user of the weights needs to know, such as the class names and the validation
/// transforms of a network trained on an image folder (`cnn.classes`, `cnn.transforms`; read
/// them back with [`metadata`]). A key of `extra` that [`save_network`] writes itself is
/// overridden by it.
///
/// # Errors
/// As [`save`].
pub fn save_network_with<E, D, M>(
    model: &M,
    path: &Path,
    extra: &[(&str, String)],
) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D> + Network,
{
    let mut metadata: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    metadata.extend(network_metadata::<M>());
    save_with(model, path, Some(metadata), |file| file)
}

/// The metadata a checkpoint records (empty when it records none), read from its header
/// alone.
///
/// # Errors
/// [`CheckpointError::Read`] for a file that cannot be read; [`CheckpointError::Format`] for
/// one that is not safetensors.
pub fn metadata(path: &Path) -> Result<HashMap<String, String>, CheckpointError> {
    let bytes = read(path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(format_error(path))?;
    Ok(header.metadata().clone().unwrap_or_default())
}

/// The metadata [`save_network`] records.
fn network_metadata<M: Network>() -> HashMap<String, String> {
    [
        ("cnn.network".to_string(), M::SUMMARY.name.to_string()),
        ("cnn.layers".to_string(), layers(&M::SUMMARY)),
    ]
    .into_iter()
    .collect()
}

/// A network's input and layers as one line: what must agree for its weights to mean the same.
fn layers(s: &Summary) -> String {
    // `; ` separates: a layer's own text has commas, never semicolons
    let kinds: Vec<&str> = s.rows.iter().map(|r| r.kind).collect();
    format!("{:?}; {}", s.input, kinds.join("; "))
}

/// [`save`], with metadata, writing through `wrap` (tests pass a writer that fails).
fn save_with<E, D, M, S: Sink>(
    model: &M,
    path: &Path,
    metadata: Option<HashMap<String, String>>,
    wrap: impl FnOnce(File) -> S,
) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    write_tensors(path, &finite_tensors(model, path)?, metadata, wrap)
}

/// `model`'s tensors, to be saved at `path`: refused with [`CheckpointError::NonFiniteModel`]
/// when a weight is NaN or infinite (the one check every save makes before writing anything).
fn finite_tensors<E, D, M>(model: &M, path: &Path) -> Result<Vec<Stored>, CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    match find_non_finite(model) {
        Some(found) => Err(CheckpointError::NonFiniteModel {
            path: path.to_path_buf(),
            found,
        }),
        None => Ok(tensors(model)),
    }
}

/// Writes `tensors` to `path` atomically, through `wrap`.
fn write_tensors<S: Sink>(
    path: &Path,
    tensors: &[Stored],
    metadata: Option<HashMap<String, String>>,
    wrap: impl FnOnce(File) -> S,
) -> Result<(), CheckpointError> {
    let write = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map(|view| (t.name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|views| safetensors::serialize(views, &metadata));
    let bytes = match views {
        Ok(bytes) => bytes,
        // The views are built from the tensors' own shapes: this is a bug, not bad input.
        Err(e) => return Err(write(std::io::Error::other(describe(&e)))),
    };
    atomic::write_via(path, &bytes, wrap).map_err(write)
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
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(format_error(path))?;
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
/// same shapes and element type, all finite. On any error the model is left unchanged.
///
/// # Errors
/// [`CheckpointError::Read`] for a missing or unreadable file (or one that is not a regular
/// file), [`CheckpointError::Format`] for a file that is not safetensors,
/// [`CheckpointError::Mismatch`] for another network's weights (naming the tensor and both
/// shapes), [`CheckpointError::NonFiniteFile`] for weights that hold NaN or infinity.
pub fn load<E, D, M>(model: &mut M, path: &Path) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: LoadFromSafetensors<E, D>,
{
    check_and_load(model, path, &read(path)?)
}

/// The file's bytes; only a regular file is read (not `/dev/zero`, not a directory).
fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let err = |source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.is_dir() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a directory",
        )));
    }
    if !meta.is_file() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file",
        )));
    }
    std::fs::read(path).map_err(err)
}

fn format_error(path: &Path) -> impl Fn(SafeTensorError) -> CheckpointError + '_ {
    move |e| CheckpointError::Format {
        path: path.to_path_buf(),
        what: describe(&e),
    }
}

/// safetensors' errors in words: its own `Display` prints the variant's name
/// (`MetadataIncompleteBuffer`).
fn describe(e: &SafeTensorError) -> String {
    use SafeTensorError as E;
    match e {
        E::InvalidHeader => "its header is not valid UTF-8".into(),
        E::InvalidHeaderStart => "its header does not start with `{`".into(),
        E::InvalidHeaderDeserialization => "its header is not valid JSON".into(),
        E::HeaderTooLarge => "its header claims to be larger than 100 MB".into(),
        E::HeaderTooSmall => "it is shorter than the 8 bytes that give the header's length".into(),
        E::InvalidHeaderLength => "the header's length it gives exceeds the file".into(),
        E::TensorNotFound(name) => format!("it has no tensor `{name}`"),
        E::TensorInvalidInfo => "a tensor's shape and type do not match its byte range".into(),
        E::InvalidOffset(name) => format!("the byte range of tensor `{name}` is invalid"),
        E::IoError(e) => e.to_string(),
        E::JsonError(e) => format!("its header is not valid JSON ({e})"),
        E::InvalidTensorView(dtype, shape, len) => format!(
            "a tensor of type {} and shape {shape:?} cannot hold {len} bytes",
            dtype_name(*dtype)
        ),
        E::MetadataIncompleteBuffer => {
            "its tensors do not cover the file: it is cut short, or has bytes after them".into()
        }
        E::ValidationOverflow => "a tensor's size in the header overflows".into(),
    }
}

/// A safetensors type as its name is written in the format (`F32`), in lowercase.
fn dtype_name(dtype: SDtype) -> String {
    format!("{dtype:?}").to_lowercase()
}

/// The first non-finite value of a tensor stored as `dtype`, as [`NonFinite`]; integers are
/// always finite.
fn scan_bytes(name: &str, dtype: SDtype, data: &[u8]) -> Option<NonFinite> {
    // f16 and bf16 as their exponent bits: all ones is infinity (mantissa 0) or NaN.
    fn half(bits: u16, exp: u16, mantissa: u16, sign: u16) -> f64 {
        match (bits & exp == exp, bits & mantissa != 0, bits & sign != 0) {
            (false, _, _) => 0.0,
            (true, true, _) => f64::NAN,
            (true, false, false) => f64::INFINITY,
            (true, false, true) => f64::NEG_INFINITY,
        }
    }
    let u16s = || {
        data.chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    match dtype {
        SDtype::F64 => NonFinite::scan(
            name,
            data.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8"))),
        ),
        SDtype::F32 => NonFinite::scan(
            name,
            data.chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("chunks of 4")))),
        ),
        SDtype::F16 => NonFinite::scan(name, u16s().map(|b| half(b, 0x7c00, 0x03ff, 0x8000))),
        SDtype::BF16 => NonFinite::scan(name, u16s().map(|b| half(b, 0x7f80, 0x007f, 0x8000))),
        _ => None,
    }
}

/// [`load`]'s checks on the file's `bytes`, then the load itself, from those same bytes (so a
/// file replaced in between cannot slip past the checks).
fn check_and_load<E, D, M>(model: &mut M, path: &Path, bytes: &[u8]) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: LoadFromSafetensors<E, D>,
{
    let mut file = SafeTensors::deserialize(bytes).map_err(format_error(path))?;
    // Every difference is listed: a checkpoint of another network usually differs in several.
    let mut problems = Vec::new();
    let expected = layout::<E, D, M>();
    for Entry {
        name,
        shape,
        scalar,
    } in &expected
    {
        match (file.tensor(name), scalar) {
            // A scalar missing from the file keeps its default, as dfdx loads it.
            (Err(_), Some(_)) => {}
            (Err(_), None) => problems.push(format!(
                "it has no tensor `{name}` (the model needs {shape:?})"
            )),
            (Ok(t), Some(fits)) => {
                if t.dtype() != SDtype::F64 || !t.shape().is_empty() {
                    problems.push(format!(
                        "scalar `{name}` is a {} tensor of shape {:?} in the checkpoint, not \
                         an f64 of shape []",
                        dtype_name(t.dtype()),
                        t.shape()
                    ));
                } else {
                    let v = f64::from_le_bytes(t.data().try_into().expect("an f64 is 8 bytes"));
                    if v.is_finite() && !fits(v) {
                        problems.push(format!(
                            "scalar `{name}` is {v} in the checkpoint, out of its type's range"
                        ));
                    }
                }
            }
            (Ok(t), None) if t.shape() != shape.as_slice() => problems.push(format!(
                "tensor `{name}` is {:?} in the checkpoint but {shape:?} in the model",
                t.shape()
            )),
            (Ok(t), None) if t.dtype() != E::safe_dtype() => problems.push(format!(
                "tensor `{name}` is {} in the checkpoint but {} in the model",
                dtype_name(t.dtype()),
                dtype_name(E::safe_dtype())
            )),
            (Ok(_), None) => {}
        }
    }
    let mut extra: Vec<_> = file
        .names()
        .into_iter()
        .filter(|n| !expected.iter().any(|e| e.name == **n))
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
    for entry in &expected {
        if let Ok(t) = file.tensor(&entry.name) {
            if let Some(found) = scan_bytes(&entry.name, t.dtype(), t.data()) {
                return Err(CheckpointError::NonFiniteFile {
                    path: path.to_path_buf(),
                    found,
                });
            }
        }
    }
    // dfdx's loader, fed the bytes already checked: every name, shape and type is right, so
    // nothing is left for it to refuse halfway.
    M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut file,
    })
    .map(|_| ())
    .map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        what: match e {
            dfdx::tensor::safetensors::Error::SafeTensorError(e) => describe(&e),
            dfdx::tensor::safetensors::Error::MismatchedDimension((file, model)) => {
                format!("a tensor is {file:?} in the checkpoint but {model:?} in the model")
            }
            dfdx::tensor::safetensors::Error::IoError(e) => e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::tests::{Faulty, listing};
    use dfdx::prelude::*;

    type Net = (Linear<3, 4>, ReLU, Linear<4, 2>);

    #[test]
    fn a_full_disk_is_an_error_that_keeps_the_previous_file() {
        let dev = Cpu::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.safetensors");
        save(&dev.build_module::<Net, f32>(), &path).unwrap();
        let before = std::fs::read(&path).unwrap();

        let err = save_with(&dev.build_module::<Net, f32>(), &path, None, |file| {
            let mut sink = Faulty::new(file, &path);
            sink.fail_after = Some(40);
            sink
        })
        .unwrap_err();
        assert!(matches!(err, CheckpointError::Write { .. }), "{err:?}");
        assert_eq!(
            crate::error_chain(&err),
            format!(
                "could not save {} (any earlier file there is unchanged): {}",
                path.display(),
                crate::atomic::tests::disk_full()
            )
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(listing(dir.path()), ["net.safetensors"]);
    }

    #[test]
    fn describes_safetensors_errors_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Cpu::default();
        let path = dir.path().join("net.safetensors");
        save(&dev.build_module::<Net, f32>(), &path).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let mut model = dev.build_module::<Net, f32>();
        for (bytes, what) in [
            (
                &whole[..whole.len() - 5],
                "it is cut short, or has bytes after them",
            ),
            (&whole[..3], "shorter than the 8 bytes"),
            (
                &b"\x02\x00\x00\x00\x00\x00\x00\x00[]"[..],
                "does not start with `{`",
            ),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let msg = load(&mut model, &path).unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!(
                    "{} is not a safetensors checkpoint: ",
                    path.display()
                )) && msg.contains(what),
                "{msg}"
            );
        }
    }
}
