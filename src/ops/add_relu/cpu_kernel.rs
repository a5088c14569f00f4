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

/// Where the output was positive (1) or not (0): all backward needs, a quarter of the bytes
/// of the output (f32) that it stands for.
pub struct CpuAddReluSaved(Buffer<u8>);

impl<E: Float> AddReluKernel<E> for Cpu {
    type AddReluSaved = CpuAddReluSaved;

    fn add_relu_forward<S: Shape>(
        &self,
        a: &Tensor<S, E, Self>,
        b: &Tensor<S, E, Self>,
        shape: S,
        save: bool,
    ) -> Result<(Tensor<S, E, Self>, Self::AddReluSaved), Self::Err> {
        // The sum is written over `a`'s host copy, which then becomes the output: no buffer
        // of its own to allocate and clear.
        // (the two copies at once: each is one thread's `memcpy`, the op waits for both)
        let (mut out, b) = rayon::join(|| to_host(a), || to_host(b));
        let mut mask = Buffer::<u8>::for_overwrite(if save { out.len() } else { 0 });
        if save {
            out.par_chunks_mut(CHUNK)
                .zip(b.par_chunks(CHUNK).zip(mask.par_chunks_mut(CHUNK)))
                .for_each(|(out, (b, m))| {
                    for ((o, &b), m) in out.iter_mut().zip(b).zip(m) {
                        let v = *o + b;
                        *m = u8::from(v > E::zero());
                        *o = v.max(E::zero());
                    }
                });
        } else {
            out.par_chunks_mut(CHUNK)
                .zip(b.par_chunks(CHUNK))
                .for_each(|(out, b)| {
                    for (o, &b) in out.iter_mut().zip(b) {
                        *o = (*o + b).max(E::zero());
                    }
                });
        }
        let out = self.try_tensor_from_vec(out.into_vec(), shape)?;
        Ok((out, CpuAddReluSaved(mask)))
    }

    fn add_relu_backward(
        &self,
        saved: &Self::AddReluSaved,
        gout: &Self::Vec,
        d: &mut Self::Vec,
    ) -> Result<(), Self::Err> {
        d.par_chunks_mut(CHUNK)
            .zip(gout.par_chunks(CHUNK).zip(saved.0.par_chunks(CHUNK)))
            .for_each(|(d, (g, m))| {
                map_for_writing(d);
                // A select, not a branch: the sign is random, and the loop vectorizes.
                for ((d, &g), &m) in d.iter_mut().zip(g).zip(m) {
                    *d += if m != 0 { g } else { E::zero() };
                }
            });
        Ok(())
    }
}
