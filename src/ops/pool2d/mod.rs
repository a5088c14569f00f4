//! 2-D max and average pooling with PyTorch's semantics (floor mode; max pads with −∞; average
//! counts padded zeros, `count_include_pad = true`), forward and backward on dfdx's tape.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
mod cuda_kernel;

use crate::ops::{put_grad, take_grad};
use crate::{ConvDevice, Float};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{PutTape, SplitTape, Storage, Tape, Tensor};
use dfdx::tensor_ops::ReshapeTo;

/// Which reduction a pooling window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// The window's maximum (padding never wins).
    Max,
    /// The window's mean, padded zeros included.
    Avg,
}

/// A pooling window over one `(H, W)` plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2DGeometry {
    /// Max or average.
    pub kind: PoolKind,
    /// Input `(H, W)`.
    pub input: (usize, usize),
    /// Output `(OH, OW)`.
    pub output: (usize, usize),
    /// Window `(KH, KW)`.
    pub kernel: (usize, usize),
    /// Stride `(SH, SW)`.
    pub stride: (usize, usize),
    /// Padding on each side `(PH, PW)`, at most half the window (as PyTorch requires).
    pub padding: (usize, usize),
}

impl Pool2DGeometry {
    pub(crate) fn validate(&self) {
        let expect = (
            crate::shape::pool_out(self.input.0, self.kernel.0, self.stride.0, self.padding.0),
            crate::shape::pool_out(self.input.1, self.kernel.1, self.stride.1, self.padding.1),
        );
        assert!(
            self.output == expect
                && expect.0 > 0
                && expect.1 > 0
                && 2 * self.padding.0 <= self.kernel.0
                && 2 * self.padding.1 <= self.kernel.1,
            "inconsistent pool2d geometry: {self:?} (output should be {expect:?})"
        );
    }
}

/// A device's kernels for [`try_pool2d`]. Layouts: `x` (planes, H, W), the output
/// (planes, OH, OW). Never called with no planes (an empty batch): the op makes the empty
/// output itself.
pub trait Pool2DKernel<E: Float>: Storage<E> {
    /// What the backward pass keeps of the forward pass.
    type Pool2DSaved: 'static;

    /// Pools every plane of `x` into a tensor of shape `out_shape`. When `save` is false no
    /// backward pass will run.
    #[allow(clippy::type_complexity)]
    fn pool2d_forward<Sx: Shape, So: Shape>(
        &self,
        geom: &Pool2DGeometry,
        x: &Tensor<Sx, E, Self>,
        out_shape: So,
        save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::Pool2DSaved), Self::Err>;

    /// Adds the input gradient for output gradient `gout` into `dx`.
    fn pool2d_backward(
        &self,
        geom: &Pool2DGeometry,
        saved: Self::Pool2DSaved,
        gout: &Self::Vec,
        dx: &mut Self::Vec,
    ) -> Result<(), Self::Err>;
}

/// Pools every `(H, W)` plane of `x` (shape `(C, H, W)`, `(B, C, H, W)`, or anything whose
/// element count is a multiple of `H * W`), returning `out_shape`.
///
/// # Panics
/// If the geometry is inconsistent or the shapes' sizes disagree with it.
pub fn try_pool2d<Sx: Shape, So: Shape, E: Float, D: ConvDevice<E>, T: Tape<E, D>>(
    x: Tensor<Sx, E, D, T>,
    geom: Pool2DGeometry,
    out_shape: So,
) -> Result<Tensor<So, E, D, T>, D::Err> {
    geom.validate();
    let planes = x.shape().num_elements() / (geom.input.0 * geom.input.1);
    assert_eq!(
        planes * geom.input.0 * geom.input.1,
        x.shape().num_elements()
    );
    assert_eq!(
        out_shape.num_elements(),
        planes * geom.output.0 * geom.output.1
    );
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let dev = x.device().clone();
    // No planes (an empty batch): no kernel runs (see `try_conv2d`).
    let (out, saved) = match planes {
        0 => (dev.try_zeros_like(&out_shape)?, None),
        _ => {
            let (out, saved) = dev.pool2d_forward(&geom, &x, out_shape, T::OWNS_TAPE)?;
            (out, Some(saved))
        }
    };
    if T::OWNS_TAPE {
        let (x_g, out_g) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gout = take_grad!(grads, &out_g, &dev, E);
            let mut dx = take_grad!(grads, &x_g, &dev, E);
            if let Some(saved) = saved {
                dev.pool2d_backward(&geom, saved, &gout, &mut dx)?;
            }
            put_grad!(grads, &out_g, gout);
            put_grad!(grads, &x_g, dx);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
