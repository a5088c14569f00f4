//! 2-D transposed convolution, PyTorch's `conv_transpose2d`, forward and backward on dfdx's tape.
//!
//! A transposed convolution is the adjoint of a convolution: its forward pass is a conv's input
//! gradient, its input gradient is a conv's forward pass, and its weight gradient is the same
//! conv's weight gradient with the roles of input and output swapped. So it is built from the
//! conv kernels (`conv2d/cpu_kernel.rs`) run on the *adjoint* geometry, the conv that maps this
//! op's output back to its input. PyTorch's weight layout `(IN, OUT / G, KH, KW)` is exactly that
//! conv's `(O, C / G, KH, KW)`.

mod cpu_kernel;
#[cfg(feature = "cuda")]
mod cuda_kernel;

use crate::ops::{Conv2DGeometry, put_grad, take_grad};
use crate::{ConvDevice, Float};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{PutTape, SplitTape, Storage, Tape, Tensor};
use dfdx::tensor_ops::ReshapeTo;

/// Everything a 2-D transposed convolution's kernels need to know, as run-time numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2DGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Groups, dividing both channel counts.
    pub groups: usize,
    /// Input `(H, W)`.
    pub input: (usize, usize),
    /// Output `(OH, OW)`: `(n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1` per axis.
    pub output: (usize, usize),
    /// Kernel `(KH, KW)`.
    pub kernel: (usize, usize),
    /// Stride `(SH, SW)`.
    pub stride: (usize, usize),
    /// Padding `(PH, PW)`, removed from each side of the full output.
    pub padding: (usize, usize),
    /// Extra rows/columns at the bottom/right, `(OPH, OPW)`.
    pub output_padding: (usize, usize),
    /// Dilation `(DH, DW)`.
    pub dilation: (usize, usize),
}

impl ConvTranspose2DGeometry {
    /// The convolution this op is the transpose of: it maps our output back to our input.
    pub fn adjoint(&self) -> Conv2DGeometry {
        Conv2DGeometry {
            batch: self.batch,
            in_channels: self.out_channels,
            out_channels: self.in_channels,
            groups: self.groups,
            input: self.output,
            output: self.input,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }

    fn validate(&self) {
        let axis = |i: usize, k: usize, s: usize, p: usize, op: usize, d: usize| {
            crate::shape::conv_transpose_out(i, k, s, p, op, d)
        };
        let expect = (
            axis(
                self.input.0,
                self.kernel.0,
                self.stride.0,
                self.padding.0,
                self.output_padding.0,
                self.dilation.0,
            ),
            axis(
                self.input.1,
                self.kernel.1,
                self.stride.1,
                self.padding.1,
                self.output_padding.1,
                self.dilation.1,
            ),
        );
        // conv_transpose_out is 0 for an impossible axis (zero kernel, stride or dilation,
        // output_padding too large, padding removing everything), so a claimed size of 0 is
        // rejected too.
        assert!(
            expect == self.output
                && expect.0 > 0
                && expect.1 > 0
                && self.groups > 0
                && self.in_channels % self.groups == 0
                && self.out_channels % self.groups == 0,
            "inconsistent conv_transpose2d geometry: {self:?} (output should be {expect:?})"
        );
    }
}

/// A device's kernels for [`try_conv_transpose2d`]. Layouts: `x` (B, IN, H, W), `w`
/// (IN, OUT/G, KH, KW), `b` (OUT), the output (B, OUT, OH, OW). Never called with an empty
/// batch (B = 0): the op makes the empty output itself.
pub trait ConvTranspose2DKernel<E: Float>: Storage<E> {
    /// What the backward pass keeps of the forward pass.
    type ConvTranspose2DSaved: 'static;

    /// Computes the transposed convolution plus bias as a tensor of shape `out_shape`. When
    /// `save` is false no backward pass will run.
    #[allow(clippy::type_complexity)]
    fn conv_transpose2d_forward<Sx: Shape, Sw: Shape, Sb: Shape, So: Shape>(
        &self,
        geom: &ConvTranspose2DGeometry,
        x: &Tensor<Sx, E, Self>,
        w: &Tensor<Sw, E, Self>,
        b: Option<&Tensor<Sb, E, Self>>,
        out_shape: So,
        save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::ConvTranspose2DSaved), Self::Err>;

    /// Adds the gradients for output gradient `gout` into `dx`, `dw` and `db` (given when the
    /// op has a bias).
    fn conv_transpose2d_backward(
        &self,
        geom: &ConvTranspose2DGeometry,
        saved: Self::ConvTranspose2DSaved,
        gout: &Self::Vec,
        dx: &mut Self::Vec,
        dw: &mut Self::Vec,
        db: Option<&mut Self::Vec>,
    ) -> Result<(), Self::Err>;
}

/// Transposed convolution of `x` (`(B, IN, H, W)` read row-major) with `weight`
/// (`(IN, OUT / G, KH, KW)`) plus `bias` (`(OUT,)`), returning `out_shape`
/// (`B * OUT * OH * OW` elements). Gradients flow to all three when `x` carries a tape. An
/// empty batch gives an empty output and zero gradients, without running a kernel.
///
/// # Panics
/// If the geometry is inconsistent or the shapes' sizes disagree with it.
pub fn try_conv_transpose2d<Sx, Sw, Sb, So, E, D, T>(
    x: Tensor<Sx, E, D, T>,
    weight: &Tensor<Sw, E, D>,
    bias: Option<&Tensor<Sb, E, D>>,
    geom: ConvTranspose2DGeometry,
    out_shape: So,
) -> Result<Tensor<So, E, D, T>, D::Err>
where
    Sx: Shape,
    Sw: Shape,
    Sb: Shape,
    So: Shape,
    E: Float,
    D: ConvDevice<E>,
    T: Tape<E, D>,
{
    geom.validate();
    let ohw = geom.output.0 * geom.output.1;
    assert_eq!(
        x.shape().num_elements(),
        geom.batch * geom.in_channels * geom.input.0 * geom.input.1
    );
    assert_eq!(
        weight.shape().num_elements(),
        geom.in_channels * geom.out_channels / geom.groups * geom.kernel.0 * geom.kernel.1
    );
    assert_eq!(
        out_shape.num_elements(),
        geom.batch * geom.out_channels * ohw
    );
    if let Some(b) = bias {
        assert_eq!(b.shape().num_elements(), geom.out_channels);
    }

    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let dev = x.device().clone();
    // An empty batch: no kernel runs (see `try_conv2d`), the gradients stay zeros.
    let (out, saved) = match geom.batch {
        0 => (dev.try_zeros_like(&out_shape)?, None),
        _ => {
            let (out, saved) =
                dev.conv_transpose2d_forward(&geom, &x, weight, bias, out_shape, T::OWNS_TAPE)?;
            (out, Some(saved))
        }
    };
    if T::OWNS_TAPE {
        let (x_g, w_g, b_g, out_g) = (
            x.ghost(),
            weight.ghost(),
            bias.map(|b| b.ghost()),
            out.ghost(),
        );
        tape.add_backward_op(move |grads| {
            let gout = take_grad!(grads, &out_g, &dev, E);
            let mut dx = take_grad!(grads, &x_g, &dev, E);
            let mut dw = take_grad!(grads, &w_g, &dev, E);
            let mut db = match &b_g {
                Some(b_g) => Some(take_grad!(grads, b_g, &dev, E)),
                None => None,
            };
            if let Some(saved) = saved {
                dev.conv_transpose2d_backward(&geom, saved, &gout, &mut dx, &mut dw, db.as_mut())?;
            }
            put_grad!(grads, &out_g, gout);
            put_grad!(grads, &x_g, dx);
            put_grad!(grads, &w_g, dw);
            if let (Some(b_g), Some(db)) = (&b_g, db) {
                put_grad!(grads, b_g, db);
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
