//! For the chapter-8 examples' tests: d2l's own PyTorch network (`bench/d2l_ch8.py`), its
//! `state_dict` loaded into the example's `cnn!` twin with `cnn::checkpoint::load_pytorch` and
//! no key map, and the logits compared. PyTorch is needed only to write the file; without it
//! (as in CI) the test says so and passes.

use cnn::prelude::*;
use dfdx::nn::tensor_collection::TensorCollection;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "python.rs"]
mod python;
use python::python;

/// What `bench/d2l_ch8.py --export` wrote for one network.
struct Twin {
    /// The `state_dict`, as `safetensors.torch.save_file` writes it.
    weights: PathBuf,
    /// Two random images, `[2, 1, size, size]`, row-major.
    input: Vec<f32>,
    /// PyTorch's logits for them in inference mode, `[2, 10]`.
    logits: Vec<f32>,
    /// Removed when dropped.
    _dir: tempfile::TempDir,
}

/// Runs d2l's definition of `name` (`alexnet`, ..., `densenet`) in PyTorch and returns its
/// files; `None`, after saying why, when PyTorch is not installed.
fn export(name: &str) -> Option<Twin> {
    let Some(python) = python() else {
        eprintln!(
            "skipped: loading d2l's PyTorch weights for `{name}` needs Python with torch and \
             safetensors (set CNN_PYTHON, or run ../shared/bench/compare.sh once to make \
             ~/.cache/cnn-bench/venv)"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/d2l_ch8.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg("--export")
        .arg(dir.path())
        .arg(name)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let io = std::fs::read(dir.path().join(format!("{name}.io.safetensors"))).expect("io file");
    let io = ::safetensors::SafeTensors::deserialize(&io).expect("a safetensors file");
    let floats = |key: &str| -> Vec<f32> {
        io.tensor(key)
            .expect("written by the script")
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect()
    };
    Some(Twin {
        weights: dir.path().join(format!("{name}.safetensors")),
        input: floats("input"),
        logits: floats("logits"),
        _dir: dir,
    })
}

/// `ours` within `rel` of PyTorch's `theirs`, relative to the largest of PyTorch's magnitudes.
#[track_caller]
fn assert_logits_close(ours: &[f32], theirs: &[f32], rel: f32) {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("logits: largest difference from PyTorch's {diff:e} (largest logit {scale:e})");
    assert!(
        diff <= rel * scale,
        "logits differ from PyTorch's by {diff:e} (largest {scale:e})\n ours   {ours:?}\n theirs {theirs:?}"
    );
}

/// The test each chapter-8 example runs: d2l's PyTorch `name` exported, its `state_dict`
/// loaded into `M` (`[1, S, S]` images, 10 classes) with no key map, and the logits of both
/// compared (relative 1e-4); skipped, saying so, without PyTorch.
pub fn check<M, const S: usize>(name: &str)
where
    M: BuildOnDevice<Cpu, f32>,
    M::Built: TensorCollection<f32, Cpu>
        + Module<Tensor<Rank4<2, 1, S, S>, f32, Cpu>, Output = Tensor<Rank2<2, 10>, f32, Cpu>>,
{
    let Some(twin) = export(name) else {
        return;
    };
    let dev = Cpu::default();
    let mut net = dev.build_module::<M, f32>();
    cnn::checkpoint::load_pytorch(&mut net, &twin.weights).unwrap();
    let x = dev.tensor_from_vec(twin.input.clone(), (Const, Const, Const, Const));
    assert_logits_close(&net.forward(x).as_vec(), &twin.logits, 1e-4);
}
