//! Host kernels for batch norm. Data is `(B, C, P)`: the statistics of channel `c` are over the
//! `B` rows `x[b, c, ..]`; elementwise passes run in parallel over those rows.

use super::{BatchNormGeometry, BatchNormKernel, update_running};
use crate::Float;
use crate::ops::buffer::{Buffer, map_for_writing};
use crate::ops::to_host;
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, Tensor, TensorFromVec};
use rayon::prelude::*;

/// What backward needs: the normalised input `x̂` (B, C, P) and, per channel, `γ / σ`, and
/// `γ`, `β` when a ReLU follows (its mask is `x̂ γ + β > 0`).
pub struct CpuBatchNormSaved<E: Float> {
    xhat: Buffer<E>,
    gamma_over_std: Vec<E>,
    gamma_beta: Option<(Vec<E>, Vec<E>)>,
}

/// Per channel `c`, `f(c, row)` summed over the batch's rows of that channel (each row summed
/// in `E`, the rows in `f64`, so that a large batch loses no precision in `f32`).
fn channel_sums(g: &BatchNormGeometry, f: impl Fn(usize, usize) -> f64 + Sync) -> Vec<f64> {
    (0..g.channels)
        .into_par_iter()
        .map(|c| {
            (0..g.batch)
                .map(|b| f(c, (b * g.channels + c) * g.plane))
                .sum()
        })
        .collect()
}

fn row_sum<E: Float>(row: &[E], f: impl Fn(E) -> E) -> f64 {
    row.iter()
        .fold(E::zero(), |acc, &v| acc + f(v))
        .to_f64()
        .unwrap()
}

/// `out[b, c, p] = x[b, c, p] * a[c] + s[c]` (then `max(0, ·)` with `relu`), in parallel over
/// the rows.
fn affine<E: Float>(g: &BatchNormGeometry, x: &[E], a: &[E], s: &[E], relu: bool, out: &mut [E]) {
    out.par_chunks_mut(g.plane)
        .zip(x.par_chunks(g.plane))
        .enumerate()
        .for_each(|(row, (out, x))| {
            let c = row % g.channels;
            let (a, s) = (a[c], s[c]);
            // Two loops, so that each vectorises.
            if relu {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (v * a + s).max(E::zero());
                }
            } else {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v * a + s;
                }
            }
        });
}

fn from_f64<E: Float>(v: f64) -> E {
    E::from_f64(v).unwrap()
}

impl<E: Float> BatchNormKernel<E> for Cpu {
    type BatchNormSaved = CpuBatchNormSaved<E>;

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
        let n = g.per_channel();
        let empty = CpuBatchNormSaved {
            xhat: Buffer::zeroed(0),
            gamma_over_std: Vec::new(),
            gamma_beta: None,
        };
        let xh = to_host(x);
        let (gamma, beta) = (to_host(gamma), to_host(beta));
        // Two passes (mean, then the squared deviations): no cancellation in the variance.
        let mean: Vec<f64> = channel_sums(g, |_, r| row_sum(&xh[r..r + g.plane], |v| v))
            .into_iter()
            .map(|s| s / n as f64)
            .collect();
        let var: Vec<f64> = channel_sums(g, |c, r| {
            let m = from_f64::<E>(mean[c]);
            row_sum(&xh[r..r + g.plane], |v| (v - m) * (v - m))
        })
        .into_iter()
        .map(|s| s / n as f64)
        .collect();

        let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + g.epsilon).sqrt()).collect();
        // y = x̂ γ + β = x (γ/σ) + (β - μ γ/σ); x̂ itself is kept for backward.
        let a: Vec<E> = (0..g.channels)
            .map(|c| from_f64::<E>(inv_std[c]) * gamma[c])
            .collect();
        let s: Vec<E> = (0..g.channels)
            .map(|c| beta[c] - from_f64::<E>(mean[c]) * a[c])
            .collect();
        let mut out = Buffer::for_overwrite(g.len());
        affine(g, &xh, &a, &s, g.relu, &mut out);
        let saved = if save {
            let scale: Vec<E> = inv_std.iter().map(|&v| from_f64(v)).collect();
            let shift: Vec<E> = (0..g.channels)
                .map(|c| -from_f64::<E>(mean[c] * inv_std[c]))
                .collect();
            let mut xhat = Buffer::for_overwrite(g.len());
            affine(g, &xh, &scale, &shift, false, &mut xhat);
            CpuBatchNormSaved {
                xhat,
                gamma_over_std: a,
                gamma_beta: g.relu.then(|| (gamma.to_vec(), beta.to_vec())),
            }
        } else {
            empty
        };

        update_running(g, (&mean, &var), running_mean, running_var);
        Ok((self.try_tensor_from_vec(out.into_vec(), out_shape)?, saved))
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
        let xhat = &saved.xhat;
        // Through the ReLU first: dz = dy where z = x̂ γ + β > 0, else 0.
        let masked;
        let gout: &[E] = match &saved.gamma_beta {
            Some((gamma, beta)) => {
                let mut dz = Buffer::for_overwrite(g.len());
                dz.par_chunks_mut(g.plane)
                    .zip(gout.par_chunks(g.plane))
                    .zip(xhat.par_chunks(g.plane))
                    .enumerate()
                    .for_each(|(row, ((dz, dy), h))| {
                        let c = row % g.channels;
                        let (gm, bt) = (gamma[c], beta[c]);
                        for ((dz, &dy), &h) in dz.iter_mut().zip(dy).zip(h) {
                            *dz = if h * gm + bt > E::zero() {
                                dy
                            } else {
                                E::zero()
                            };
                        }
                    });
                masked = dz;
                &masked
            }
            None => gout,
        };
        // dβ = Σ dy, dγ = Σ dy x̂, per channel.
        let sum_dy = channel_sums(g, |_, r| row_sum(&gout[r..r + g.plane], |v| v));
        let sum_dy_xhat = channel_sums(g, |_, r| {
            gout[r..r + g.plane]
                .iter()
                .zip(&xhat[r..r + g.plane])
                .fold(E::zero(), |acc, (&d, &h)| acc + d * h)
                .to_f64()
                .unwrap()
        });
        for c in 0..g.channels {
            dbeta[c] += from_f64(sum_dy[c]);
            dgamma[c] += from_f64(sum_dy_xhat[c]);
        }
        // dx = (γ/σ) (dy - mean(dy) - x̂ mean(dy x̂)).
        let mean_dy: Vec<E> = sum_dy.iter().map(|s| from_f64(s / n as f64)).collect();
        let mean_dy_xhat: Vec<E> = sum_dy_xhat.iter().map(|s| from_f64(s / n as f64)).collect();
        let k = &saved.gamma_over_std;
        dx.par_chunks_mut(g.plane)
            .zip(gout.par_chunks(g.plane))
            .zip(xhat.par_chunks(g.plane))
            .enumerate()
            .for_each(|(row, ((dx, dy), h))| {
                let c = row % g.channels;
                let (k, m, mh) = (k[c], mean_dy[c], mean_dy_xhat[c]);
                map_for_writing(dx);
                for ((dx, &dy), &h) in dx.iter_mut().zip(dy).zip(h) {
                    *dx += k * (dy - m - h * mh);
                }
            });
        Ok(())
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
        let xh = to_host(x);
        let (gamma, beta) = (to_host(gamma), to_host(beta));
        let (rm, rv) = (to_host(running_mean), to_host(running_var));
        let a: Vec<E> = (0..g.channels)
            .map(|c| gamma[c] / (rv[c] + from_f64(g.epsilon)).sqrt())
            .collect();
        let s: Vec<E> = (0..g.channels).map(|c| beta[c] - rm[c] * a[c]).collect();
        let mut out = Buffer::for_overwrite(g.len());
        affine(g, &xh, &a, &s, g.relu, &mut out);
        self.try_tensor_from_vec(out.into_vec(), out_shape)
    }
}
