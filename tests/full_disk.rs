//! A disk that fills up mid-save, simulated without root: a file-size limit (`RLIMIT_FSIZE`,
//! `ulimit -f`) makes the kernel refuse a write partway through, as a full disk does (with
//! `EFBIG` instead of `ENOSPC`). The checkpoint and the plot must fail with an error, keep the
//! previous files whole, and leave no temporary behind.
//!
//! The limit holds for the whole process, so this file has a single test.

#![cfg(target_os = "linux")]

use cnn::checkpoint::{CheckpointError, load, save};
use cnn::train::{EpochStats, TrainError, plot_history};
use dfdx::prelude::*;

type Net = (Linear<64, 128>, ReLU, Linear<128, 10>);

/// Sets the soft file-size limit to `bytes`, returning the previous one.
fn limit_file_size(bytes: libc::rlim_t) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = bytes.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        old
    }
}

fn history() -> Vec<EpochStats> {
    (1..=3)
        .map(|epoch| EpochStats {
            epoch,
            loss: 1.0 / epoch as f64,
            train_acc: 0.5,
            test_acc: 0.5,
            lr: 0.1,
            images_per_s: 1.0,
            seconds: 1.0,
        })
        .collect()
}

#[test]
fn a_write_refused_midway_fails_the_save_and_keeps_the_previous_files() {
    // Past the limit the kernel sends SIGXFSZ, which kills by default; ignored, the write
    // fails with EFBIG instead.
    // SAFETY: ignoring a signal; no handler runs.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dev = Cpu::default();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("net.safetensors");
    let plot = dir.path().join("net.png");
    let model = dev.build_module::<Net, f32>();
    save(&model, &ckpt).unwrap();
    plot_history(&history(), &plot).unwrap();
    let (ckpt_before, plot_before) = (std::fs::read(&ckpt).unwrap(), std::fs::read(&plot).unwrap());
    assert!(ckpt_before.len() > 32 << 10 && plot_before.len() > 8 << 10);

    let old = limit_file_size(8 << 10);
    let saved = save(&dev.build_module::<Net, f32>(), &ckpt);
    let plotted = plot_history(&history()[..2], &plot);
    limit_file_size(old);

    let err = saved.unwrap_err();
    assert!(matches!(err, CheckpointError::Write { .. }), "{err:?}");
    assert_eq!(
        cnn::error_chain(&err),
        format!(
            "could not save {} (any earlier file there is unchanged): File too large (os error 27)",
            ckpt.display()
        )
    );
    let err = plotted.unwrap_err();
    assert!(matches!(err, TrainError::Plot { .. }), "{err:?}");
    assert_eq!(
        cnn::error_chain(&err),
        format!(
            "cannot plot to {}: File too large (os error 27)",
            plot.display()
        )
    );
    assert_eq!(std::fs::read(&ckpt).unwrap(), ckpt_before);
    assert_eq!(std::fs::read(&plot).unwrap(), plot_before);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["net.png", "net.safetensors"],
        "a temporary was left behind"
    );
    load(&mut dev.build_module::<Net, f32>(), &ckpt).unwrap();
}
