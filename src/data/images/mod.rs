//! Training on your own images: a folder per class (torchvision's `ImageFolder`) or a
//! `path,label` list, decoded by the `image` crate, transformed as torchvision transforms
//! (resize, crops, flips, normalisation, ...), and batched by a loader that decodes in parallel
//! ahead of the training step.
//!
//! ```no_run
//! use cnn::data::images::{ImageFolder, ImageLoader, LoaderOptions, Transforms};
//!
//! // data/cat/*.jpg, data/dog/*.jpg, ...: 10% of each class held out for validation
//! let (train, val) = ImageFolder::train_val("data".as_ref(), 0.1, 0)?;
//! let augment: Transforms = "random_resized_crop(28, 28); random_horizontal_flip(0.5); \
//!                            normalize(0.5, 0.5)".parse()?;
//! let plain: Transforms = "resize(32); center_crop(28, 28); normalize(0.5, 0.5)".parse()?;
//! // batches of (batch, 1, 28, 28) for a `cnn!` network that takes [1, 28, 28]
//! let train = ImageLoader::<1, 28, 28>::new(train, augment, LoaderOptions::default())?;
//! let val = ImageLoader::<1, 28, 28>::new(val, plain, LoaderOptions::evaluation())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Decoding is the `image` crate's (already a dependency, for the plots): it is pure Rust,
//! widely used and fuzzed, and its features are chosen here: JPEG, PNG, WebP, BMP and GIF,
//! what people's image folders hold, and TIFF and PNM because torchvision's extension list
//! names them (PNM costs nothing; TIFF adds the `tiff` crate). Nothing else is compiled in.

mod decode;
mod exif;
mod folder;
mod loader;
pub mod transform;

pub use decode::{Colour, DEFAULT_MAX_PIXELS, DecodeOptions, decode};
pub use folder::{IMG_EXTENSIONS, ImageFolder, LISTED_FAILURES, OnBad, skipped_report};
pub use loader::{ImageLoader, LoaderOptions, Prefetched};
pub use transform::{PadMode, Size, Transform, TransformError, Transforms, image_rng};

/// An 8-bit image as Pillow holds one: `height` rows of `width` pixels of `channels` values,
/// interleaved (`(height, width, channels)`, row-major).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Values per pixel: 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `height * width * channels` values.
    pub data: Vec<u8>,
}
