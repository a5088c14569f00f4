//! `cnn`: convolutional networks whose shapes are checked by the compiler, on stable Rust.
//!
//! dfdx 0.13 keeps its convolution, pooling and flatten layers behind nightly Rust
//! (`generic_const_exprs`). This crate provides them on stable: every layer carries its sizes
//! as const generics and checks them with const assertions, and the [`cnn!`] macro works every
//! size out at expansion time, so a network is written the way d2l writes it and a shape that
//! cannot work is a compile error at the offending layer.
//!
//! - [`nn`]: the layers ([`nn::Conv2D`], [`nn::ConvTranspose2D`], [`nn::MaxPool2D`],
//!   [`nn::AvgPool2D`], [`nn::Flatten2D`], and [`nn::Fused`] conv → activation → pool blocks).
//! - [`ops`]: the ops beneath them, forward and backward on dfdx's tape, with our own kernels.
//! - [`shape`]: the output-size formulas.
//! - [`data`]: IDX files and Fashion-MNIST/MNIST, found on disk or downloaded; image folders,
//!   torchvision's transforms and a loader that decodes ahead of training ([`data::images`]).
//! - [`checkpoint`]: safetensors save/load that refuses another network's weights by name, and
//!   weights that hold NaN or infinity.
//! - [`atomic`]: files replaced whole or not at all (checkpoints, plots, downloads).
//! - [`finite`]: NaN and infinity in a model's tensors, found and named.
//! - [`train`]: a training loop for any classifier: metrics, progress, Xavier init, plots.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod atomic;
pub mod checkpoint;
pub mod data;
mod device;
pub mod finite;
pub mod nn;
pub mod ops;
pub mod shape;
pub mod summary;
pub mod train;

pub use device::{ConvDevice, Float};
pub use ops::buffer::retain_freed_memory;
pub use summary::{LayerRow, Summary};

/// A network made by [`cnn!`]: its layer table is known from the type alone, so generic code
/// (checkpoints, for one) can name what it holds.
pub trait Network {
    /// The network's [`Summary`], as `Net::summary()` returns it.
    const SUMMARY: Summary;
}

pub use cnn_macros::cnn;

/// An error and its causes, each [`source`](std::error::Error::source) after the one before,
/// on one line joined by `: `: what a program prints for a person to read.
///
/// ```
/// let err = cnn::data::read_idx("no/such/file".as_ref()).unwrap_err();
/// assert_eq!(
///     cnn::error_chain(&err),
///     "no/such/file: No such file or directory (os error 2)"
/// );
/// ```
///
/// The crate's errors never repeat their cause in their own message; a cause from another crate
/// that does is printed once.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// All a user imports: dfdx's prelude, this crate's layers and traits, and the `cnn!` macro.
pub mod prelude {
    pub use dfdx::prelude::*;
    // dfdx's prelude leaves out the optimizers themselves and one-hot encoding.
    pub use dfdx::data::OneHotEncode;
    pub use dfdx::optim::{Adam, RMSprop, Sgd};

    // Named explicitly: dfdx's prelude exports nightly-only layers of the same names, and an
    // explicit import takes precedence over a glob.
    pub use crate::nn::{AvgPool2D, Conv2D, ConvTranspose2D, Flatten2D, MaxPool2D};
    pub use crate::{ConvDevice, Float, Network, cnn};
}

/// What the `cnn!` macro's expansion names, by absolute path; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use dfdx;
}

// The README's code runs as a doctest, so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
