//! `cnn`: convolutional networks whose shapes are checked by the compiler, on stable Rust.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
pub mod train;
