//! Batch normalisation over the channels of `(B, C, P)` data (`P = H * W` for images, 1 for
//! vectors), PyTorch's `BatchNorm2d`/`BatchNorm1d`, forward and backward on dfdx's tape.
//!
//! dfdx 0.13's `BatchNorm2D` is stable but made of generic broadcast ops, each a single-threaded
//! pass over the activation (and as many again backward): on a VGG-style stack it cost more
//! than all the convolutions. This op does training in two passes forward (statistics, then
//! normalise) and two backward (per-channel sums, then the input gradient), each parallel.
//!
//! Training normalises with the batch's mean and biased variance and moves the running
//! statistics as PyTorch does: `running = (1 - momentum) * running + momentum * stat`, with the
//! unbiased variance (`N / (N - 1)`, `N = B * P`) for the running one. Inference normalises with
//! the running statistics.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
mod cuda_kernel;

use crate::Float;
use crate::ops::{put_grad, take_grad};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{CopySlice, PutTape, SplitTape, Storage, Tape, Tensor};
use dfdx::tensor_ops::{Device, ReshapeTo};

/// The sizes a batch norm works over, and its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormGeometry {
    /// Images (or vectors) in the batch; 1 for one image.
    pub batch: usize,
    /// Channels (features).
    pub channels: usize,
    /// Values per channel per image: `H * W`, 1 for vectors.
    pub plane: usize,
    /// Added to the variance before the square root.
    pub epsilon: f64,
    /// How far one batch moves the running statistics.
    pub momentum: f64,
    /// Whether a ReLU follows, applied in the same passes (forward and backward): `cnn!` fuses
    /// `batch_norm2d, relu` in training.
    pub relu: bool,
}

impl BatchNormGeometry {
    /// Values in the input.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Whether the input is empty (a batch of 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per channel: what the statistics are taken over.
    pub fn per_channel(&self) -> usize {
        self.batch * self.plane
    }
}

/// A device's kernels for batch norm. Layouts: `x` and the output (B, C, P); `gamma`, `beta`,
/// the running statistics (C). Never called with an empty batch (the op handles it).
pub trait BatchNormKernel<E: Float>: Storage<E> {
    /// What the backward pass keeps of the forward pass.
    type BatchNormSaved: 'static;

    /// Training: normalises `x` with its own per-channel statistics, scales by `gamma` and
    /// shifts by `beta` (then applies the ReLU, with `g.relu`), and moves
    /// `running_mean`/`running_var` towards the batch's. When `save` is false no backward pass
    /// will run.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
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
    ) -> Result<(Tensor<So, E, Self>, Self::BatchNormSaved), Self::Err>;

    /// Adds the gradients for output gradient `gout` into `dx`, `dgamma` and `dbeta`.
    fn batch_norm_backward(
        &self,
        g: &BatchNormGeometry,
        saved: Self::BatchNormSaved,
        gout: &Self::Vec,
        dx: &mut Self::Vec,
        dgamma: &mut Self::Vec,
        dbeta: &mut Self::Vec,
    ) -> Result<(), Self::Err>;

    /// Inference: `(x - running_mean) / sqrt(running_var + epsilon) * gamma + beta` (then the
    /// ReLU, with `g.relu`).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_infer<Sx: Shape, Sc: Shape, So: Shape>(
        &self,
        g: &BatchNormGeometry,
        x: &Tensor<Sx, E, Self>,
        gamma: &Tensor<Sc, E, Self>,
        beta: &Tensor<Sc, E, Self>,
        running_mean: &Tensor<Sc, E, Self>,
        running_var: &Tensor<Sc, E, Self>,
        out_shape: So,
    ) -> Result<Tensor<So, E, Self>, Self::Err>;
}

/// Moves the running statistics towards the batch's per-channel `mean` and biased `var`, as
/// PyTorch does: `running = (1 - momentum) * running + momentum * stat`, with the unbiased
/// variance (`N / (N - 1)`) for the running one. The CPU kernel calls this with the
/// statistics it worked out; the CUDA kernel does the same on the device (`bn_stat_finish` in
/// `src/ops/cuda/kernels.cu`).
pub(crate) fn update_running<Sc: Shape, E: Float, D: CopySlice<E>>(
    g: &BatchNormGeometry,
    (mean, var): (&[f64], &[f64]),
    running_mean: &mut Tensor<Sc, E, D>,
    running_var: &mut Tensor<Sc, E, D>,
) {
    let n = g.per_channel();
    let unbias = if n > 1 {
        n as f64 / (n - 1) as f64
    } else {
        1.0
    };
    let m = g.momentum;
    let moved = |running: &Tensor<Sc, E, D>, stat: &dyn Fn(usize) -> f64| -> Vec<E> {
        let now = crate::ops::to_host(running);
        (0..g.channels)
            .map(|c| E::from_f64((1.0 - m) * now[c].to_f64().unwrap() + m * stat(c)).unwrap())
            .collect()
    };
    let new_mean = moved(running_mean, &|c| mean[c]);
    let new_var = moved(running_var, &|c| var[c] * unbias);
    running_mean.copy_from(&new_mean);
    running_var.copy_from(&new_var);
}

fn check<Sx: Shape, Sc: Shape, E, D: Storage<E>, T>(
    g: &BatchNormGeometry,
    x: &Tensor<Sx, E, D, T>,
    gamma: &Tensor<Sc, E, D>,
) {
    assert_eq!(
        x.shape().num_elements(),
        g.len(),
        "batch norm: the input is not {g:?}"
    );
    assert_eq!(gamma.shape().num_elements(), g.channels);
}

/// Training batch norm of `x` (see the module's docs), the running statistics updated in place.
/// Gradients flow to `x`, `gamma` and `beta` when `x` carries a tape.
///
/// # Panics
/// If the shapes' sizes disagree with `g`.
#[allow(clippy::too_many_arguments)]
pub fn try_batch_norm_train<Sx, Sc, E, D, T>(
    x: Tensor<Sx, E, D, T>,
    g: BatchNormGeometry,
    gamma: &Tensor<Sc, E, D>,
    beta: &Tensor<Sc, E, D>,
    running_mean: &mut Tensor<Sc, E, D>,
    running_var: &mut Tensor<Sc, E, D>,
) -> Result<Tensor<Sx, E, D, T>, D::Err>
where
    Sx: Shape,
    Sc: Shape,
    E: Float,
    D: Device<E> + BatchNormKernel<E>,
    T: Tape<E, D>,
{
    check(&g, &x, gamma);
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let dev = x.device().clone();
    let shape = *x.shape();
    // An empty batch: no statistics, the running ones unchanged, and no kernel runs.
    let (out, saved) = match g.is_empty() {
        true => (dev.try_zeros_like(&shape)?, None),
        false => {
            let (out, saved) = dev.batch_norm_train(
                &g,
                &x,
                gamma,
                beta,
                running_mean,
                running_var,
                shape,
                T::OWNS_TAPE,
            )?;
            (out, Some(saved))
        }
    };
    if T::OWNS_TAPE {
        let (x_g, gamma_g, beta_g, out_g) = (x.ghost(), gamma.ghost(), beta.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gout = take_grad!(grads, &out_g, &dev, E);
            let mut dx = take_grad!(grads, &x_g, &dev, E);
            let mut dgamma = take_grad!(grads, &gamma_g, &dev, E);
            let mut dbeta = take_grad!(grads, &beta_g, &dev, E);
            if let Some(saved) = saved {
                dev.batch_norm_backward(&g, saved, &gout, &mut dx, &mut dgamma, &mut dbeta)?;
            }
            put_grad!(grads, &out_g, gout);
            put_grad!(grads, &x_g, dx);
            put_grad!(grads, &gamma_g, dgamma);
            put_grad!(grads, &beta_g, dbeta);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// Inference batch norm of `x` with the running statistics (no tape is recorded: inference
/// takes an untraced input, as dfdx's own batch norm does).
///
/// # Panics
/// If the shapes' sizes disagree with `g`.
pub fn try_batch_norm_infer<Sx, Sc, E, D>(
    x: Tensor<Sx, E, D>,
    g: BatchNormGeometry,
    gamma: &Tensor<Sc, E, D>,
    beta: &Tensor<Sc, E, D>,
    running_mean: &Tensor<Sc, E, D>,
    running_var: &Tensor<Sc, E, D>,
) -> Result<Tensor<Sx, E, D>, D::Err>
where
    Sx: Shape,
    Sc: Shape,
    E: Float,
    D: Device<E> + BatchNormKernel<E>,
{
    check(&g, &x, gamma);
    let x = x.try_contiguous()?;
    let shape = *x.shape();
    if g.is_empty() {
        return x.device().try_zeros_like(&shape);
    }
    x.device()
        .clone()
        .batch_norm_infer(&g, &x, gamma, beta, running_mean, running_var, shape)
}
