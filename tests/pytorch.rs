//! PyTorch weights in and out: `load_pytorch` reads the `state_dict`s of PyTorch modules that
//! the `cnn!` networks here mirror (goldens from `tests/goldens/pytorch.py`, PyTorch 2.15.0),
//! with no key map, and gives PyTorch's logits; it refuses what does not fit as PyTorch's
//! strict load would, plus shapes and element types, leaving the model as it was;
//! `save_pytorch` writes what PyTorch's strict load accepts (checked by PyTorch itself when it
//! is installed).

mod common;
#[path = "../examples/common/python.rs"]
mod python;

use cnn::checkpoint::{
    CheckpointError, ShapeMismatch, StateDictReport, load_pytorch, save_pytorch,
};
use cnn::prelude::*;
use common::TestDevice;
use std::path::{Path, PathBuf};

type Dev = TestDevice;

cnn! {
    /// d2l 7.6's `LeNet`: its layers are in `self.net`.
    pub struct LeNet: [1, 28, 28] -> [10] {
        net: {
            conv2d(6, kernel = 5, padding = 2), sigmoid,
            avg_pool2d(kernel = 2, stride = 2),
            conv2d(16, kernel = 5), sigmoid,
            avg_pool2d(kernel = 2, stride = 2),
            flatten,
            linear(120), sigmoid,
            linear(84), sigmoid,
            linear(10),
        }
    }

    /// A function that returns `nn.Sequential(*layers)`, the layers built in a loop.
    block Stage(c) {
        repeat(2) { conv2d(c, kernel = 3, padding = 1, bias = false), batch_norm2d, relu },
    }

    /// A squeeze-and-excitation class whose gate is its attribute `gate`.
    block SE(r = 2) {
        scale { gate: { adaptive_avg_pool2d(1), flatten, linear(C / r), relu, linear(C), sigmoid } }
    }

    /// `Constructs` of `tests/goldens/pytorch.py`.
    pub struct Constructs: [3, 8, 8] -> [5] {
        stem: { conv2d(4, kernel = 3, padding = 1), relu },
        { Stage(4), SE },
        sum { { conv2d(4, kernel = 1), relu6 }, identity, conv2d(4, kernel = 3, padding = 1, groups = 4) },
        up: conv_transpose2d(2, kernel = 2, stride = 2),
        blocks: repeat(2) { conv2d(2, kernel = 3, padding = 1), batch_norm2d, relu },
        adaptive_avg_pool2d(1), flatten,
        linear(5, bias = false),
    }

    /// LeNet with the last layer one class short: a shape mismatch.
    pub struct LeNet9: [1, 28, 28] -> [9] {
        net: {
            conv2d(6, kernel = 5, padding = 2), sigmoid,
            avg_pool2d(kernel = 2, stride = 2),
            conv2d(16, kernel = 5), sigmoid,
            avg_pool2d(kernel = 2, stride = 2),
            flatten,
            linear(120), sigmoid,
            linear(84), sigmoid,
            linear(9),
        }
    }

    /// LeNet without the `net` wrapper and with ReLU: other keys.
    pub struct Flat: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), relu,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), relu,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), relu,
        linear(84), relu,
        linear(10),
    }
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/goldens/{name}.safetensors"))
}

/// The `input` and `logits` of a case's io file, as `f64`s (from `f32` or `f64`).
fn io(case: &str) -> (Vec<f64>, Vec<f64>) {
    let bytes = std::fs::read(golden(&format!("torch_{case}.io"))).unwrap();
    let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let read = |key: &str| -> Vec<f64> {
        let t = file.tensor(key).unwrap();
        match t.dtype() {
            ::safetensors::Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()).into())
                .collect(),
            _ => t
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        }
    };
    (read("input"), read("logits"))
}

/// `ours` within `rel` of `theirs`, relative to the largest of `theirs`.
#[track_caller]
fn assert_close(ours: &[f64], theirs: &[f64], rel: f64) {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = common::max_diff(ours, theirs);
    assert!(
        diff <= rel * scale,
        "differ by {diff:e} (largest {scale:e})\n ours   {ours:?}\n theirs {theirs:?}"
    );
}

fn f64s(v: Vec<f32>) -> Vec<f64> {
    v.into_iter().map(f64::from).collect()
}

#[test]
fn d2l_lenet_loads_and_gives_pytorchs_logits() {
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<LeNet, f32>();
    load_pytorch(&mut model, golden("torch_lenet")).unwrap();
    let (x, logits) = io("lenet");
    let x = dev.tensor_from_vec(
        x.iter().map(|&v| v as f32).collect(),
        (Const::<2>, Const::<1>, Const::<28>, Const::<28>),
    );
    assert_close(&f64s(model.forward(x).as_vec()), &logits, 1e-5);
}

/// Every construct's keys, f64 and f32 files into f64 and f32 models, and batch norm's
/// `num_batches_tracked` read as PyTorch's `int64`.
#[test]
fn constructs_load_from_f32_and_f64_into_f32_and_f64() {
    let dev: Dev = Default::default();
    for case in ["constructs64", "constructs32"] {
        let (x, logits) = io(case);
        // The file's own type is exact; the other one is as close as f32 allows.
        let (rel64, rel32) = if case == "constructs64" {
            (1e-12, 1e-5)
        } else {
            (1e-5, 1e-5)
        };
        let mut m64 = dev.build_module::<Constructs, f64>();
        load_pytorch(&mut m64, golden(&format!("torch_{case}"))).unwrap();
        let y = m64.forward(dev.tensor_from_vec(x.clone(), (Const::<2>, Const, Const, Const)));
        assert_close(&y.as_vec(), &logits, rel64);
        assert_eq!(m64.blocks._1._1.num_batches_tracked, 2);
        assert_eq!(m64._1._0._4.num_batches_tracked, 2);

        let mut m32 = dev.build_module::<Constructs, f32>();
        load_pytorch(&mut m32, golden(&format!("torch_{case}"))).unwrap();
        let x32 = x.iter().map(|&v| v as f32).collect();
        let y = m32.forward(dev.tensor_from_vec(x32, (Const::<2>, Const, Const, Const)));
        assert_close(&f64s(y.as_vec()), &logits, rel32);
    }
}

/// The keys `cnn!` gives each construct, against the file PyTorch wrote.
#[test]
fn keys_are_pytorchs() {
    let bytes = std::fs::read(golden("torch_constructs64")).unwrap();
    let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut theirs: Vec<String> = file.names().into_iter().cloned().collect();
    theirs.sort();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.safetensors");
    let dev: Dev = Default::default();
    save_pytorch(&dev.build_module::<Constructs, f64>(), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let ours_file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut ours: Vec<String> = ours_file.names().into_iter().cloned().collect();
    ours.sort();
    assert_eq!(ours, theirs);
    // A few, spelled out: a named group's entry; an unnamed group's block (its loop spliced
    // in) and its class attribute; a sum's branch; a named repeat's copy.
    for key in [
        "stem.0.weight",
        "1.0.3.weight",
        "1.0.4.num_batches_tracked",
        "1.1.gate.4.weight",
        "2.weight",
        "4.weight",
        "up.weight",
        "blocks.1.1.running_var",
        "9.weight",
    ] {
        assert!(ours.iter().any(|k| k == key), "{key} in {ours:?}");
    }
    // As PyTorch writes them: the model's type, the count an int64, the metadata.
    let (_, header) = ::safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        header.metadata().as_ref().unwrap().get("format").unwrap(),
        "pt"
    );
    let count = ours_file.tensor("blocks.0.1.num_batches_tracked").unwrap();
    assert_eq!(count.dtype(), ::safetensors::Dtype::I64);
    assert!(count.shape().is_empty());
    assert_eq!(
        ours_file.tensor("stem.0.weight").unwrap().dtype(),
        ::safetensors::Dtype::F64
    );
}

/// Out and back in: `save_pytorch` then `load_pytorch` gives the same network, from f32 to
/// f64, with the batch count kept.
#[test]
fn save_then_load_round_trips() {
    let dev: Dev = Default::default();
    let mut model = dev.build_module::<Constructs, f32>();
    // One training step: the running statistics and the count move.
    let x: Tensor<Rank4<4, 3, 8, 8>, f32, Dev> = dev.sample_normal();
    let _ = model.forward_mut(x.clone().traced(model.alloc_grads()));
    assert_eq!(model.blocks._0._1.num_batches_tracked, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("constructs.safetensors");
    save_pytorch(&model, &path).unwrap();
    let mut back = dev.build_module::<Constructs, f64>();
    load_pytorch(&mut back, &path).unwrap();
    assert_eq!(back.blocks._0._1.num_batches_tracked, 1);
    let ours = model.forward(x.clone()).as_vec();
    let x64 = dev.tensor_from_vec(f64s(x.as_vec()), (Const::<4>, Const, Const, Const));
    assert_close(&back.forward(x64).as_vec(), &f64s(ours), 1e-6);
}

/// What PyTorch's strict load reports (every missing and unexpected key) and the shapes,
/// all at once; the model is unchanged.
#[test]
fn another_networks_file_is_refused_key_by_key() {
    let dev: Dev = Default::default();
    let x: Tensor<Rank4<2, 1, 28, 28>, f32, Dev> = dev.sample_normal();

    // LeNet's file into the network without `net`: every key differs.
    let mut flat = dev.build_module::<Flat, f32>();
    let before = flat.forward(x.clone()).as_vec();
    let err = load_pytorch(&mut flat, golden("torch_lenet")).unwrap_err();
    let CheckpointError::StateDict { report, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(report.missing.len(), 10);
    assert_eq!(report.unexpected.len(), 10);
    assert!(report.missing.contains(&"0.weight".to_string()));
    assert!(report.unexpected.contains(&"net.0.weight".to_string()));
    let msg = err.to_string();
    assert!(
        msg.contains(
            "does not fit this network: missing key(s) in state_dict: \"0.bias\", \"0.weight\""
        ) && msg.contains("unexpected key(s) in state_dict: \"net.0.bias\""),
        "{msg}"
    );
    assert_eq!(flat.forward(x.clone()).as_vec(), before);

    // One class short: the shapes, the file's and the network's.
    let mut short = dev.build_module::<LeNet9, f32>();
    let err = load_pytorch(&mut short, golden("torch_lenet")).unwrap_err();
    let CheckpointError::StateDict { report, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        *report,
        StateDictReport {
            shapes: vec![
                ShapeMismatch {
                    key: "net.11.bias".into(),
                    file: vec![10],
                    model: vec![9],
                },
                ShapeMismatch {
                    key: "net.11.weight".into(),
                    file: vec![10, 84],
                    model: vec![9, 84],
                },
            ],
            ..Default::default()
        }
    );
    assert!(
        err.to_string().contains(
            "size mismatch for net.11.weight: the file's shape is [10, 84], the network's [9, 84]."
        ),
        "{err}"
    );
}

/// A tensor of a file: name, element type, shape, bytes.
type Raw = (String, ::safetensors::Dtype, Vec<usize>, Vec<u8>);

/// Writes `tensors` (name, dtype, shape, bytes) as a safetensors file.
fn write_file(path: &Path, tensors: &[(&str, ::safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<_> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                *name,
                ::safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, ::safetensors::serialize(views, &None).unwrap()).unwrap();
}

/// The tensors of a `save_pytorch` file, to be edited.
fn tensors_of(path: &Path) -> Vec<Raw> {
    let bytes = std::fs::read(path).unwrap();
    let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, t)| (name, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect()
}

/// Element types: f16 named; a file without `num_batches_tracked` loads (as PyTorch allows);
/// NaN refused; corrupt, cut and missing files named. The model is unchanged each time.
#[test]
fn bad_files_are_named_and_change_nothing() {
    let dev: Dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    save_pytorch(&dev.build_module::<Constructs, f32>(), &good).unwrap();
    let mut model = dev.build_module::<Constructs, f32>();
    let x: Tensor<Rank4<2, 3, 8, 8>, f32, Dev> = dev.sample_normal();
    let before = model.forward(x.clone()).as_vec();
    let all = tensors_of(&good);
    let edit = |f: &dyn Fn(&mut Vec<Raw>)| {
        let mut t = all.clone();
        f(&mut t);
        let path = dir.path().join("edited.safetensors");
        let refs: Vec<_> = t
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
            .collect();
        write_file(&path, &refs);
        path
    };

    // A half-precision tensor: named with its type.
    let path = edit(&|t| {
        let w = t.iter_mut().find(|t| t.0 == "9.weight").unwrap();
        w.1 = ::safetensors::Dtype::F16;
        w.3.truncate(w.3.len() / 2);
    });
    let err = load_pytorch(&mut model, &path).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "9.weight is f16, which cannot be loaded (tensors are read from f32 or f64)."
        ),
        "{err}"
    );

    // Without the counts: loads, and the counts stay.
    let path = edit(&|t| t.retain(|t| !t.0.ends_with("num_batches_tracked")));
    let mut other = dev.build_module::<Constructs, f32>();
    load_pytorch(&mut other, &path).unwrap();
    assert_eq!(other.forward(x.clone()).as_vec(), {
        let mut m = dev.build_module::<Constructs, f32>();
        load_pytorch(&mut m, &good).unwrap();
        m.forward(x.clone()).as_vec()
    });

    // A NaN: refused, naming the tensor.
    let path = edit(&|t| {
        let w = t.iter_mut().find(|t| t.0 == "up.bias").unwrap();
        w.3[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let err = load_pytorch(&mut model, &path).unwrap_err();
    assert!(
        matches!(err, CheckpointError::NonFiniteFile { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("`up.bias`"), "{err}");

    // An f64 file with a value too large for f32 (it would load as infinity): refused,
    // naming the tensor, the value and where it is.
    let path = edit(&|t| {
        let w = t.iter_mut().find(|t| t.0 == "up.bias").unwrap();
        let values: Vec<f64> =
            w.3.chunks_exact(4)
                .enumerate()
                .map(|(i, b)| match i {
                    1 => 4e38,
                    _ => f64::from(f32::from_le_bytes(b.try_into().unwrap())),
                })
                .collect();
        w.1 = ::safetensors::Dtype::F64;
        w.3 = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    });
    let err = load_pytorch(&mut model, &path).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::OutOfRange {
                index: 1,
                count: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("`up.bias` holds 1 value(s) beyond f32's range"),
        "{err}"
    );
    // The same file loads into an f64 model.
    load_pytorch(&mut dev.build_module::<Constructs, f64>(), &path).unwrap();

    // Cut short, not safetensors, missing, a directory.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let err = load_pytorch(&mut model, &cut).unwrap_err();
    assert!(matches!(err, CheckpointError::Format { .. }), "{err:?}");
    assert!(err.to_string().contains("cut short"), "{err}");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not weights").unwrap();
    let err = load_pytorch(&mut model, &text).unwrap_err();
    assert!(matches!(err, CheckpointError::Format { .. }), "{err:?}");
    let err = load_pytorch(&mut model, dir.path().join("nope.safetensors")).unwrap_err();
    assert!(matches!(err, CheckpointError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.safetensors"), "{err}");
    let err = load_pytorch(&mut model, dir.path()).unwrap_err();
    assert!(matches!(err, CheckpointError::Read { .. }), "{err:?}");

    assert_eq!(model.forward(x).as_vec(), before);
}

/// PyTorch itself loads what `save_pytorch` writes, with `strict=True`, and gives our logits
/// (`tests/goldens/pytorch.py --check`); skipped, saying so, without PyTorch.
#[test]
fn pytorch_loads_what_we_save() {
    let python = python::python();
    let Some(python) = python else {
        eprintln!(
            "skipped: checking that PyTorch loads our files needs Python with torch and \
             safetensors (set CNN_PYTHON, or run ../shared/bench/compare.sh once)"
        );
        return;
    };
    let dev: Dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    // Our own weights (not PyTorch's): the twin must take them as they are.
    let mut model = dev.build_module::<Constructs, f64>();
    let batch: Tensor<Rank4<4, 3, 8, 8>, f64, Dev> = dev.sample_normal();
    let _ = model.forward_mut(batch.traced(model.alloc_grads()));
    let x: Tensor<Rank4<2, 3, 8, 8>, f64, Dev> = dev.sample_normal();
    let y = model.forward(x.clone());
    let weights = dir.path().join("ours.safetensors");
    save_pytorch(&model, &weights).unwrap();
    let io = dir.path().join("ours.io.safetensors");
    let (xv, yv) = (x.as_vec(), y.as_vec());
    let bytes = |v: &[f64]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    write_file(
        &io,
        &[
            (
                "input",
                ::safetensors::Dtype::F64,
                vec![2, 3, 8, 8],
                bytes(&xv),
            ),
            ("logits", ::safetensors::Dtype::F64, vec![2, 5], bytes(&yv)),
        ],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/pytorch.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg("--check")
        .arg(&weights)
        .arg(&io)
        .arg("constructs64")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PyTorch refused our file or disagreed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
