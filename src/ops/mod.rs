//! Ops that dfdx 0.13 only has on nightly (2-D convolution and pooling), and batch norm, which
//! it has but slowly; forward and backward.
//!
//! Each op is a folder: `mod.rs` declares the op's kernel trait and wires it to dfdx's tape
//! (generic over devices and tapes), `cpu_kernel.rs` implements it for `Cpu` with host kernels
//! written against plain slices, and `cuda_kernel.rs` for `Cuda` with the device kernels of
//! `ops/cuda` (under the `cuda` feature). Tests compare every kernel with a nested-loop reference
//! (`tests/ops.rs`) and its gradients with finite differences, on whichever device `TestDevice`
//! names.

pub mod add_relu;
pub mod batch_norm;
#[doc(hidden)]
pub mod buffer;
pub mod conv2d;
pub mod conv_transpose2d;
#[cfg(feature = "cuda")]
pub mod cuda;
// The CUDA bridge's parsing needs no device: its tests run on the CPU build too.
#[cfg(all(test, not(feature = "cuda")))]
#[path = "cuda/debug_prefix.rs"]
mod cuda_debug_prefix;
pub mod pool2d;

pub use conv_transpose2d::{ConvTranspose2DGeometry, ConvTranspose2DKernel, try_conv_transpose2d};
pub use conv2d::{Activation, Conv2DGeometry, Conv2DKernel, Conv2DOp, try_conv2d};
pub use pool2d::{Pool2DGeometry, Pool2DKernel, PoolKind, try_pool2d};

/// Moves the gradient buffer of the tensor whose ghost is `$t` out of `$grads` (allocated and
/// zeroed if nothing was written to it yet), leaving a one-element placeholder. dfdx's gradient
/// store lends one `&mut` at a time and a backward pass needs several buffers at once, so each
/// op takes its buffers out, runs its kernel and gives them back with [`put_grad!`].
macro_rules! take_grad {
    ($grads:expr, $t:expr, $dev:expr, $e:ty) => {
        std::mem::replace(
            $grads.get_or_alloc_mut($t)?,
            dfdx::tensor::Storage::<$e>::try_alloc_len($dev, 1)?,
        )
    };
}
/// Gives back a buffer taken with [`take_grad!`].
macro_rules! put_grad {
    ($grads:expr, $t:expr, $buf:expr) => {
        *$grads.get_or_alloc_mut($t)? = $buf
    };
}
pub(crate) use {put_grad, take_grad};

use crate::Float;

/// `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)`, every matrix given as a slice with its row
/// and column strides (`dst` has column stride 1). Bounds are checked here, so callers stay safe.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<E: Float>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [E],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[E],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[E],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(E::zero());
            }
        }
        return;
    }
    assert!((m - 1) * dst_rs + n <= dst.len(), "gemm: dst too short");
    assert!(
        (m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len(),
        "gemm: lhs too short"
    );
    assert!(
        (k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len(),
        "gemm: rhs too short"
    );
    // SAFETY: the asserts above keep every index gemm computes from the sizes and strides
    // inside the three slices, and `dst` is borrowed mutably so it cannot alias `lhs`/`rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            E::one(),
            E::one(),
            false,
            false,
            false,
            // Our callers already run one gemm per rayon task.
            gemm::Parallelism::None,
        )
    }
}

/// `Σ f(v)` over `row`, in four interleaved partial sums: one running sum is a chain of
/// dependent adds (an add's latency per element); four independent ones overlap. (Partial
/// sums in an array measured slower in batch norm: LLVM kept them on the stack.)
#[inline(always)]
pub(crate) fn sum_by<E: Float>(row: &[E], f: impl Fn(E) -> E) -> E {
    let chunks = row.chunks_exact(4);
    let tail = chunks.remainder().iter().fold(E::zero(), |s, &v| s + f(v));
    let z = E::zero();
    let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
    for v in chunks {
        (s0, s1, s2, s3) = (s0 + f(v[0]), s1 + f(v[1]), s2 + f(v[2]), s3 + f(v[3]));
    }
    tail + (s0 + s1) + (s2 + s3)
}

/// Copies a tensor's data into a pooled host buffer (a `memcpy` on `Cpu`).
pub(crate) fn to_host<S: dfdx::shapes::Shape, E: Float, D: dfdx::tensor::CopySlice<E>, T>(
    t: &dfdx::tensor::Tensor<S, E, D, T>,
) -> buffer::Buffer<E> {
    use dfdx::shapes::HasShape;
    let mut v = buffer::Buffer::for_overwrite(t.shape().num_elements());
    t.copy_into(&mut v);
    v
}

/// `v` as the `f32`s it holds, when `E` is `f32` (for the f32-only kernels of generic ops).
pub(crate) fn as_f32<E: 'static>(v: &[E]) -> Option<&[f32]> {
    let is_f32 = std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>();
    // SAFETY: E is f32: same size, alignment and validity.
    is_f32.then(|| unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) })
}

/// [`as_f32`], mutably.
pub(crate) fn as_f32_mut<E: 'static>(v: &mut [E]) -> Option<&mut [f32]> {
    let is_f32 = std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>();
    // SAFETY: as in `as_f32`; the borrow is passed on.
    is_f32.then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len()) })
}

/// Whether the AVX2/FMA kernels run for `E`: f32 on a CPU that has both (the conv kernels and
/// the 2x2 max pool's; every other case takes the portable code).
pub(crate) fn simd<E: Float>() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = std::any::TypeId::of::<E>();
        false
    }
}

/// `dst.copy_from_slice(src)` on rayon's threads, for whole activations and gradients: one
/// core's `memcpy` moves far less than the memory system can, and the op waits for it.
///
/// # Panics
/// If the lengths differ.
pub(crate) fn par_copy<E: Copy + Send + Sync>(dst: &mut [E], src: &[E]) {
    use rayon::prelude::*;
    assert_eq!(dst.len(), src.len(), "par_copy: lengths differ");
    const CHUNK: usize = 1 << 16;
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// How many images one rayon task takes: 4–8 images per chunk measured fastest for LeNet-sized
/// layers (a chunk's buffers stay in cache), but keep every thread busy on small batches.
pub(crate) fn images_per_task(batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (batch / (2 * threads)).clamp(1, 8)
}
