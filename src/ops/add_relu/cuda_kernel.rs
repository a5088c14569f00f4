//! `max(a + b, 0)` on `Cuda`: `add_relu`/`relu_grad_add` of `src/ops/cuda/kernels.cu`.

use super::AddReluKernel;
use crate::ops::cuda::{
    CudaFloat, add_relu, alloc, device_of, into_tensor, relu_grad_add, to_device,
};
use cudarc::driver::{CudaSlice, DeviceSlice};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cuda, Tensor};

impl<E: CudaFloat> AddReluKernel<E> for Cuda {
    /// The output, kept on the device for its sign.
    type AddReluSaved = Option<CudaSlice<E>>;

    fn add_relu_forward<S: Shape>(
        &self,
        a: &Tensor<S, E, Self>,
        b: &Tensor<S, E, Self>,
        shape: S,
        save: bool,
    ) -> Result<(Tensor<S, E, Self>, Self::AddReluSaved), Self::Err> {
        let dev = device_of::<E>(self)?;
        let (a, b) = (to_device(&dev, a)?, to_device(&dev, b)?);
        let mut y = alloc::<E>(&dev, shape.num_elements())?;
        add_relu(&dev, &a, &b, &mut y)?;
        let saved = match save {
            true => {
                let mut keep = alloc::<E>(&dev, y.len())?;
                dev.dtod_copy(&y, &mut keep)?;
                Some(keep)
            }
            false => None,
        };
        Ok((into_tensor(self, y, shape)?, saved))
    }

    fn add_relu_backward(
        &self,
        saved: &Self::AddReluSaved,
        gout: &Self::Vec,
        d: &mut Self::Vec,
    ) -> Result<(), Self::Err> {
        let y = saved
            .as_ref()
            .expect("add_relu's backward runs only when forward saved");
        relu_grad_add(&gout.device(), gout, y, d)
    }
}
