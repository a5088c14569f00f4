//! 2-D convolution (cross-correlation, as PyTorch's `conv2d`), optionally fused with a bias,
//! an activation and a pooling window, forward and backward on dfdx's tape.
//!
//! The fused form exists for speed: a LeNet block `conv -> sigmoid -> avg_pool` done in one
//! pass never writes the full-size activation to memory and back between separate ops. The
//! `cnn!` macro chooses it for every `conv2d [activation] [pool]` run it sees.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
mod cuda_kernel;
mod direct;
mod one_channel;
mod winograd;

use crate::ops::{Pool2DGeometry, put_grad, take_grad};
use crate::{ConvDevice, Float};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{PutTape, SplitTape, Storage, Tape, Tensor};
use dfdx::tensor_ops::ReshapeTo;

/// The activation applied inside a fused convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// None: the convolution's output as it is.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

/// Everything a 2-D convolution's kernels need to know, as run-time numbers.
///
/// `padding` is the top/left padding; the bottom/right padding is implied by `output` (reads
/// past the input are zeros), which is how `padding = same` with an odd total is expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2DGeometry {
    /// Images in the batch (1 for a single `(C, H, W)` image).
    pub batch: usize,
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels `O`.
    pub out_channels: usize,
    /// Groups `G`: `C` and `O` are both split into `G` independent parts.
    pub groups: usize,
    /// Input `(H, W)`.
    pub input: (usize, usize),
    /// Output `(OH, OW)`, before any fused pooling.
    pub output: (usize, usize),
    /// Kernel `(KH, KW)`.
    pub kernel: (usize, usize),
    /// Stride `(SH, SW)`.
    pub stride: (usize, usize),
    /// Top and left padding `(PH, PW)`.
    pub padding: (usize, usize),
    /// Dilation `(DH, DW)`.
    pub dilation: (usize, usize),
}

impl Conv2DGeometry {
    /// Checks the numbers against each other; the layers guarantee this at compile time, the
    /// op checks it again for direct callers.
    fn validate(&self) {
        let ok = self.groups > 0
            && self.in_channels % self.groups == 0
            && self.out_channels % self.groups == 0
            && self.kernel.0 > 0
            && self.kernel.1 > 0
            && self.stride.0 > 0
            && self.stride.1 > 0
            && self.dilation.0 > 0
            && self.dilation.1 > 0
            && self.output.0 > 0
            && self.output.1 > 0
            // the last window must start inside the top/left-padded input
            && (self.output.0 - 1) * self.stride.0 < self.input.0 + self.padding.0
            && (self.output.1 - 1) * self.stride.1 < self.input.1 + self.padding.1;
        assert!(ok, "inconsistent conv2d geometry: {self:?}");
    }
}

/// One fused convolution: the geometry and what follows it inside the op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2DOp {
    /// The convolution itself.
    pub geom: Conv2DGeometry,
    /// The activation applied to `conv + bias`.
    pub act: Activation,
    /// A pooling window applied after the activation, if any.
    pub pool: Option<Pool2DGeometry>,
    /// Whether backward computes the input's gradient.
    pub input_grad: bool,
}

/// A device's kernels for [`try_conv2d`].
///
/// Layouts (row-major): `x` (B, C, H, W); `w` (O, C/G, KH, KW); `b` (O); the output
/// (B, O, POH, POW). The op never calls them with an empty batch (B = 0): it makes the empty
/// output itself, so no kernel is launched on nothing.
pub trait Conv2DKernel<E: Float>: Storage<E> {
    /// What the backward pass keeps of the forward pass (copies of the operands, the
    /// activation's output, the maxima's positions...).
    type Conv2DSaved: 'static;

    /// Computes `pool(act(conv(x, w) + b))` as a tensor of shape `out_shape`. When `save` is
    /// false no backward pass will run, and the saved state may be empty.
    #[allow(clippy::type_complexity)]
    fn conv2d_forward<Sx: Shape, Sw: Shape, Sb: Shape, So: Shape>(
        &self,
        op: &Conv2DOp,
        x: &Tensor<Sx, E, Self>,
        w: &Tensor<Sw, E, Self>,
        b: Option<&Tensor<Sb, E, Self>>,
        out_shape: So,
        save: bool,
    ) -> Result<(Tensor<So, E, Self>, Self::Conv2DSaved), Self::Err>;

    /// Adds the gradients for output gradient `gout` into `dx` (given when `op.input_grad`),
    /// `dw` and `db` (given when the op has a bias).
    fn conv2d_backward(
        &self,
        op: &Conv2DOp,
        saved: Self::Conv2DSaved,
        gout: &Self::Vec,
        dx: Option<&mut Self::Vec>,
        dw: &mut Self::Vec,
        db: Option<&mut Self::Vec>,
    ) -> Result<(), Self::Err>;
}

/// Convolves `x` with `weight` (PyTorch layout `(O, C/G, KH, KW)`), adds `bias`, applies `act`
/// and then `pool`, returning a tensor of shape `out_shape`.
///
/// `x` is `(C, H, W)` or `(B, C, H, W)` (any shape with `geom`'s number of elements, read
/// row-major); `out_shape` must hold `B * O * POH * POW` elements. Gradients flow to `x` (unless
/// `input_grad` is false: the network's input images never need one, and skipping it saves a
/// fifth of a LeNet training step), `weight` and `bias` when `x` carries a tape.
///
/// An empty batch (`geom.batch` 0) gives an empty output, and zero gradients for `weight` and
/// `bias`, without running a kernel.
///
/// # Panics
/// If the geometry is inconsistent or the shapes' sizes disagree with it.
#[allow(clippy::too_many_arguments)]
pub fn try_conv2d<Sx, Sw, Sb, So, E, D, T>(
    x: Tensor<Sx, E, D, T>,
    weight: &Tensor<Sw, E, D>,
    bias: Option<&Tensor<Sb, E, D>>,
    geom: Conv2DGeometry,
    act: Activation,
    pool: Option<Pool2DGeometry>,
    out_shape: So,
    input_grad: bool,
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
    if let Some(p) = &pool {
        p.validate();
        assert_eq!(
            p.input, geom.output,
            "fused pool's input is not the conv's output"
        );
    }
    let (poh, pow) = pool.map_or(geom.output, |p| p.output);
    let cg = geom.in_channels / geom.groups;
    assert_eq!(
        x.shape().num_elements(),
        geom.batch * geom.in_channels * geom.input.0 * geom.input.1
    );
    assert_eq!(
        weight.shape().num_elements(),
        geom.out_channels * cg * geom.kernel.0 * geom.kernel.1
    );
    assert_eq!(
        out_shape.num_elements(),
        geom.batch * geom.out_channels * poh * pow
    );
    if let Some(b) = bias {
        assert_eq!(b.shape().num_elements(), geom.out_channels);
    }

    let op = Conv2DOp {
        geom,
        act,
        pool,
        input_grad,
    };
    // The kernels read row-major data; a permuted or broadcast view is copied first.
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let dev = x.device().clone();
    // An empty batch: nothing to compute. No kernel runs (on CUDA a launch or an allocation of
    // size 0 is an error; the CPU kernels split the work by image), and backward only makes
    // sure the gradients exist, as zeros.
    let (out, saved) = match geom.batch {
        0 => (dev.try_zeros_like(&out_shape)?, None),
        _ => {
            let (out, saved) =
                dev.conv2d_forward(&op, &x, weight, bias, out_shape, T::OWNS_TAPE)?;
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
            let mut dx = match input_grad {
                true => Some(take_grad!(grads, &x_g, &dev, E)),
                false => None,
            };
            let mut dw = take_grad!(grads, &w_g, &dev, E);
            let mut db = match &b_g {
                Some(b_g) => Some(take_grad!(grads, b_g, &dev, E)),
                None => None,
            };
            if let Some(saved) = saved {
                dev.conv2d_backward(&op, saved, &gout, dx.as_mut(), &mut dw, db.as_mut())?;
            }
            put_grad!(grads, &out_g, gout);
            if let Some(dx) = dx {
                put_grad!(grads, &x_g, dx);
            }
            put_grad!(grads, &w_g, dw);
            if let (Some(b_g), Some(db)) = (&b_g, db) {
                put_grad!(grads, b_g, db);
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
