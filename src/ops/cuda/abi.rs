//! The structs that `kernels.cu`'s kernels take by value, defined as there (`#[repr(C)]`, the
//! same fields in the same order), and [`LAYOUTS`]: their sizes, alignments and fields as the
//! host compiler lays them out.
//!
//! A launch copies such a struct's bytes into the kernel's parameter space, where the kernel
//! reads them by the C definition; nothing at run time notices if the two disagree. So
//! `scripts/nvrtc-check.py` compares them: it compiles this file alone (it uses nothing from the
//! crate, for that reason) into a small program that prints [`LAYOUTS`], and checks each size
//! and alignment against the `.param .align A .b8 NAME[N]` that NVRTC gives the kernels, and each
//! field list against `kernels.cu`'s definition. The table is generated from the definitions by
//! one macro, so it cannot drift from them.

/// One struct as the host lays it out: what `scripts/nvrtc-check.py` compares with the device's.
// Read by nvrtc-check's probe program, not by the crate.
#[allow(dead_code)]
#[derive(Debug)]
pub(crate) struct Layout {
    /// The struct's name, the same in Rust and in `kernels.cu`.
    pub(crate) name: &'static str,
    /// `size_of`: the bytes a launch copies.
    pub(crate) size: usize,
    /// `align_of`.
    pub(crate) align: usize,
    /// `(field, Rust type, offset)` in declaration order.
    pub(crate) fields: &'static [(&'static str, &'static str, usize)],
}

/// Defines the structs as written, each `#[repr(C)]`, `Clone`, `Copy`, `Debug`, and [`LAYOUTS`]
/// from the same tokens.
macro_rules! kernel_structs {
    ($(
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_attr:meta])* $field_vis:vis $field:ident: $ty:ty,)*
        }
    )*) => {
        $(
            $(#[$attr])*
            #[repr(C)]
            #[derive(Clone, Copy, Debug)]
            $vis struct $name {
                $($(#[$field_attr])* $field_vis $field: $ty,)*
            }
        )*

        /// Every struct of this file, in order.
        // Read by nvrtc-check's probe program, not by the crate.
        #[allow(dead_code)]
        pub(crate) const LAYOUTS: &[Layout] = &[$(Layout {
            name: stringify!($name),
            size: std::mem::size_of::<$name>(),
            align: std::mem::align_of::<$name>(),
            fields: &[$((stringify!($field), stringify!($ty), std::mem::offset_of!($name, $field))),*],
        }),*];
    };
}

kernel_structs! {
    /// `ConvGeom`: the numbers `im2col` and `col2im` need.
    pub(crate) struct ConvGeom {
        pub(super) batch: i32,
        pub(super) channels: i32,
        pub(super) h: i32,
        pub(super) w: i32,
        pub(super) oh: i32,
        pub(super) ow: i32,
        pub(super) kh: i32,
        pub(super) kw: i32,
        pub(super) sh: i32,
        pub(super) sw: i32,
        pub(super) ph: i32,
        pub(super) pw: i32,
        pub(super) dh: i32,
        pub(super) dw: i32,
    }

    /// `BnStep`: batch norm's sizes and settings for the kernels that finish its statistics.
    pub(crate) struct BnStep {
        pub(super) batch: i32,
        pub(super) channels: i32,
        pub(super) plane: i32,
        pub(super) shares: i32,
        pub(super) eps: f64,
        pub(super) momentum: f64,
    }

    /// `PoolGeom`: a pooling's planes, sizes and kind.
    pub(crate) struct PoolGeom {
        pub(super) planes: i32,
        pub(super) h: i32,
        pub(super) w: i32,
        pub(super) oh: i32,
        pub(super) ow: i32,
        pub(super) kh: i32,
        pub(super) kw: i32,
        pub(super) sh: i32,
        pub(super) sw: i32,
        pub(super) ph: i32,
        pub(super) pw: i32,
        /// 0: max, 1: average (padded zeros counted).
        pub(super) kind: i32,
    }
}
