//! Checkpoints: a round trip restores outputs exactly; another network's weights, a missing
//! file and a corrupt file are refused with errors that say what is wrong, leaving the model
//! as it was; a save replaces the file only once complete.

mod common;

use cnn::checkpoint::{CheckpointError, load, load_network, save, save_network};
use cnn::prelude::*;
use common::TestDevice;

cnn! {
    struct Net: [1, 12, 12] -> [4] {
        conv2d(3, kernel = 3), relu,
        max_pool2d(kernel = 2),
        flatten,
        linear(16), relu,
        linear(4),
    }
    // The same stack with a wider hidden layer: same tensor names, other shapes.
    struct Wider: [1, 12, 12] -> [4] {
        conv2d(3, kernel = 3), relu,
        max_pool2d(kernel = 2),
        flatten,
        linear(32), relu,
        linear(4),
    }
    // The same tensors as Net, other layers: only the recorded layer table tells them apart.
    struct NetTanh: [1, 12, 12] -> [4] {
        conv2d(3, kernel = 3), tanh,
        max_pool2d(kernel = 2),
        flatten,
        linear(16), relu,
        linear(4),
    }
    // Another stack altogether: a tensor Net does not have.
    struct Deeper: [1, 12, 12] -> [4] {
        conv2d(3, kernel = 3), relu,
        conv2d(3, kernel = 3), relu,
        max_pool2d(kernel = 2),
        flatten,
        linear(16), relu,
        linear(4),
    }
}

fn input(dev: &TestDevice) -> Tensor<Rank4<2, 1, 12, 12>, f32, TestDevice> {
    dev.sample_normal()
}

#[test]
fn round_trip_restores_outputs_exactly() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/net.safetensors");
    let model = dev.build_module::<Net, f32>();
    save(&model, &path).unwrap();
    let mut other = dev.build_module::<Net, f32>();
    let x = input(&dev);
    assert_ne!(
        model.forward(x.clone()).array(),
        other.forward(x.clone()).array()
    );
    load(&mut other, &path).unwrap();
    assert_eq!(model.forward(x.clone()).array(), other.forward(x).array());
    // no temporary file is left behind
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1
    );
}

#[test]
fn another_networks_checkpoint_is_refused_and_the_model_kept() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wider.safetensors");
    save(&dev.build_module::<Wider, f32>(), &path).unwrap();
    let mut model = dev.build_module::<Net, f32>();
    let x = input(&dev);
    let before = model.forward(x.clone()).array();
    let err = load(&mut model, &path).unwrap_err();
    assert!(matches!(err, CheckpointError::Mismatch { .. }));
    let msg = err.to_string();
    assert!(msg.contains("linear1.weight"), "{msg}");
    assert!(
        msg.contains("[32, 75]") && msg.contains("[16, 75]"),
        "{msg}"
    );
    assert_eq!(model.forward(x).array(), before);

    let path = dir.path().join("deeper.safetensors");
    save(&dev.build_module::<Deeper, f32>(), &path).unwrap();
    let msg = load(&mut model, &path).unwrap_err().to_string();
    assert!(msg.contains("conv2"), "{msg}");
}

#[test]
fn a_missing_or_corrupt_file_is_a_clear_error() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let mut model = dev.build_module::<Net, f32>();
    let missing = dir.path().join("nope.safetensors");
    let err = load(&mut model, &missing).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }));
    assert!(err.to_string().contains("nope.safetensors"), "{err}");

    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(
        &corrupt,
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!",
    )
    .unwrap();
    let err = load(&mut model, &corrupt).unwrap_err();
    assert!(matches!(err, CheckpointError::Format { .. }), "{err}");
    assert!(err.to_string().contains("corrupt.safetensors"), "{err}");
}

#[test]
fn a_failed_save_keeps_the_previous_checkpoint() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    let model = dev.build_module::<Net, f32>();
    save(&model, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // The temporary file's place is taken by a folder, so the save fails before the rename.
    std::fs::create_dir(dir.path().join("net.safetensors.part")).unwrap();
    assert!(save(&dev.build_module::<Net, f32>(), &path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_network_checkpoint_records_its_layers() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    let model = dev.build_module::<Net, f32>();
    save_network(&model, &path).unwrap();
    // it loads into the same network, and as a plain checkpoint
    let mut same = dev.build_module::<Net, f32>();
    load_network(&mut same, &path).unwrap();
    let x = input(&dev);
    assert_eq!(
        model.forward(x.clone()).array(),
        same.forward(x.clone()).array()
    );
    load(&mut dev.build_module::<Net, f32>(), &path).unwrap();

    // same tensors, other layers: refused, naming both networks and the first differing layer
    let mut other = dev.build_module::<NetTanh, f32>();
    let before = other.forward(x.clone()).array();
    let err = load_network(&mut other, &path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::Mismatch { .. }), "{msg}");
    assert!(msg.contains("`Net`") && msg.contains("`NetTanh`"), "{msg}");
    assert!(
        msg.contains("layer 2 is `relu` there and `tanh` here"),
        "{msg}"
    );
    assert_eq!(other.forward(x).array(), before);

    // a checkpoint without the record (dfdx's own, or `save`) falls back to the tensor checks
    let plain = dir.path().join("plain.safetensors");
    save(&dev.build_module::<NetTanh, f32>(), &plain).unwrap();
    load_network(&mut dev.build_module::<Net, f32>(), &plain).unwrap();
}
