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
//! - [`data`]: IDX files and Fashion-MNIST/MNIST, found on disk or downloaded.
//! - [`checkpoint`]: safetensors save/load that refuses another network's weights by name.
//! - [`train`]: a training loop for any classifier: metrics, progress, Xavier init, plots.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod checkpoint;
pub mod data;
mod device;
pub mod nn;
pub mod ops;
pub mod shape;
pub mod summary;
pub mod train;

pub use device::{ConvDevice, Float};
pub use summary::{LayerRow, Summary};

/// A network made by [`cnn!`]: its layer table is known from the type alone, so generic code
/// (checkpoints, for one) can name what it holds.
pub trait Network {
    /// The network's [`Summary`], as `Net::summary()` returns it.
    const SUMMARY: Summary;
}

pub use cnn_macros::cnn;

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
