//! PyTorch's `state_dict`s, as safetensors files.
//!
//! A `cnn!` network names its tensors as PyTorch names the module that mirrors it (the rule is
//! in [`cnn!`](crate::cnn)'s docs), so a file written by
//! `safetensors.torch.save_file(module.state_dict(), path)` loads by key alone. What differs
//! from the crate's own checkpoints:
//! - the file is checked as PyTorch's `load_state_dict(strict=True)` checks it (every missing
//!   and every unexpected key), plus every shape and element type, and all are reported at
//!   once; nothing of the model changes unless everything fits;
//! - `f32` and `f64` files load into `f32` and `f64` models alike (converted value by value);
//! - batch norm's `num_batches_tracked` is read (an integer, as PyTorch stores it) and written
//!   as PyTorch writes it; when a file lacks it, the count stays, as PyTorch's loader allows
//!   for files of its versions before 0.4.1; `epsilon` and `momentum`, which are arguments of
//!   PyTorch's constructor rather than state, are neither read nor written;
//! - no layer table is recorded or checked: the file comes from another framework.

use super::{
    CheckpointError, Stored, describe, dtype_name, finite_tensors, layout, read, scan_bytes,
};
use dfdx::nn::tensor_collection::{
    RecursiveWalker, ScalarOptions, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut,
    ViewTensorName,
};
use dfdx::shapes::{Dtype, Shape};
use dfdx::tensor::Tensor;
use dfdx::tensor::safetensors::SafeDtype;
use dfdx::tensor_ops::Device;
use safetensors::tensor::{Dtype as SDtype, SafeTensors};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

/// The scalar setting that PyTorch keeps in a `state_dict` (batch norm's batch count); the
/// others (`epsilon`, `momentum`) are its constructor's arguments.
const COUNT: &str = "num_batches_tracked";

/// Whether a model scalar named `name` is a key of PyTorch's `state_dict`.
fn is_count(name: &str) -> bool {
    name.rsplit('.').next() == Some(COUNT)
}

/// A tensor whose shape differs between the file and the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The key (`net.0.weight`).
    pub key: String,
    /// Its shape in the file.
    pub file: Vec<usize>,
    /// Its shape in the network.
    pub model: Vec<usize>,
}

/// How a `state_dict` differs from a network: what PyTorch's strict load reports (missing and
/// unexpected keys), and shapes and element types. Each list is sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDictReport {
    /// Keys the network has and the file lacks.
    pub missing: Vec<String>,
    /// Keys the file has and the network lacks.
    pub unexpected: Vec<String>,
    /// Keys whose shapes differ.
    pub shapes: Vec<ShapeMismatch>,
    /// Keys whose element type cannot be loaded, with that type (`f16`, `i64`): tensors load
    /// from `f32` and `f64`, the batch count from an integer.
    pub dtypes: Vec<(String, String)>,
}

impl StateDictReport {
    /// Whether the file fits.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.shapes.is_empty()
            && self.dtypes.is_empty()
    }
}

impl fmt::Display for StateDictReport {
    /// As PyTorch words it (`Missing key(s) in state_dict: "a", "b".`), one kind of problem
    /// per sentence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |keys: &[String]| {
            keys.iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "missing key(s) in state_dict: {}.",
                quoted(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "unexpected key(s) in state_dict: {}.",
                quoted(&self.unexpected)
            ));
        }
        for m in &self.shapes {
            parts.push(format!(
                "size mismatch for {}: the file's shape is {:?}, the network's {:?}.",
                m.key, m.file, m.model
            ));
        }
        for (key, dtype) in &self.dtypes {
            parts.push(format!(
                "{key} is {dtype}, which cannot be loaded (tensors are read from f32 or f64)."
            ));
        }
        f.write_str(&parts.join(" "))
    }
}

/// Loads the `state_dict` of the PyTorch module that mirrors `model` from a safetensors file
/// (`safetensors.torch.save_file(module.state_dict(), path)`), with no key map: a `cnn!`
/// network's keys are PyTorch's (the rule is in [`cnn!`](crate::cnn)'s docs).
///
/// - The file is checked as PyTorch's `load_state_dict(strict=True)` checks it (every missing
///   and every unexpected key), plus every shape and element type, and all are reported at
///   once; nothing of the model changes unless everything fits.
/// - `f32` and `f64` files load into `f32` and `f64` models alike, converted value by value.
/// - Batch norm's `num_batches_tracked` is read (an integer, as PyTorch stores it); when the
///   file lacks it the count stays, as PyTorch's loader allows for files of its versions
///   before 0.4.1. `epsilon` and `momentum` are arguments of PyTorch's constructor, not state:
///   they are not read.
/// - No layer table is checked (the file comes from another framework; see
///   [`load_network`](super::load_network) for the crate's own files).
///
/// ```no_run
/// use cnn::prelude::*;
/// cnn! {
///     /// d2l's `LeNet`: its `self.net` is the named group `net`.
///     pub struct LeNet: [1, 28, 28] -> [10] {
///         net: {
///             conv2d(6, kernel = 5, padding = 2), sigmoid, avg_pool2d(kernel = 2),
///             conv2d(16, kernel = 5), sigmoid, avg_pool2d(kernel = 2),
///             flatten, linear(120), sigmoid, linear(84), sigmoid, linear(10),
///         }
///     }
/// }
/// let mut model = Cpu::default().build_module::<LeNet, f32>();
/// cnn::checkpoint::load_pytorch(&mut model, "lenet.safetensors")?;
/// # Ok::<(), cnn::checkpoint::CheckpointError>(())
/// ```
///
/// # Errors
/// [`CheckpointError::StateDict`] lists every missing and unexpected key, every shape that
/// differs (the file's and the network's) and every element type that cannot be loaded;
/// [`CheckpointError::Read`], [`CheckpointError::Format`] and
/// [`CheckpointError::NonFiniteFile`] as for [`load`](super::load);
/// [`CheckpointError::OutOfRange`] when an `f64` file holds a value too large for an `f32`
/// model. On any error the model is unchanged.
pub fn load_pytorch<E, D, M>(model: &mut M, path: impl AsRef<Path>) -> Result<(), CheckpointError>
where
    E: Dtype + num_traits::Float,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let path = path.as_ref();
    let bytes = read(path)?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        what: describe(&e),
    })?;
    let expected: Vec<_> = layout::<E, D, M>()
        .into_iter()
        .filter(|e| e.scalar.is_none() || is_count(&e.name))
        .collect();
    let mut report = StateDictReport::default();
    // The first NaN or infinity, and the first tensor with values too large for the model's
    // type, reported only if the file otherwise fits.
    let mut non_finite = None;
    let mut out_of_range = None;
    for entry in &expected {
        let count = entry.scalar.is_some();
        let Ok(t) = file.tensor(&entry.name) else {
            // (PyTorch's own loader fills in a missing count too.)
            if !count {
                report.missing.push(entry.name.clone());
            }
            continue;
        };
        if t.shape() != entry.shape.as_slice() {
            report.shapes.push(ShapeMismatch {
                key: entry.name.clone(),
                file: t.shape().to_vec(),
                model: entry.shape.clone(),
            });
        }
        let loadable = match count {
            true => int_value(t.dtype(), t.data()).is_some_and(|v| v >= 0),
            false => matches!(t.dtype(), SDtype::F32 | SDtype::F64),
        };
        if !loadable {
            report
                .dtypes
                .push((entry.name.clone(), dtype_name(t.dtype())));
        }
        if non_finite.is_none() {
            non_finite = scan_bytes(&entry.name, t.dtype(), t.data());
        }
        // An f64 file's finite values must fit the model's type (into f32, 4e38 would load as
        // infinity).
        let max = num_traits::ToPrimitive::to_f64(&E::max_value()).unwrap_or(f64::INFINITY);
        if out_of_range.is_none() && !count && t.dtype() == SDtype::F64 {
            let values = t
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")));
            let mut first = None;
            let mut n = 0;
            for (i, v) in values.enumerate() {
                if v.is_finite() && v.abs() > max {
                    first.get_or_insert((i, v));
                    n += 1;
                }
            }
            if let Some((index, value)) = first {
                out_of_range = Some((entry.name.clone(), n, index, value, max));
            }
        }
    }
    let known: BTreeSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    report.unexpected = file
        .names()
        .into_iter()
        .filter(|n| !known.contains(n.as_str()))
        .cloned()
        .collect();
    report.missing.sort();
    report.unexpected.sort();
    report.shapes.sort_by(|a, b| a.key.cmp(&b.key));
    report.dtypes.sort();
    if !report.is_empty() {
        return Err(CheckpointError::StateDict {
            path: path.to_path_buf(),
            report,
        });
    }
    if let Some(found) = non_finite {
        return Err(CheckpointError::NonFiniteFile {
            path: path.to_path_buf(),
            found,
        });
    }
    if let Some((tensor, count, index, value, max)) = out_of_range {
        return Err(CheckpointError::OutOfRange {
            path: path.to_path_buf(),
            tensor,
            count,
            index,
            value,
            max,
        });
    }
    // Everything is checked: the copy cannot fail halfway.
    struct Copy<'a>(SafeTensors<'a>);
    impl<E: Dtype + num_traits::Float, D: Device<E>> TensorVisitor<E, D> for Copy<'_> {
        type Viewer = (ViewTensorMut, ViewTensorName);
        type Err = std::convert::Infallible;
        type E2 = E;
        type D2 = D;
        fn visit<S: Shape>(
            &mut self,
            _: TensorOptions<S, E, D>,
            (t, name): (&mut Tensor<S, E, D>, String),
        ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
            let v = self.0.tensor(&name).expect("checked above");
            let values: Vec<E> = match v.dtype() {
                SDtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .map(|x| E::from(x).expect("a finite float converts"))
                    .collect(),
                _ => v
                    .data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .map(|x| E::from(x).expect("a finite float converts"))
                    .collect(),
            };
            if !values.is_empty() {
                t.copy_from(&values);
            }
            Ok(None)
        }
        fn visit_scalar<N: num_traits::NumCast>(
            &mut self,
            _: ScalarOptions<N>,
            (n, name): (&mut N, String),
        ) -> Result<Option<N>, Self::Err> {
            if is_count(&name)
                && let Ok(v) = self.0.tensor(&name)
                && let Some(count) = int_value(v.dtype(), v.data()).and_then(N::from)
            {
                *n = count;
            }
            Ok(None)
        }
    }
    let Ok(_) = M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut Copy(file),
    });
    Ok(())
}

/// The value of a one-element integer tensor (PyTorch's `num_batches_tracked` is an `int64`
/// of shape `[]`).
fn int_value(dtype: SDtype, data: &[u8]) -> Option<i64> {
    Some(match dtype {
        SDtype::I64 => i64::from_le_bytes(data.try_into().ok()?),
        SDtype::I32 => i32::from_le_bytes(data.try_into().ok()?).into(),
        SDtype::U8 => u8::from_le_bytes(data.try_into().ok()?).into(),
        _ => return None,
    })
}

/// Writes `model`'s weights as the `state_dict` of the PyTorch module that mirrors it, which
/// `module.load_state_dict(safetensors.torch.load_file(path))` accepts with `strict=True`:
/// the model's keys, its element type (`f32` or `f64`), batch norm's `num_batches_tracked` as
/// an `int64`, and the metadata `format: pt` that `safetensors.torch` writes. The file is
/// written atomically, as by [`save`](super::save).
///
/// # Errors
/// As [`save`](super::save): [`CheckpointError::NonFiniteModel`] (nothing written) and
/// [`CheckpointError::Write`]; the file that was at `path` is then unchanged.
pub fn save_pytorch<E, D, M>(model: &M, path: impl AsRef<Path>) -> Result<(), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let path = path.as_ref();
    let tensors: Vec<Stored> = finite_tensors(model, path)?
        .into_iter()
        .filter(|t| !t.scalar || is_count(&t.name))
        .map(|t| match t.scalar {
            false => t,
            true => {
                let count = f64::from_le_bytes(t.bytes[..].try_into().expect("an f64"));
                Stored {
                    dtype: SDtype::I64,
                    bytes: (count as i64).to_le_bytes().to_vec(),
                    ..t
                }
            }
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    super::write_tensors(path, &tensors, Some(metadata), |file| file)
}
