//! Training on image folders: the loader's batches (order, drop_last, bad files), the header
//! check, and a `cnn!` network trained end to end on a generated folder.

mod common;

use std::path::Path;

use cnn::data::images::{ImageFolder, ImageLoader, LoaderOptions, OnBad, Transforms};
use cnn::prelude::*;
use cnn::train::{Batches, Config, Progress, TrainError, Trainer};
use common::TestDevice;

cnn! {
    /// A small network for 8x8 grey images of two classes.
    struct Tiny: [1, 8, 8] -> [2] {
        conv2d(4, kernel = 3, padding = 1), relu,
        max_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(2),
    }
}

/// A folder of `per_class` PNG images for each of two classes, `side x side`, in `dir`: class
/// `dark` near black with a bright top-left square, `light` near white with a dark one, with
/// per-image noise.
fn generated_folder(dir: &Path, per_class: usize, side: u32) {
    for (class, base) in [("dark", 30u8), ("light", 220u8)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(side, side, |x, y| {
                let noise = ((x * 7 + y * 13 + i as u32 * 31) % 23) as u8;
                let v = if x < side / 2 && y < side / 2 {
                    255 - base
                } else {
                    base
                };
                image::Rgb([v.saturating_add(noise), v, v.saturating_sub(noise)])
            });
            img.save(dir.join(class).join(format!("{i:03}.png")))
                .unwrap();
        }
    }
}

#[test]
fn loader_batches_shuffle_drop_last_and_report_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    generated_folder(dir.path(), 7, 10);
    let set = ImageFolder::open(dir.path()).unwrap();
    let plain: Transforms = "resize(8, 8)".parse().unwrap();
    let loader =
        ImageLoader::<1, 8, 8>::new(set.clone(), plain.clone(), LoaderOptions::default()).unwrap();
    let epoch = |e| -> Vec<Vec<usize>> { loader.batches(e, 4).map(|b| b.y).collect() };
    let (first, again, second) = (epoch(0), epoch(0), epoch(1));
    assert_eq!(
        first.len(),
        3,
        "14 images in batches of 4, the last 2 dropped"
    );
    assert!(first.iter().all(|b| b.len() == 4));
    assert_eq!(first, again);
    assert_ne!(first, second);
    for b in loader.batches(0, 4) {
        assert_eq!(b.x.len(), 4 * 64);
    }

    // In order for evaluation, every image, pixels as ToTensor makes them.
    let eval = ImageLoader::<1, 8, 8>::new(set, plain, LoaderOptions::evaluation()).unwrap();
    let labels: Vec<usize> = eval.batches(0, 4).flat_map(|b| b.y).collect();
    assert_eq!(labels, [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    let x: Vec<f32> = eval.batches(0, 100).next().unwrap().x;
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(eval.take_error().is_none());

    // A file truncated after its header was checked: the pass stops and the error names it.
    let bad = dir.path().join("light/003.png");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 30]).unwrap();
    let mut set = ImageFolder::open(dir.path()).unwrap();
    assert!(
        set.check(None, OnBad::Error).unwrap().is_empty(),
        "the header reads"
    );
    let plain: Transforms = "resize(8, 8)".parse().unwrap();
    let strict =
        ImageLoader::<1, 8, 8>::new(set.clone(), plain.clone(), LoaderOptions::evaluation())
            .unwrap();
    let seen: usize = strict.batches(0, 4).map(|b| b.y.len()).sum();
    assert!(seen < 14);
    let msg = cnn::error_chain(&*strict.take_error().expect("an error"));
    assert!(msg.starts_with(&format!("{}: ", bad.display())), "{msg}");

    // Skipped where asked, counted once, named.
    let opts = LoaderOptions {
        on_bad: OnBad::Skip,
        ..LoaderOptions::evaluation()
    };
    let lenient = ImageLoader::<1, 8, 8>::new(set, plain, opts).unwrap();
    for _ in 0..2 {
        let seen: usize = lenient.batches(0, 4).map(|b| b.y.len()).sum();
        assert_eq!(seen, 13);
    }
    assert!(lenient.take_error().is_none());
    let skipped = lenient.skipped();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, bad);

    // An image the transforms do not bring to the network's size is named with both sizes.
    let set = ImageFolder::open(dir.path()).unwrap();
    let wrong = ImageLoader::<1, 8, 8>::new(
        set,
        "resize(9, 8)".parse().unwrap(),
        LoaderOptions::evaluation(),
    )
    .unwrap();
    let msg = wrong.load(0, 0).unwrap_err().to_string();
    assert!(
        msg.ends_with(
            "after the transforms (resize(9, 8, bilinear)) it is 1x9x8, and the network takes \
             1x8x8: end them with a resize or crop to 8x8"
        ),
        "{msg}"
    );
}

#[test]
fn header_check_names_every_kind_of_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    generated_folder(dir.path(), 3, 6);
    let r = dir.path();
    std::fs::write(r.join("dark/empty.png"), b"").unwrap();
    std::fs::write(r.join("dark/text.jpg"), b"hello, this is not a picture").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(r.join("nowhere.png"), r.join("light/broken.png")).unwrap();
    let mut set = ImageFolder::open(r).unwrap();
    let msg = set
        .clone()
        .check(None, OnBad::Error)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("3 of 9 image files cannot be used:"),
        "{msg}"
    );
    assert!(msg.contains("empty.png: empty file (0 bytes)"), "{msg}");
    assert!(msg.contains("text.jpg: not an image"), "{msg}");
    assert!(
        msg.contains("broken.png: No such file or directory"),
        "{msg}"
    );
    let skipped = set.check(None, OnBad::Skip).unwrap();
    assert_eq!((skipped.len(), set.len()), (3, 6));
}

/// A file without read permission is named with the system's reason (skipped where the tests
/// run as root, whom permissions do not stop).
#[cfg(unix)]
#[test]
fn an_unreadable_file_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    generated_folder(dir.path(), 2, 6);
    let locked = dir.path().join("dark/000.png");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&locked).is_ok() {
        eprintln!("skipped: running as root, permissions do not stop reads");
        return;
    }
    let mut set = ImageFolder::open(dir.path()).unwrap();
    let msg = set.check(None, OnBad::Error).unwrap_err().to_string();
    assert!(msg.contains("000.png: Permission denied"), "{msg}");
}

/// The "done when": a `cnn!` network trained end to end on a generated image folder
/// (decoded, transformed, batched by the loader, through the crate's trainer) learns it; then
/// a file that breaks mid-run stops training with an error naming it.
#[test]
fn a_cnn_network_trains_end_to_end_on_a_generated_folder() {
    let dir = tempfile::tempdir().unwrap();
    generated_folder(dir.path(), 20, 12);
    let (mut train, mut val) = ImageFolder::train_val(dir.path(), 0.25, 1).unwrap();
    assert_eq!((train.len(), val.len()), (30, 10));
    train.check(None, OnBad::Error).unwrap();
    val.check(None, OnBad::Error).unwrap();
    let augment: Transforms = "random_resized_crop(8, 8, scale=0.7:1); normalize(0.5, 0.5)"
        .parse()
        .unwrap();
    let plain: Transforms = "resize(8); center_crop(8, 8); normalize(0.5, 0.5)"
        .parse()
        .unwrap();
    let opts = LoaderOptions {
        seed: 3,
        workers: 2,
        ..LoaderOptions::default()
    };
    let train = ImageLoader::<1, 8, 8>::new(train, augment, opts).unwrap();
    let val = ImageLoader::<1, 8, 8>::new(val, plain, LoaderOptions::evaluation()).unwrap();

    let dev = TestDevice::seed_from_u64(0);
    let mut model = dev.build_module::<Tiny, f32>();
    let mut opt = Adam::new(
        &model,
        AdamConfig {
            lr: 0.01,
            ..Default::default()
        },
    );
    let config = Config {
        epochs: 8,
        batch_size: 8,
        progress: Progress::Quiet,
        ..Default::default()
    };
    let trainer = Trainer::new(dev, config);
    let history = trainer.fit(&mut model, &mut opt, &train, &val).unwrap();
    let last = history.last().unwrap();
    assert!(history[0].loss > last.loss, "{history:?}");
    assert_eq!(last.test_acc, 1.0, "{history:?}");

    // A validation image truncated after the headers were checked: the run stops, naming it.
    let victim = val.set().samples[3].0.clone();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let err = trainer.fit(&mut model, &mut opt, &train, &val).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Data {
                epoch: 1,
                which: "test",
                ..
            }
        ),
        "{err:?}"
    );
    let msg = cnn::error_chain(&err);
    assert!(
        msg.starts_with(&format!(
            "epoch 1: the test data failed: {}: ",
            victim.display()
        )),
        "{msg}"
    );
}
