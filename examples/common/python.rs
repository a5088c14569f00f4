//! The Python that has PyTorch and safetensors, for the tests that compare with PyTorch
//! (`tests/pytorch.rs`, the chapter-8 examples): PyTorch is needed only there, and where it is
//! missing (as in CI) those tests say so and pass.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `$CNN_PYTHON`, or the venv that `../shared/bench/compare.sh` makes, or `python3`: the first
/// that imports `torch` and `safetensors`; `None` when none does.
pub fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cache/cnn-bench/venv/bin/python"));
    let candidates = std::env::var_os("CNN_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(venv)
        .chain([PathBuf::from("python3")]);
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import torch, safetensors"])
            .output()
            .is_ok_and(|out| out.status.success())
    })
}
