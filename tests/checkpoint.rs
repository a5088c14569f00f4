//! Checkpoints: a round trip restores outputs exactly; another network's weights, a missing
//! file, a corrupt file and weights holding NaN are refused with errors that say what is
//! wrong, leaving the model as it was; a save replaces the file only once complete, never
//! writes NaN over it, and two writers at once leave one of their files whole.

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
    // Batch norm saves scalars (momentum, epsilon) besides its tensors.
    struct Normed: [1, 12, 12] -> [4] {
        conv2d(3, kernel = 3), bn: batch_norm2d, relu,
        max_pool2d(kernel = 2),
        flatten,
        linear(4),
    }
    // Blocks: the same tensors, a convolution inside a call padded another way.
    block Unit(c, pad = 1) { conv2d(c, kernel = 3, padding = pad), relu }
    struct Blocks: [1, 12, 12] -> [4] {
        stem: { Unit(3), Unit(3) },
        global_avg_pool2d, linear(4),
    }
    struct BlocksSame: [1, 12, 12] -> [4] {
        stem: { Unit(3), Unit(3, pad = same) },
        global_avg_pool2d, linear(4),
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
    assert!(msg.contains("`4.weight`"), "{msg}");
    assert!(
        msg.contains("[32, 75]") && msg.contains("[16, 75]"),
        "{msg}"
    );
    assert_eq!(model.forward(x).array(), before);

    let path = dir.path().join("deeper.safetensors");
    save(&dev.build_module::<Deeper, f32>(), &path).unwrap();
    let msg = load(&mut model, &path).unwrap_err().to_string();
    assert!(msg.contains("`2.weight`"), "{msg}");
}

#[test]
fn a_missing_or_corrupt_file_is_a_clear_error() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let mut model = dev.build_module::<Net, f32>();
    let missing = dir.path().join("nope.safetensors");
    let err = load(&mut model, &missing).unwrap_err();
    assert!(matches!(err, CheckpointError::Read { .. }));
    assert_eq!(
        cnn::error_chain(&err),
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let err = load(&mut model, dir.path()).unwrap_err();
    assert_eq!(
        cnn::error_chain(&err),
        format!("cannot read {}: it is a directory", dir.path().display())
    );

    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(
        &corrupt,
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!",
    )
    .unwrap();
    let err = load(&mut model, &corrupt).unwrap_err();
    assert!(matches!(err, CheckpointError::Format { .. }), "{err}");
    // In words, not safetensors' variant names (`InvalidHeaderStart`).
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a safetensors checkpoint: its header does not start with `{{`",
            corrupt.display()
        )
    );

    // Cut short, as a disk that filled up under dfdx's in-place writes left it.
    let cut = dir.path().join("cut.safetensors");
    save(&model, &cut).unwrap();
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = load(&mut model, &cut).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a safetensors checkpoint: its tensors do not cover the file: it is cut \
             short, or has bytes after them",
            cut.display()
        )
    );
}

#[test]
fn a_save_that_cannot_write_is_an_error_and_leaves_nothing_behind() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    // A directory where the checkpoint goes: the rename fails.
    std::fs::create_dir(&path).unwrap();
    let err = save_network(&dev.build_module::<Net, f32>(), &path).unwrap_err();
    assert!(matches!(err, CheckpointError::Write { .. }), "{err:?}");
    assert!(
        cnn::error_chain(&err).starts_with(&format!(
            "could not save {} (any earlier file there is unchanged): ",
            path.display()
        )),
        "{err}"
    );
    assert!(path.is_dir());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "a temporary was left behind"
    );

    // A file where its folder goes.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"").unwrap();
    let err = save(
        &dev.build_module::<Net, f32>(),
        &plain.join("net.safetensors"),
    )
    .unwrap_err();
    assert!(matches!(err, CheckpointError::Write { .. }), "{err:?}");
}

/// `path`'s bytes with value `index` of tensor `name` (f32) set to `value`.
fn with_value(path: &std::path::Path, name: &str, index: usize, value: f32) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let data = file.tensor(name).unwrap().data();
    let at = data.as_ptr() as usize - bytes.as_ptr() as usize + 4 * index;
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    bytes
}

#[test]
fn nan_weights_are_never_saved_over_a_checkpoint() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    let mut model = dev.build_module::<Net, f32>();
    save_network(&model, &path).unwrap();
    let before = std::fs::read(&path).unwrap();

    // A diverged model: three NaNs and an infinity in one tensor.
    let mut w = model._4.weight.as_vec();
    for i in [5, 7, 9] {
        w[i] = f32::NAN;
    }
    w[11] = f32::INFINITY;
    model._4.weight.copy_from(&w);
    let err = save_network(&model, &path).unwrap_err();
    assert!(
        matches!(err, CheckpointError::NonFiniteModel { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "not saving {}: the model's tensor `4.weight` has 4 non-finite values (the \
             first is NaN, at index 5)",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_checkpoint_holding_nan_or_infinity_is_refused_and_the_model_kept() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    save_network(&dev.build_module::<Net, f32>(), &path).unwrap();
    let mut model = dev.build_module::<Net, f32>();
    let x = input(&dev);
    let before = model.forward(x.clone()).array();
    for (value, first) in [(f32::NAN, "NaN"), (f32::NEG_INFINITY, "-inf")] {
        std::fs::write(&path, with_value(&path, "0.bias", 2, value)).unwrap();
        let err = load_network(&mut model, &path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::NonFiniteFile { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{} holds unusable weights: its tensor `0.bias` has 1 non-finite value (the \
                 first is {first}, at index 2)",
                path.display()
            )
        );
        assert_eq!(model.forward(x.clone()).array(), before);
    }
}

#[test]
fn batch_norm_scalars_round_trip_and_bad_ones_are_refused() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("normed.safetensors");
    let mut model = dev.build_module::<Normed, f32>();
    model.bn.momentum = 0.25;
    save_network(&model, &path).unwrap();
    let mut other = dev.build_module::<Normed, f32>();
    load_network(&mut other, &path).unwrap();
    assert_eq!(other.bn.momentum, 0.25);

    // A scalar stored as something else would make dfdx panic: refused, and named.
    let bytes = std::fs::read(&path).unwrap();
    let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let two = [0u8; 8];
    let tensors = file.tensors().into_iter().map(|(name, view)| {
        if name == "bn.momentum" {
            let dtype = ::safetensors::Dtype::F32;
            (
                name,
                ::safetensors::tensor::TensorView::new(dtype, vec![2], &two).unwrap(),
            )
        } else {
            (name, view)
        }
    });
    std::fs::write(&path, ::safetensors::serialize(tensors, &None).unwrap()).unwrap();
    let err = load(&mut other, &path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a checkpoint of this network: scalar `bn.momentum` is a f32 tensor of \
             shape [2] in the checkpoint, not an f64 of shape []",
            path.display()
        )
    );
}

#[test]
fn concurrent_saves_leave_one_writers_whole_file() {
    // The CPU on every build: what is under test is the file, and a CUDA device cannot be
    // shared between threads.
    let dev = Cpu::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    let x: Tensor<Rank4<2, 1, 12, 12>, f32, Cpu> = dev.sample_normal();
    let models = [
        dev.build_module::<Net, f32>(),
        dev.build_module::<Net, f32>(),
    ];
    let outputs = models.each_ref().map(|m| m.forward(x.clone()).array());
    assert_ne!(outputs[0], outputs[1]);
    std::thread::scope(|s| {
        // Two runs with the same --out, saving after every epoch...
        for m in &models {
            let path = &path;
            s.spawn(move || {
                for _ in 0..30 {
                    save_network(m, path).unwrap();
                }
            });
        }
        // ...while a third evaluates whatever is there: always one run's whole file.
        s.spawn(|| {
            let mut reader = dev.build_module::<Net, f32>();
            for _ in 0..30 {
                if path.exists() {
                    load_network(&mut reader, &path).unwrap();
                    let y = reader.forward(x.clone()).array();
                    assert!(outputs.contains(&y), "a mix of both runs' tensors");
                }
            }
        });
    });
    let mut reader = dev.build_module::<Net, f32>();
    load_network(&mut reader, &path).unwrap();
    assert!(outputs.contains(&reader.forward(x).array()));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "a temporary was left behind");
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

/// A difference inside a block is named by its path of names, which is also its checkpoint key:
/// the first row that differs is the call's, with its arguments.
#[test]
fn a_difference_inside_a_block_is_named_by_its_path() {
    let dev: TestDevice = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.safetensors");
    save_network(&dev.build_module::<Blocks, f32>(), &path).unwrap();
    let err = load_network(&mut dev.build_module::<BlocksSame, f32>(), &path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("layer 5 (`stem.1`) is `Unit(3)` there and `Unit(3, pad=same)` here"),
        "{msg}"
    );
}
