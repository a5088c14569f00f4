//! `max(a + b, 0)` in one pass, forward and backward: the end of a residual block (`body(x) +
//! shortcut(x)`, then ReLU), where dfdx would make four single-threaded passes (add and ReLU,
//! each forward and backward).

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
mod cuda_kernel;

use crate::Float;
use crate::ops::{put_grad, take_grad};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Merge, PutTape, SplitTape, Storage, Tape, Tensor};
use dfdx::tensor_ops::{Device, ReshapeTo};

/// A device's kernels for [`try_add_relu`]; all buffers have the same length, never 0.
pub trait AddReluKernel<E: Float>: Storage<E> {
    /// What backward keeps: where the output was positive (the ReLU's mask).
    type AddReluSaved: 'static;

    /// `max(a + b, 0)` as a tensor of shape `shape`; nothing is kept unless `save`.
    #[allow(clippy::type_complexity)]
    fn add_relu_forward<S: Shape>(
        &self,
        a: &Tensor<S, E, Self>,
        b: &Tensor<S, E, Self>,
        shape: S,
        save: bool,
    ) -> Result<(Tensor<S, E, Self>, Self::AddReluSaved), Self::Err>;

    /// Adds `gout` where the output was positive into `d` (the gradient of `a` or of `b`).
    fn add_relu_backward(
        &self,
        saved: &Self::AddReluSaved,
        gout: &Self::Vec,
        d: &mut Self::Vec,
    ) -> Result<(), Self::Err>;
}

/// `max(a + b, 0)`, elementwise; gradients flow to both inputs (the tapes are merged, as in
/// dfdx's own `add`).
pub fn try_add_relu<S, E, D, T, R>(
    a: Tensor<S, E, D, T>,
    b: Tensor<S, E, D, R>,
) -> Result<Tensor<S, E, D, T>, D::Err>
where
    S: Shape,
    E: Float,
    D: Device<E> + AddReluKernel<E>,
    T: Tape<E, D> + Merge<R>,
    R: Tape<E, D>,
{
    assert_eq!(
        a.shape().concrete(),
        b.shape().concrete(),
        "add_relu: shapes differ"
    );
    let (a, b) = (a.try_contiguous()?, b.try_contiguous()?);
    let (a, tape_a) = a.split_tape();
    let (b, tape_b) = b.split_tape();
    let mut tape = tape_a.merge(tape_b);
    let dev = a.device().clone();
    let shape = *a.shape();
    let traced = T::OWNS_TAPE || R::OWNS_TAPE;
    // Nothing to add (an empty batch): no kernel runs.
    let (out, saved) = match shape.num_elements() {
        0 => (dev.try_zeros_like(&shape)?, None),
        _ => {
            let (out, saved) = dev.add_relu_forward(&a, &b, shape, traced)?;
            (out, Some(saved))
        }
    };
    if traced {
        let (a_g, b_g, out_g) = (a.ghost(), b.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gout = take_grad!(grads, &out_g, &dev, E);
            // One input at a time, each buffer given back before the next is taken: `a` and
            // `b` may be one tensor (`sum { identity, identity }`), whose gradient then gets
            // both halves.
            for ghost in [&a_g, &b_g] {
                let mut d = take_grad!(grads, ghost, &dev, E);
                if let Some(saved) = &saved {
                    dev.add_relu_backward(saved, &gout, &mut d)?;
                }
                put_grad!(grads, ghost, d);
            }
            put_grad!(grads, &out_g, gout);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
