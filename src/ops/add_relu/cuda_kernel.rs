//! `max(a + b, 0)` on `Cuda`: `add_relu`/`relu_grad_add` of `src/ops/cuda/kernels.cu`, reading
//! `a` and `b` where dfdx keeps them and writing the output tensor in place.

use super::AddReluKernel;
use crate::ops::cuda::{CudaFloat, Held, add_relu, device_of, hold, new_tensor, relu_grad_add};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cuda, Tensor};

impl<E: CudaFloat> AddReluKernel<E> for Cuda {
    /// The output tensor, held (not copied) for its sign.
    type AddReluSaved = Option<Held<E>>;

    fn add_relu_forward<S: Shape>(
        &self,
        a: &Tensor<S, E, Self>,
        b: &Tensor<S, E, Self>,
        shape: S,
        save: bool,
    ) -> Result<(Tensor<S, E, Self>, Self::AddReluSaved), Self::Err> {
        let dev = device_of::<E>(self)?;
        let (a, b) = (hold(a)?, hold(b)?);
        let y = new_tensor(self, shape, |y| add_relu(&dev, &a, &b, y))?;
        let saved = match save {
            true => Some(hold(&y)?),
            false => None,
        };
        Ok((y, saved))
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
