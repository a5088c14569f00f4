//! Host kernels for batch norm. Data is `(B, C, P)`: the statistics of channel `c` are over the
//! `B` rows `x[b, c, ..]`; elementwise passes run in parallel over those rows.

use super::{BatchNormGeometry, BatchNormKernel, update_running};
use crate::Float;
use crate::ops::buffer::{Buffer, map_for_writing};
use crate::ops::{sum_by, to_host};
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, Tensor, TensorFromVec};
use rayon::prelude::*;

/// What backward needs: the input `x` (B, C, P) (the host copy forward made anyway; `x̂` is
/// recomputed from it, which saves writing and reading a second tensor), and per channel the
/// affine maps forward used: `x̂ = x * inv_std + shift` and `z = x * a + s` (`a = γ/σ`), whose
/// sign is the ReLU's mask when one follows.
pub struct CpuBatchNormSaved<E: Float> {
    x: Buffer<E>,
    inv_std: Vec<E>,
    shift: Vec<E>,
    a: Vec<E>,
    s: Vec<E>,
}

/// Per channel `c`, `f(c, row)` over the batch's rows of that channel (the row's offset into
/// `(B, C, P)` data), combined with `combine`: in parallel over the channels.
fn per_channel<T: Send>(
    g: &BatchNormGeometry,
    f: impl Fn(usize, usize) -> T + Sync,
    combine: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    (0..g.channels)
        .into_par_iter()
        .map(|c| {
            (0..g.batch)
                .map(|b| f(c, (b * g.channels + c) * g.plane))
                .reduce(&combine)
                .expect("a non-empty batch")
        })
        .collect()
}

/// Count, mean and sum of squared deviations of a set of values: a row's (two passes over it
/// while it sits in cache, so no cancellation), merged across rows by Chan et al.'s formula,
/// in `f64`. The data is read from memory once, yet the variance is as exact as two passes
/// over all of it.
#[derive(Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn of<E: Float>(row: &[E]) -> Moments {
        let n = row.len() as f64;
        let mean = sum_by(row, |v| v).to_f64().unwrap() / n;
        let m = from_f64::<E>(mean);
        let m2 = sum_by(row, |v| (v - m) * (v - m)).to_f64().unwrap();
        // `m` is `mean` rounded to `E`: correct the sum of squares to the exact mean.
        let d = mean - m.to_f64().unwrap();
        Moments {
            n,
            mean,
            m2: (m2 - n * d * d).max(0.0),
        }
    }

    fn merge(self, o: Moments) -> Moments {
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        Moments {
            n,
            mean: self.mean + d * o.n / n,
            m2: self.m2 + o.m2 + d * d * self.n * o.n / n,
        }
    }
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

/// The output gradient through the ReLU, if one follows: `dy` where `z = x a + s > 0` (the
/// same arithmetic as forward's, so the same mask), else 0.
#[inline(always)]
fn through_relu<E: Float, const RELU: bool>(dy: E, x: E, a: E, s: E) -> E {
    match RELU && x * a + s <= E::zero() {
        true => E::zero(),
        false => dy,
    }
}

/// Batch norm's backward pass (see [`BatchNormKernel::batch_norm_backward`]), with or without
/// the ReLU (a constant, so that neither inner loop tests it per element).
fn backward<E: Float, const RELU: bool>(
    g: &BatchNormGeometry,
    saved: &CpuBatchNormSaved<E>,
    gout: &[E],
    dx: &mut [E],
    dgamma: &mut [E],
    dbeta: &mut [E],
) {
    let n = g.per_channel();
    let CpuBatchNormSaved {
        x,
        inv_std,
        shift,
        a,
        s,
    } = saved;
    // One pass for dβ = Σ dz and dγ = Σ dz x̂ per channel (dz: dy through the ReLU); each row
    // summed in `E`, the rows in `f64`.
    let sums = per_channel(
        g,
        |c, r| {
            let (sc, sh, a, s) = (inv_std[c], shift[c], a[c], s[c]);
            let (mut dz, mut dz_xhat) = (E::zero(), E::zero());
            for (&dy, &x) in gout[r..r + g.plane].iter().zip(&x[r..r + g.plane]) {
                let d = through_relu::<E, RELU>(dy, x, a, s);
                dz += d;
                dz_xhat += d * (x * sc + sh);
            }
            (dz.to_f64().unwrap(), dz_xhat.to_f64().unwrap())
        },
        |p, q| (p.0 + q.0, p.1 + q.1),
    );
    for (c, &(sum_dz, sum_dz_xhat)) in sums.iter().enumerate() {
        dbeta[c] += from_f64(sum_dz);
        dgamma[c] += from_f64(sum_dz_xhat);
    }
    // dx = (γ/σ) (dz - mean(dz) - x̂ mean(dz x̂)).
    let mean_dz: Vec<E> = sums.iter().map(|s| from_f64(s.0 / n as f64)).collect();
    let mean_dz_xhat: Vec<E> = sums.iter().map(|s| from_f64(s.1 / n as f64)).collect();
    dx.par_chunks_mut(g.plane)
        .zip(gout.par_chunks(g.plane))
        .zip(x.par_chunks(g.plane))
        .enumerate()
        .for_each(|(row, ((dx, dy), x))| {
            let c = row % g.channels;
            let (k, m, mh) = (a[c], mean_dz[c], mean_dz_xhat[c]);
            let (sc, sh, a, s) = (inv_std[c], shift[c], a[c], s[c]);
            map_for_writing(dx);
            for ((dx, &dy), &x) in dx.iter_mut().zip(dy).zip(x) {
                let d = through_relu::<E, RELU>(dy, x, a, s);
                *dx += k * (d - m - (x * sc + sh) * mh);
            }
        });
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
        // The input's copy (one thread's `memcpy`) beside the output's buffer, whose
        // clearing, when new, takes the other core.
        let (xh, mut out) = rayon::join(|| to_host(x), || Buffer::for_overwrite(g.len()));
        let (gamma, beta) = (to_host(gamma), to_host(beta));
        let moments = per_channel(g, |_, r| Moments::of(&xh[r..r + g.plane]), Moments::merge);
        let mean: Vec<f64> = moments.iter().map(|m| m.mean).collect();
        let var: Vec<f64> = moments.iter().map(|m| m.m2 / m.n).collect();

        let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + g.epsilon).sqrt()).collect();
        // y = x̂ γ + β = x (γ/σ) + (β - μ γ/σ).
        let a: Vec<E> = (0..g.channels)
            .map(|c| from_f64::<E>(inv_std[c]) * gamma[c])
            .collect();
        let s: Vec<E> = (0..g.channels)
            .map(|c| beta[c] - from_f64::<E>(mean[c]) * a[c])
            .collect();
        affine(g, &xh, &a, &s, g.relu, &mut out);
        update_running(g, (&mean, &var), running_mean, running_var);
        let saved = CpuBatchNormSaved {
            inv_std: inv_std.iter().map(|&v| from_f64(v)).collect(),
            shift: (0..g.channels)
                .map(|c| -from_f64::<E>(mean[c] * inv_std[c]))
                .collect(),
            a,
            s,
            x: if save { xh } else { Buffer::zeroed(0) },
        };
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
        // (the geometry says whether a ReLU followed; forward saw the same one)
        if g.relu {
            backward::<E, true>(g, &saved, gout, dx, dgamma, dbeta);
        } else {
            backward::<E, false>(g, &saved, gout, dx, dgamma, dbeta);
        }
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
