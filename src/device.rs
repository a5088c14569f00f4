//! The element types and devices the crate's layers run on.

use dfdx::shapes::Dtype;
use dfdx::tensor::Cpu;
use rand_distr::uniform::SampleUniform;

/// A float element type the layers accept: `f32` or `f64`.
///
/// Our kernels hand their inner products to the `gemm` crate, which supports exactly these two;
/// `f64` is what the finite-difference gradient tests run in.
pub trait Float:
    Dtype + num_traits::Float + SampleUniform + Send + Sync + std::fmt::Debug + 'static
{
    /// The pool of host buffers the ops reuse for this type (an implementation detail).
    #[doc(hidden)]
    fn buffer_pool() -> &'static crate::ops::buffer::BufferPool<Self>;
}
impl Float for f32 {
    fn buffer_pool() -> &'static crate::ops::buffer::BufferPool<Self> {
        static POOL: crate::ops::buffer::BufferPool<f32> = crate::ops::buffer::BufferPool::new();
        &POOL
    }
}
impl Float for f64 {
    fn buffer_pool() -> &'static crate::ops::buffer::BufferPool<Self> {
        static POOL: crate::ops::buffer::BufferPool<f64> = crate::ops::buffer::BufferPool::new();
        &POOL
    }
}

/// A dfdx device that can run this crate's conv and pooling ops (forward and backward).
///
/// The ops compute on host memory with our own kernels (`src/ops/*/cpu_kernel.rs`). On `Cpu`
/// that *is* the device memory, and the only extra traffic is one `memcpy` per operand. Other
/// devices implement the one method below to fold a host-side gradient into their gradient
/// buffer.
pub trait ConvDevice<E: Float>: dfdx::tensor_ops::Device<E> {
    /// Adds `src` element-wise into the gradient buffer `dst` (never overwrites: a tensor may
    /// receive gradient from several uses).
    fn add_host_into(
        &self,
        dst: &mut <Self as dfdx::tensor::Storage<E>>::Vec,
        src: &[E],
    ) -> Result<(), Self::Err>;
}

macro_rules! cpu_conv_device {
    ($($e:ty),*) => {$(
        impl ConvDevice<$e> for Cpu {
            fn add_host_into(
                &self,
                dst: &mut <Self as dfdx::tensor::Storage<$e>>::Vec,
                src: &[$e],
            ) -> Result<(), Self::Err> {
                let dst: &mut [$e] = dst;
                assert_eq!(dst.len(), src.len(), "gradient buffer and host gradient differ in length");
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += *s;
                }
                Ok(())
            }
        }
    )*};
}
cpu_conv_device!(f32, f64);

#[cfg(feature = "cuda")]
macro_rules! cuda_conv_device {
    ($($e:ty),*) => {$(
impl ConvDevice<$e> for dfdx::tensor::Cuda {
    // A round trip through host memory: correct on any CUDA device, but not fast. The CUDA
    // issue replaces this (and the host kernels behind it) with device kernels.
    fn add_host_into(
        &self,
        dst: &mut <Self as dfdx::tensor::Storage<$e>>::Vec,
        src: &[$e],
    ) -> Result<(), Self::Err> {
        let dev = dst.device();
        let mut host = dev.dtoh_sync_copy(dst).map_err(dfdx::tensor::CudaError::from)?;
        for (d, s) in host.iter_mut().zip(src) {
            *d += *s;
        }
        dev.htod_sync_copy_into(&host, dst)
            .map_err(dfdx::tensor::CudaError::from)?;
        Ok(())
    }
}
    )*};
}
#[cfg(feature = "cuda")]
cuda_conv_device!(f32, f64);
