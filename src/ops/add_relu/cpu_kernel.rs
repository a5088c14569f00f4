//! Host kernels for `max(a + b, 0)`: one parallel pass each way.

use super::AddReluKernel;
use crate::Float;
use crate::ops::buffer::{Buffer, map_for_writing};
use crate::ops::to_host;
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, Tensor, TensorFromVec};
use rayon::prelude::*;

/// Elements per rayon task: large enough that a task is worth its scheduling.
const CHUNK: usize = 1 << 14;

/// The output, kept for its sign.
pub struct CpuAddReluSaved<E: Float>(Buffer<E>);

impl<E: Float> AddReluKernel<E> for Cpu {
    type AddReluSaved = CpuAddReluSaved<E>;

    fn add_relu_forward<S: Shape>(
        &self,
        a: &Tensor<S, E, Self>,
        b: &Tensor<S, E, Self>,
        shape: S,
        save: bool,
    ) -> Result<(Tensor<S, E, Self>, Self::AddReluSaved), Self::Err> {
        let (a, b) = (to_host(a), to_host(b));
        let mut out = Buffer::for_overwrite(a.len());
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(out, (a, b))| {
                for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                    *o = (a + b).max(E::zero());
                }
            });
        let saved = CpuAddReluSaved(if save {
            let mut keep = Buffer::for_overwrite(out.len());
            keep.copy_from_slice(&out);
            keep
        } else {
            Buffer::zeroed(0)
        });
        Ok((self.try_tensor_from_vec(out.into_vec(), shape)?, saved))
    }

    fn add_relu_backward(
        &self,
        saved: &Self::AddReluSaved,
        gout: &Self::Vec,
        d: &mut Self::Vec,
    ) -> Result<(), Self::Err> {
        d.par_chunks_mut(CHUNK)
            .zip(gout.par_chunks(CHUNK).zip(saved.0.par_chunks(CHUNK)))
            .for_each(|(d, (g, y))| {
                map_for_writing(d);
                // A select, not a branch: the sign is random, and the loop vectorizes.
                for ((d, &g), &y) in d.iter_mut().zip(g).zip(y) {
                    *d += if y > E::zero() { g } else { E::zero() };
                }
            });
        Ok(())
    }
}
