//! Batches of decoded, transformed images for the training loop: decoded in parallel on a
//! pool of its own, a bounded number of batches ahead of the step that uses them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dfdx::shapes::Const;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::transform::image_rng;
use super::{DecodeOptions, ImageFolder, OnBad, Transforms, decode};
use crate::data::DataError;
use crate::train::{Batch, Batches, BoxError};

/// How an [`ImageLoader`] orders, groups and reads its images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderOptions {
    /// Seeds the per-epoch shuffle and every image's random transforms ([`image_rng`]).
    pub seed: u64,
    /// A new order every epoch (training), or the stored order (evaluation).
    pub shuffle: bool,
    /// Leave out a last batch smaller than the batch size (PyTorch's `drop_last`), so batch
    /// norm never sees a batch of one.
    pub drop_last: bool,
    /// Batches decoded ahead of the one the loop is using; memory is bounded by this plus
    /// the batch being built, whatever the folder's size. At least 1.
    pub prefetch: usize,
    /// Threads that decode and transform (0: one per core). They have a pool of their own,
    /// so the kernels' threads are not kept waiting behind a decode.
    pub workers: usize,
    /// How files are decoded.
    pub decode: DecodeOptions,
    /// What a file that will not decode does: stops the run with an error naming it
    /// ([`OnBad::Error`]), or is left out of its batch and listed in
    /// [`ImageLoader::skipped`].
    pub on_bad: OnBad,
}

impl Default for LoaderOptions {
    /// For training: shuffled, `drop_last`, 2 batches ahead, one worker per core.
    fn default() -> Self {
        LoaderOptions {
            seed: 0,
            shuffle: true,
            drop_last: true,
            prefetch: 2,
            workers: 0,
            decode: DecodeOptions::default(),
            on_bad: OnBad::Error,
        }
    }
}

impl LoaderOptions {
    /// For evaluation: in stored order, every image (no `drop_last`).
    pub fn evaluation() -> Self {
        LoaderOptions {
            shuffle: false,
            drop_last: false,
            ..Default::default()
        }
    }
}

/// An [`ImageFolder`] as batches of `(batch, C, H, W)` for a network that takes `[C, H, W]`:
/// each image decoded to `C` channels, passed through the [`Transforms`] (seeded per epoch
/// and image), checked to be `H x W`, and laid out as `ToTensor` lays it out.
///
/// It is a [`Batches`] source for [`crate::train::Trainer`]: `batches(epoch, size)` starts a
/// thread that fills batches on the loader's pool and hands them over through a channel of
/// [`LoaderOptions::prefetch`] places, so decoding runs while the model trains. A file that
/// fails is reported through [`Batches::take_error`], which the trainer checks after every
/// pass.
pub struct ImageLoader<const C: usize, const H: usize, const W: usize> {
    inner: Arc<Inner>,
}

/// What the loader's threads share.
struct Inner {
    set: ImageFolder,
    transforms: Transforms,
    opts: LoaderOptions,
    pool: rayon::ThreadPool,
    /// The error that ended the last pass, if one did.
    error: Mutex<Option<DataError>>,
    /// Files left out under [`OnBad::Skip`], with why (each once).
    skipped: Mutex<Vec<(PathBuf, String)>>,
    /// Nanoseconds the consumer of the current (or last) pass spent waiting for batches.
    waited: Arc<AtomicU64>,
}

impl<const C: usize, const H: usize, const W: usize> ImageLoader<C, H, W> {
    /// A loader of `set` through `transforms`.
    ///
    /// # Errors
    /// [`DataError::Layout`] (naming the set's folder) when `transforms` cannot give `C`
    /// channels (a `normalize` with 3 means for a grey network, say) or `C` is neither 1 nor
    /// 3, or the pool's threads cannot start.
    pub fn new(
        set: ImageFolder,
        transforms: Transforms,
        opts: LoaderOptions,
    ) -> Result<Self, DataError> {
        if C != 1 && C != 3 {
            return Err(DataError::layout(
                &set.root,
                format!("images have 1 or 3 channels; the network takes {C}"),
            ));
        }
        transforms
            .check_channels(C)
            .map_err(|e| DataError::layout(&set.root, e.to_string()))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.workers)
            .thread_name(|i| format!("cnn-images-{i}"))
            .build()
            .map_err(|e| DataError::layout(&set.root, format!("cannot start its threads: {e}")))?;
        Ok(ImageLoader {
            inner: Arc::new(Inner {
                set,
                transforms,
                opts,
                pool,
                error: Mutex::new(None),
                skipped: Mutex::new(Vec::new()),
                waited: Arc::new(AtomicU64::new(0)),
            }),
        })
    }

    /// The class names, index by index.
    pub fn classes(&self) -> &[String] {
        &self.inner.set.classes
    }

    /// The images and labels it reads.
    pub fn set(&self) -> &ImageFolder {
        &self.inner.set
    }

    /// The transforms every image goes through.
    pub fn transforms(&self) -> &Transforms {
        &self.inner.transforms
    }

    /// Files left out so far under [`OnBad::Skip`], with what was wrong with each.
    pub fn skipped(&self) -> Vec<(PathBuf, String)> {
        lock(&self.inner.skipped).clone()
    }

    /// How long the current (or last) pass's consumer waited for batches that were not yet
    /// ready: near zero when decoding keeps ahead of the training step, the step's idle time
    /// when it does not.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.inner.waited.load(Ordering::Relaxed))
    }

    /// Image `index` of the set as it appears in epoch `epoch`: `C * H * W` values, channel by
    /// channel (`ToTensor`'s layout).
    ///
    /// # Errors
    /// [`decode`]'s, and [`DataError::Format`] naming the file when the transforms do not
    /// leave it `H x W` with `C` channels.
    pub fn load(&self, index: usize, epoch: usize) -> Result<Vec<f32>, DataError> {
        self.inner.load::<C, H, W>(index, epoch)
    }
}

impl Inner {
    fn load<const C: usize, const H: usize, const W: usize>(
        &self,
        index: usize,
        epoch: usize,
    ) -> Result<Vec<f32>, DataError> {
        let path = &self.set.samples[index].0;
        let img = decode(path, C, &self.opts.decode)?;
        let img = self
            .transforms
            .apply(img, &mut image_rng(self.opts.seed, epoch, index));
        if (img.channels, img.height, img.width) != (C, H, W) {
            return Err(DataError::format(
                path,
                format!(
                    "after the transforms ({}) it is {}x{}x{}, and the network takes \
                     {C}x{H}x{W}: end them with a resize or crop to {H}x{W}",
                    self.transforms, img.channels, img.height, img.width
                ),
            ));
        }
        let mut out = Vec::with_capacity(C * H * W);
        self.transforms.to_tensor(&img, &mut out);
        Ok(out)
    }

    /// The batches of epoch `epoch`, as lists of indices.
    fn plan(&self, epoch: usize, size: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.set.len()).collect();
        if self.opts.shuffle {
            let mixed = self.opts.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            order.shuffle(&mut StdRng::seed_from_u64(mixed));
        }
        let size = size.max(1);
        order
            .chunks(size)
            .filter(|c| !self.opts.drop_last || c.len() == size)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Fills the planned batches in order and sends them; stops when the receiver is gone
    /// or (with [`OnBad::Error`]) at the first file that fails, keeping its error.
    fn produce<const C: usize, const H: usize, const W: usize>(
        &self,
        epoch: usize,
        plan: Vec<Vec<usize>>,
        tx: SyncSender<Batch<f32>>,
    ) {
        for indices in plan {
            let loaded: Vec<Result<Vec<f32>, DataError>> = self.pool.install(|| {
                indices
                    .par_iter()
                    .map(|&i| self.load::<C, H, W>(i, epoch))
                    .collect()
            });
            let mut batch = Batch {
                x: Vec::with_capacity(indices.len() * C * H * W),
                y: Vec::with_capacity(indices.len()),
            };
            for (&i, result) in indices.iter().zip(loaded) {
                match (result, self.opts.on_bad) {
                    (Ok(x), _) => {
                        batch.x.extend(x);
                        batch.y.push(self.set.samples[i].1);
                    }
                    (Err(e), OnBad::Skip) => {
                        let path = &self.set.samples[i].0;
                        let mut skipped = lock(&self.skipped);
                        if !skipped.iter().any(|(p, _)| p == path) {
                            let why = crate::error_chain(&e);
                            let prefix = format!("{}: ", path.display());
                            let why = why.strip_prefix(&prefix).map_or(why.clone(), String::from);
                            skipped.push((path.clone(), why));
                        }
                    }
                    (Err(e), OnBad::Error) => {
                        *lock(&self.error) = Some(e);
                        return;
                    }
                }
            }
            if !batch.y.is_empty() && tx.send(batch).is_err() {
                return; // the loop stopped listening
            }
        }
    }
}

/// A mutex's contents, also after a thread panicked holding it (the data is a plain list).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The iterator of [`ImageLoader`]'s batches: receives what its producer thread filled.
pub struct Prefetched {
    rx: Receiver<Batch<f32>>,
    left: usize,
    /// The loader's wait counter, in nanoseconds.
    waited: Arc<AtomicU64>,
}

impl Iterator for Prefetched {
    type Item = Batch<f32>;

    fn next(&mut self) -> Option<Batch<f32>> {
        let start = Instant::now();
        let batch = self.rx.recv().ok();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waited.fetch_add(nanos, Ordering::Relaxed);
        self.left = if batch.is_some() {
            self.left.saturating_sub(1)
        } else {
            0
        };
        batch
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

impl<const C: usize, const H: usize, const W: usize> Batches<f32> for ImageLoader<C, H, W> {
    type Shape = (usize, Const<C>, Const<H>, Const<W>);

    fn num_examples(&self) -> usize {
        self.inner.set.len()
    }

    fn batches(&self, epoch: usize, batch_size: usize) -> impl Iterator<Item = Batch<f32>> {
        *lock(&self.inner.error) = None;
        self.inner.waited.store(0, Ordering::Relaxed);
        let plan = self.inner.plan(epoch, batch_size);
        let left = plan.len();
        let (tx, rx) = sync_channel(self.inner.opts.prefetch.max(1));
        let inner = Arc::clone(&self.inner);
        // Detached: it ends after the last batch, at an error, or when `rx` is dropped and
        // its next send fails.
        std::thread::Builder::new()
            .name("cnn-images-batches".into())
            .spawn(move || inner.produce::<C, H, W>(epoch, plan, tx))
            .map_err(|e| {
                *lock(&self.inner.error) = Some(DataError::layout(
                    &self.inner.set.root,
                    format!("cannot start the loader's thread: {e}"),
                ));
            })
            .ok();
        Prefetched {
            rx,
            left,
            waited: Arc::clone(&self.inner.waited),
        }
    }

    fn take_error(&self) -> Option<BoxError> {
        lock(&self.inner.error)
            .take()
            .map(|e| Box::new(e) as BoxError)
    }
}
