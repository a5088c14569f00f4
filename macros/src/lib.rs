//! The `cnn!` macro (re-exported by the `cnn` crate).
