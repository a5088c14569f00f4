//! 2-D convolution (cross-correlation, as PyTorch's `conv2d`), optionally fused with a bias,
//! an activation and a pooling window, forward and backward on dfdx's tape.
//!
//! The fused form exists for speed: a LeNet block `conv -> sigmoid -> avg_pool` done in one
//! pass never writes the full-size activation to memory and back between separate ops. The
//! `cnn!` macro chooses it for every `conv2d [activation] [pool]` run it sees.

pub(crate) mod cpu_kernel;

use crate::ops::buffer::Buffer;
use crate::ops::{Pool2DGeometry, to_host};
use crate::{ConvDevice, Float};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{PutTape, SplitTape, Tape, Tensor};
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

/// Convolves `x` with `weight` (PyTorch layout `(O, C/G, KH, KW)`), adds `bias`, applies `act`
/// and then `pool`, returning a tensor of shape `out_shape`.
///
/// `x` is `(C, H, W)` or `(B, C, H, W)` (any shape with `geom`'s number of elements, read
/// row-major); `out_shape` must hold `B * O * POH * POW` elements. Gradients flow to `x` (unless
/// `input_grad` is false: the network's input images never need one, and skipping it saves a
/// fifth of a LeNet training step), `weight` and `bias` when `x` carries a tape.
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
    let (oh, ow) = geom.output;
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

    // Our kernels read row-major data; a permuted or broadcast view is copied first.
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let dev = x.device().clone();
    let xh = to_host(&x);
    let wh = to_host(weight);
    let bh = bias.map(to_host);
    // every element is written by the kernel
    let mut out = Buffer::for_overwrite(out_shape.num_elements());
    // What backward needs: with max pooling, where each maximum came from (and the pooled
    // output, the activation's value there); otherwise the activation's output, for its
    // derivative.
    let max_pool = pool.is_some_and(|p| p.kind == super::PoolKind::Max);
    let keep_arg = T::OWNS_TAPE && max_pool;
    let keep_y = T::OWNS_TAPE && !max_pool && act != Activation::Identity;
    let mut y = Buffer::for_overwrite(if keep_y {
        geom.batch * geom.out_channels * oh * ow
    } else {
        0
    });
    let mut arg = Buffer::<u32>::for_overwrite(if keep_arg { out.len() } else { 0 });
    cpu_kernel::forward(
        &geom,
        act,
        pool.as_ref(),
        &xh,
        &wh,
        bh.as_deref(),
        &mut out,
        &mut y,
        &mut arg,
    );
    if keep_arg && act != Activation::Identity {
        y = Buffer::for_overwrite(out.len());
        y.copy_from_slice(&out);
    }
    let n_out = out.len();
    let out = dev.try_tensor_from_vec(out.into_vec(), out_shape)?;

    if T::OWNS_TAPE {
        let (x_g, w_g, b_g, out_g) = (
            x.ghost(),
            weight.ghost(),
            bias.map(|b| b.ghost()),
            out.ghost(),
        );
        tape.add_backward_op(move |grads| {
            let mut gout = Buffer::for_overwrite(n_out);
            dev.read_host(grads.get_or_alloc_mut(&out_g)?, &mut gout)?;
            let mut dw = Buffer::zeroed(wh.len());
            let mut db = Buffer::zeroed(if b_g.is_some() { geom.out_channels } else { 0 });
            let mut run = |dx: &mut [E]| {
                cpu_kernel::backward(
                    &geom,
                    act,
                    pool.as_ref(),
                    &xh,
                    &wh,
                    &y,
                    &arg,
                    &gout,
                    dx,
                    &mut dw,
                    &mut db,
                )
            };
            // The input gradient is accumulated in place; the weight's and bias's are added after.
            if input_grad {
                dev.update_host(grads.get_or_alloc_mut(&x_g)?, run)?;
            } else {
                run(&mut []);
            }
            dev.add_host_into(grads.get_or_alloc_mut(&w_g)?, &dw)?;
            if let Some(b_g) = &b_g {
                dev.add_host_into(grads.get_or_alloc_mut(b_g)?, &db)?;
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
