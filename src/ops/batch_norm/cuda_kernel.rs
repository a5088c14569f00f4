//! Batch norm on `Cuda`, all on the device: the `bn_*` kernels of `src/ops/cuda/kernels.cu`.
//! The per-channel statistics are summed in `f64` there (as the CPU kernel sums them), the
//! running statistics are moved there into new tensors, and the input, `γ`, `β` and the
//! running statistics are read where dfdx keeps them. Nothing crosses to the host.
//!
//! Buffers (`N = B * P`): `stats` (C, 2) `f64` = mean, `1/σ`; the input and the output (when a
//! ReLU follows: its mask) are held for backward rather than a copy of `x̂`, which backward
//! recomputes as `(x - mean) / σ`.

use super::{BatchNormGeometry, BatchNormKernel};
use crate::ops::cuda::{
    CudaFloat, Held, alloc, bn_apply, bn_backward, bn_infer, bn_stats, device_of, hold, new_tensor,
};
use cudarc::driver::{CudaSlice, DevicePtr};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cuda, Tensor};

/// What backward needs: the input, `γ`, the statistics, and the output when a ReLU follows.
pub struct CudaBatchNormSaved<E: CudaFloat> {
    x: Held<E>,
    gamma: Held<E>,
    stats: CudaSlice<f64>,
    y: Option<Held<E>>,
}

impl<E: CudaFloat> BatchNormKernel<E> for Cuda {
    type BatchNormSaved = Option<CudaBatchNormSaved<E>>;

    fn batch_norm_train<Sx: Shape, Sc: Shape, So: Shape>(
        &self,
        g: &BatchNormGeometry,
        x: &Tensor<Sx, E, Self>,
        gamma: &Tensor<Sc, E, Self>,
        beta: &Tensor<Sc, E, Self>,
        running_mean: &mut Tensor<Sc, E, Self>,
        running_var: &mut Tensor<Sc, E, Self>,
        out_shape: So,
        save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::BatchNormSaved), Self::Err> {
        let dev = device_of::<E>(self)?;
        let bcp = (g.batch, g.channels, g.plane);
        let (x, gamma, beta) = (hold(x)?, hold(gamma)?, hold(beta)?);
        let mut stats = alloc::<f64>(&dev, 2 * g.channels)?;
        // The running statistics move into new tensors (as dfdx's copy-on-write would copy a
        // shared one): one kernel reads the old and writes the new.
        let (rm, rv) = (hold(running_mean)?, hold(running_var)?);
        let sc = *running_mean.shape();
        let mut new_rv = None;
        let new_rm = new_tensor(self, sc, |new_rm| {
            new_rv = Some(new_tensor(self, sc, |new_rv| {
                bn_stats(
                    &dev,
                    &x,
                    (&rm, &rv),
                    &mut stats,
                    (new_rm, new_rv),
                    bcp,
                    (g.epsilon, g.momentum),
                )
            })?);
            Ok(())
        })?;
        *running_mean = new_rm;
        *running_var = new_rv.expect("filled above");
        let out = new_tensor(self, out_shape, |y| {
            bn_apply(&dev, &x, &stats, (&gamma, &beta), y, bcp, g.relu)
        })?;
        let saved = match save {
            true => Some(CudaBatchNormSaved {
                y: g.relu.then(|| hold(&out)).transpose()?,
                x,
                gamma,
                stats,
            }),
            false => None,
        };
        Ok((out, saved))
    }

    fn batch_norm_backward(
        &self,
        g: &BatchNormGeometry,
        saved: Self::BatchNormSaved,
        gout: &Self::Vec,
        dx: &mut Self::Vec,
        dgamma: &mut Self::Vec,
        dbeta: &mut Self::Vec,
    ) -> Result<(), Self::Err> {
        let Some(CudaBatchNormSaved { x, gamma, stats, y }) = saved else {
            return Ok(());
        };
        let y = y.as_ref().map(|y| y as &dyn DevicePtr<E>);
        bn_backward(
            &gout.device(),
            (&x, y, &stats),
            &gamma,
            gout,
            dx,
            (dgamma, dbeta),
            (g.batch, g.channels, g.plane),
        )
    }

    fn batch_norm_infer<Sx: Shape, Sc: Shape, So: Shape>(
        &self,
        g: &BatchNormGeometry,
        x: &Tensor<Sx, E, Self>,
        gamma: &Tensor<Sc, E, Self>,
        beta: &Tensor<Sc, E, Self>,
        running_mean: &Tensor<Sc, E, Self>,
        running_var: &Tensor<Sc, E, Self>,
        out_shape: So,
    ) -> Result<Tensor<So, E, Self>, Self::Err> {
        let dev = device_of::<E>(self)?;
        let (x, gamma, beta) = (hold(x)?, hold(gamma)?, hold(beta)?);
        let (rm, rv) = (hold(running_mean)?, hold(running_var)?);
        new_tensor(self, out_shape, |y| {
            bn_infer(
                &dev,
                &x,
                (&gamma, &beta),
                (&rm, &rv),
                y,
                (g.batch, g.channels, g.plane),
                g.epsilon,
                g.relu,
            )
        })
    }
}
