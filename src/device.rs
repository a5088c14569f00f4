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
/// that *is* the device memory: gradients are read and accumulated in place, and the only extra
/// traffic is one `memcpy` per operand. Other devices implement the two methods below with a
/// copy each way.
pub trait ConvDevice<E: Float>: dfdx::tensor_ops::Device<E> {
    /// Copies a gradient buffer into `dst` on the host.
    fn read_host(&self, src: &<Self as dfdx::tensor::Storage<E>>::Vec, dst: &mut [E]) -> Result<(), Self::Err>;

    /// Runs `f` on a gradient buffer seen as a host slice. `f` must add into it, never
    /// overwrite: a tensor may receive gradient from several uses.
    fn update_host<R>(
        &self,
        buf: &mut <Self as dfdx::tensor::Storage<E>>::Vec,
        f: impl FnOnce(&mut [E]) -> R,
    ) -> Result<R, Self::Err>;

    /// Adds `src` element-wise into the gradient buffer `dst`.
    fn add_host_into(&self, dst: &mut <Self as dfdx::tensor::Storage<E>>::Vec, src: &[E]) -> Result<(), Self::Err> {
        self.update_host(dst, |dst| {
            assert_eq!(dst.len(), src.len(), "gradient buffer and host gradient differ in length");
            for (d, s) in dst.iter_mut().zip(src) {
                *d += *s;
            }
        })
    }
}

macro_rules! cpu_conv_device {
    ($($e:ty),*) => {$(
        impl ConvDevice<$e> for Cpu {
            fn read_host(&self, src: &<Self as dfdx::tensor::Storage<$e>>::Vec, dst: &mut [$e]) -> Result<(), Self::Err> {
                dst.copy_from_slice(src);
                Ok(())
            }

            fn update_host<R>(
                &self,
                buf: &mut <Self as dfdx::tensor::Storage<$e>>::Vec,
                f: impl FnOnce(&mut [$e]) -> R,
            ) -> Result<R, Self::Err> {
                Ok(f(buf))
            }
        }
    )*};
}
cpu_conv_device!(f32, f64);

#[cfg(feature = "cuda")]
macro_rules! cuda_conv_device {
    ($($e:ty),*) => {$(
        // A round trip through host memory: correct on any CUDA device, but not fast. The CUDA
        // issue replaces this (and the host kernels behind it) with device kernels.
        impl ConvDevice<$e> for dfdx::tensor::Cuda {
            fn read_host(&self, src: &<Self as dfdx::tensor::Storage<$e>>::Vec, dst: &mut [$e]) -> Result<(), Self::Err> {
                src.device().dtoh_sync_copy_into(src, dst).map_err(dfdx::tensor::CudaError::from)?;
                Ok(())
            }

            fn update_host<R>(
                &self,
                buf: &mut <Self as dfdx::tensor::Storage<$e>>::Vec,
                f: impl FnOnce(&mut [$e]) -> R,
            ) -> Result<R, Self::Err> {
                let dev = buf.device();
                let mut host = dev.dtoh_sync_copy(buf).map_err(dfdx::tensor::CudaError::from)?;
                let r = f(&mut host);
                dev.htod_sync_copy_into(&host, buf).map_err(dfdx::tensor::CudaError::from)?;
                Ok(r)
            }
        }
    )*};
}
#[cfg(feature = "cuda")]
cuda_conv_device!(f32, f64);
