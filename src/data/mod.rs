//! Data sets and mini-batches: an IDX reader, Fashion-MNIST, and d2l's resizing of it
//! (`Dataset::resized`, torchvision's bilinear `Resize`); and your own images ([`images`]:
//! image folders, torchvision's transforms, a prefetching loader).
//!
//! ```no_run
//! use cnn::data::FashionMnist;
//! use rand::SeedableRng;
//!
//! // `--data DIR` or else $CNN_DATA alone; otherwise /usr/share/datasets/fashion-mnist, the
//! // cache, then a download into the cache.
//! let data = FashionMnist::locate_or_download(None)?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! for batch in data.train.shuffled_batches(256, &mut rng) {
//!     // batch.images: (batch.len(), 28, 28) row-major in [0, 1]; batch.labels: class indices
//!     assert_eq!(batch.images.len(), batch.len() * 28 * 28);
//! }
//! # Ok::<(), cnn::data::DataError>(())
//! ```

mod dataset;
mod download;
mod error;
mod fashion_mnist;
mod idx;
pub mod images;
mod resize;

pub use dataset::{Batch, Batches, Dataset};
pub use error::DataError;
pub use fashion_mnist::{
    CLASS_NAMES, DEFAULT_URL, FASHION_MNIST_MD5, FILES, FashionMnist, Locator, SIDE, SYSTEM_DIR,
};
pub use idx::{Idx, read_idx};
pub use resize::{Filter, resize_bilinear_u8, resize_u8};
