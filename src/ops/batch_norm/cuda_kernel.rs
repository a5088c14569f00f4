//! Batch norm on `Cuda`: `channel_dot`, `channel_affine` and `bn_input_grad` of
//! `src/ops/cuda/kernels.cu`. The per-channel numbers (C of them: means, variances, the running
//! statistics, the affine coefficients) are worked out on the host from the device's sums, as
//! the CPU kernel does in `f64`; the `(B, C, P)` data stays on the device.

use super::{BatchNormGeometry, BatchNormKernel, update_running};
use crate::ops::cuda::{
    CudaFloat, alloc, bn_input_grad, bn_relu_grad, channel_affine, channel_dot, device_of,
    into_tensor, to_device,
};
use crate::ops::to_host;
use cudarc::driver::{CudaDevice, CudaSlice};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cuda, CudaError, Tensor};
use std::sync::Arc;

/// What backward needs: `x̂` (B, C, P) and `γ / σ` (C), and `γ`, `β` when a ReLU follows
/// (its mask is `x̂ γ + β > 0`).
pub struct CudaBatchNormSaved<E> {
    xhat: Option<CudaSlice<E>>,
    gamma_over_std: Vec<E>,
    gamma_beta: Option<(Vec<E>, Vec<E>)>,
}

fn to_f64s<E: CudaFloat>(v: &[E]) -> Vec<f64> {
    v.iter().map(|v| v.to_f64().unwrap()).collect()
}

fn from_f64s<E: CudaFloat>(v: impl IntoIterator<Item = f64>) -> Vec<E> {
    v.into_iter().map(|v| E::from_f64(v).unwrap()).collect()
}

/// Per channel, the sum over B and P of `a * b` (of `a` alone without `b`), on the host.
fn sums<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    a: &CudaSlice<E>,
    b: Option<&CudaSlice<E>>,
    g: &BatchNormGeometry,
) -> Result<Vec<f64>, CudaError> {
    let mut out = dev.alloc_zeros::<E>(g.channels)?;
    channel_dot(dev, a, b, &mut out, (g.batch, g.channels, g.plane))?;
    Ok(to_f64s(&dev.dtoh_sync_copy(&out)?))
}

/// `y = x * a[c] + s[c]` (then `max(0, y)` with `relu`) into a new device buffer.
fn affine<E: CudaFloat>(
    dev: &Arc<CudaDevice>,
    x: &CudaSlice<E>,
    (a, s): (&[E], &[E]),
    relu: bool,
    g: &BatchNormGeometry,
) -> Result<CudaSlice<E>, CudaError> {
    let (a, s) = (dev.htod_sync_copy(a)?, dev.htod_sync_copy(s)?);
    let mut y = alloc::<E>(dev, g.len())?;
    channel_affine(
        dev,
        x,
        (&a, &s),
        relu,
        &mut y,
        (g.batch, g.channels, g.plane),
    )?;
    Ok(y)
}

impl<E: CudaFloat> BatchNormKernel<E> for Cuda {
    type BatchNormSaved = CudaBatchNormSaved<E>;

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
        let n = g.per_channel();
        let empty = CudaBatchNormSaved {
            xhat: None,
            gamma_over_std: Vec::new(),
            gamma_beta: None,
        };
        let x = to_device(&dev, x)?;
        let (gamma, beta) = (to_f64s(&to_host(gamma)), to_f64s(&to_host(beta)));
        let mean: Vec<f64> = sums(&dev, &x, None, g)?
            .into_iter()
            .map(|s| s / n as f64)
            .collect();
        // Two passes (the deviations, then their squares): no cancellation in the variance.
        let ones = from_f64s::<E>(vec![1.0; g.channels]);
        let shift = from_f64s::<E>(mean.iter().map(|m| -m));
        let centred = affine(&dev, &x, (&ones, &shift), false, g)?;
        let var: Vec<f64> = sums(&dev, &centred, Some(&centred), g)?
            .into_iter()
            .map(|s| s / n as f64)
            .collect();
        let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + g.epsilon).sqrt()).collect();
        let zeros = from_f64s::<E>(vec![0.0; g.channels]);
        let scale = from_f64s::<E>(inv_std.iter().copied());
        let xhat = affine(&dev, &centred, (&scale, &zeros), false, g)?;
        let (gamma_e, beta_e) = (from_f64s::<E>(gamma.iter().copied()), from_f64s::<E>(beta));
        let out = affine(&dev, &xhat, (&gamma_e, &beta_e), g.relu, g)?;
        let saved = match save {
            true => CudaBatchNormSaved {
                xhat: Some(xhat),
                gamma_over_std: from_f64s((0..g.channels).map(|c| gamma[c] * inv_std[c])),
                gamma_beta: g.relu.then_some((gamma_e, beta_e)),
            },
            false => empty,
        };
        update_running(g, (&mean, &var), running_mean, running_var);
        Ok((into_tensor(self, out, out_shape)?, saved))
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
        let n = g.per_channel();
        let Some(xhat) = saved.xhat else {
            return Ok(());
        };
        let dev = gout.device();
        let bcp = (g.batch, g.channels, g.plane);
        // Through the ReLU first: dz = dy where x̂ γ + β > 0, else 0.
        let masked = match &saved.gamma_beta {
            Some((gamma, beta)) => {
                let (gamma, beta) = (dev.htod_sync_copy(gamma)?, dev.htod_sync_copy(beta)?);
                let mut dz = alloc::<E>(&dev, g.len())?;
                bn_relu_grad(&dev, gout, &xhat, (&gamma, &beta), &mut dz, bcp)?;
                Some(dz)
            }
            None => None,
        };
        let gout = masked.as_ref().unwrap_or(gout);
        let sum_dy = sums(&dev, gout, None, g)?;
        let sum_dy_xhat = sums(&dev, gout, Some(&xhat), g)?;
        // dβ += Σ dy, dγ += Σ dy x̂ (C values each, through the host).
        let add = |buf: &mut CudaSlice<E>, plus: &[f64]| -> Result<(), CudaError> {
            let now = to_f64s(&dev.dtoh_sync_copy(buf)?);
            let sum = from_f64s::<E>(now.iter().zip(plus).map(|(a, b)| a + b));
            dev.htod_sync_copy_into(&sum, buf)?;
            Ok(())
        };
        add(dbeta, &sum_dy)?;
        add(dgamma, &sum_dy_xhat)?;
        let k = dev.htod_sync_copy(&saved.gamma_over_std)?;
        let mdy = dev.htod_sync_copy(&from_f64s::<E>(sum_dy.iter().map(|s| s / n as f64)))?;
        let mdyx = dev.htod_sync_copy(&from_f64s::<E>(sum_dy_xhat.iter().map(|s| s / n as f64)))?;
        bn_input_grad(&dev, gout, &xhat, &k, &mdy, &mdyx, dx, bcp)
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
        let x = to_device(&dev, x)?;
        let (gamma, beta) = (to_f64s(&to_host(gamma)), to_f64s(&to_host(beta)));
        let (rm, rv) = (
            to_f64s(&to_host(running_mean)),
            to_f64s(&to_host(running_var)),
        );
        let a: Vec<f64> = (0..g.channels)
            .map(|c| gamma[c] / (rv[c] + g.epsilon).sqrt())
            .collect();
        let s = from_f64s::<E>((0..g.channels).map(|c| beta[c] - rm[c] * a[c]));
        let out = affine(&dev, &x, (&from_f64s(a.iter().copied()), &s), g.relu, g)?;
        into_tensor(self, out, out_shape)
    }
}
