//! What the `cnn!` macro's constructs run on: channel concatenation (`concat`), per-channel
//! scaling (`scale`), and the layers dfdx 0.13 lacks (`adaptive_avg_pool2d`, `relu6`, `silu`).
//!
//! `residual` and `sum` need nothing of their own: branches other than the first run on a copy
//! of the input with an empty tape (`with_empty_tape`), and dfdx's `try_add` merges the tapes, as
//! dfdx's own `Residual` does, so the gradient reaches the input through every branch.
//!
//! Channel concatenation is dfdx's `concat_along`, which is stable where the concatenated axis
//! is a run-time `usize`: each part's channel axis is made a `usize` ([`channels_to_usize`], no
//! copy), the parts are joined, and the result is given its compile-time channel count back
//! ([`try_concat`]). dfdx has it on `Cpu` and `Cuda`, forward and backward.

use crate::Float;
use dfdx::nn::{Module, NonMutableModule, ZeroSizedModule};
use dfdx::shapes::{Axes2, Axis, Const, Dim, HasShape, Shape};
use dfdx::tensor::{Tape, Tensor, WithEmptyTape};
use dfdx::tensor_ops::{
    BroadcastTo, Device, RealizeTo, ReshapeTo, TryConcatAlong, TryMatMul, TryMul,
};

/// The shapes the constructs work on: one image `(C, H, W)`, one vector `(N,)`, or a batch of
/// either. The channel (or feature) axis is the first after the batch axis.
pub trait ChannelShape: Shape {
    /// This shape with its channel count a run-time `usize`.
    type Usize: Shape<Concrete = Self::Concrete>;
    /// This shape with `N` channels.
    type WithChannels<const N: usize>: Shape<Concrete = Self::Concrete>;
    /// One value per channel (per image): `(C,)` or `(B, C)`.
    type Gate: Shape;

    /// `a` and `b` joined along the channel axis.
    fn try_cat<E: Float, D: Device<E>, T: Tape<E, D>>(
        a: Tensor<Self::Usize, E, D, T>,
        b: Tensor<Self::Usize, E, D, T>,
    ) -> Result<Tensor<Self::Usize, E, D, T>, D::Err>;

    /// `x * gate`, the gate broadcast over every other axis.
    fn try_scale<E: Float, D: Device<E>, T: Tape<E, D>>(
        x: Tensor<Self, E, D, T>,
        gate: Tensor<Self::Gate, E, D, T>,
    ) -> Result<Tensor<Self, E, D, T>, D::Err>;
}

impl<const C: usize, const H: usize, const W: usize> ChannelShape
    for (Const<C>, Const<H>, Const<W>)
{
    type Usize = (usize, Const<H>, Const<W>);
    type WithChannels<const N: usize> = (Const<N>, Const<H>, Const<W>);
    type Gate = (Const<C>,);

    fn try_cat<E: Float, D: Device<E>, T: Tape<E, D>>(
        a: Tensor<Self::Usize, E, D, T>,
        b: Tensor<Self::Usize, E, D, T>,
    ) -> Result<Tensor<Self::Usize, E, D, T>, D::Err> {
        (a, b).try_concat_along(Axis::<0>)
    }

    fn try_scale<E: Float, D: Device<E>, T: Tape<E, D>>(
        x: Tensor<Self, E, D, T>,
        gate: Tensor<Self::Gate, E, D, T>,
    ) -> Result<Tensor<Self, E, D, T>, D::Err> {
        let gate = gate.try_broadcast::<Self, Axes2<1, 2>>()?;
        x.try_mul(gate)
    }
}

impl<B: Dim, const C: usize, const H: usize, const W: usize> ChannelShape
    for (B, Const<C>, Const<H>, Const<W>)
{
    type Usize = (B, usize, Const<H>, Const<W>);
    type WithChannels<const N: usize> = (B, Const<N>, Const<H>, Const<W>);
    type Gate = (B, Const<C>);

    fn try_cat<E: Float, D: Device<E>, T: Tape<E, D>>(
        a: Tensor<Self::Usize, E, D, T>,
        b: Tensor<Self::Usize, E, D, T>,
    ) -> Result<Tensor<Self::Usize, E, D, T>, D::Err> {
        (a, b).try_concat_along(Axis::<1>)
    }

    fn try_scale<E: Float, D: Device<E>, T: Tape<E, D>>(
        x: Tensor<Self, E, D, T>,
        gate: Tensor<Self::Gate, E, D, T>,
    ) -> Result<Tensor<Self, E, D, T>, D::Err> {
        let shape = *x.shape();
        let gate = gate.try_broadcast_like::<_, Axes2<2, 3>>(&shape)?;
        x.try_mul(gate)
    }
}

impl<const N: usize> ChannelShape for (Const<N>,) {
    type Usize = (usize,);
    type WithChannels<const M: usize> = (Const<M>,);
    type Gate = (Const<N>,);

    fn try_cat<E: Float, D: Device<E>, T: Tape<E, D>>(
        a: Tensor<Self::Usize, E, D, T>,
        b: Tensor<Self::Usize, E, D, T>,
    ) -> Result<Tensor<Self::Usize, E, D, T>, D::Err> {
        (a, b).try_concat_along(Axis::<0>)
    }

    fn try_scale<E: Float, D: Device<E>, T: Tape<E, D>>(
        x: Tensor<Self, E, D, T>,
        gate: Tensor<Self::Gate, E, D, T>,
    ) -> Result<Tensor<Self, E, D, T>, D::Err> {
        x.try_mul(gate)
    }
}

impl<B: Dim, const N: usize> ChannelShape for (B, Const<N>) {
    type Usize = (B, usize);
    type WithChannels<const M: usize> = (B, Const<M>);
    type Gate = (B, Const<N>);

    fn try_cat<E: Float, D: Device<E>, T: Tape<E, D>>(
        a: Tensor<Self::Usize, E, D, T>,
        b: Tensor<Self::Usize, E, D, T>,
    ) -> Result<Tensor<Self::Usize, E, D, T>, D::Err> {
        (a, b).try_concat_along(Axis::<1>)
    }

    fn try_scale<E: Float, D: Device<E>, T: Tape<E, D>>(
        x: Tensor<Self, E, D, T>,
        gate: Tensor<Self::Gate, E, D, T>,
    ) -> Result<Tensor<Self, E, D, T>, D::Err> {
        x.try_mul(gate)
    }
}

/// `t` with its channel count a run-time `usize`: the same tensor (no copy), ready for
/// [`try_concat`].
pub fn channels_to_usize<S: ChannelShape, E: Float, D: Device<E>, T: Tape<E, D>>(
    t: Tensor<S, E, D, T>,
) -> Tensor<S::Usize, E, D, T> {
    match t.try_realize::<S::Usize>() {
        Ok(t) => t,
        Err(_) => unreachable!("a shape realizes with one axis made `usize`"),
    }
}

/// Stacks `first` and `rest` along the channel (or feature) axis: PyTorch's
/// `torch.cat(parts, dim=1)` for batches. `C` is the channel count of the result.
///
/// # Shapes
/// `(B, C0, H, W)`, `(B, Ci, H, W)`... -> `(B, C, H, W)` with `C = C0 + ΣCi`; `(C0, H, W)`... ->
/// `(C, H, W)`; vectors likewise.
///
/// # Panics
/// If the parts' channels do not add up to `C`, or their other axes differ (`cnn!` checks
/// both at expansion time).
pub fn try_concat<const C: usize, S, E, D, T, I>(
    first: Tensor<S, E, D, T>,
    rest: I,
) -> Result<Tensor<S::WithChannels<C>, E, D, T>, D::Err>
where
    S: ChannelShape,
    E: Float,
    D: Device<E>,
    T: Tape<E, D>,
    I: IntoIterator<Item = Tensor<S::Usize, E, D, T>>,
{
    let mut joined = channels_to_usize(first);
    for part in rest {
        joined = S::try_cat(joined, part)?;
    }
    match joined.try_realize::<S::WithChannels<C>>() {
        Ok(joined) => Ok(joined),
        Err(joined) => panic!(
            "try_concat: the parts give shape {:?}, not {C} channels",
            joined.shape().concrete()
        ),
    }
}

/// `x * gate`: each channel of `x` scaled by its value in `gate`, broadcast over the image
/// (squeeze-and-excitation's last step).
///
/// # Shapes
/// `(B, C, H, W) * (B, C) -> (B, C, H, W)`; `(C, H, W) * (C,)`; `(B, N) * (B, N)`; `(N,) * (N,)`.
pub fn try_scale<S: ChannelShape, E: Float, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    gate: Tensor<S::Gate, E, D, T>,
) -> Result<Tensor<S, E, D, T>, D::Err> {
    S::try_scale(x, gate)
}

/// `min(max(x, 0), 6)`: PyTorch's `nn.ReLU6` (MobileNet's activation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReLU6;

/// `x * sigmoid(x)`: PyTorch's `nn.SiLU` (swish).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiLU;

impl ZeroSizedModule for ReLU6 {}
impl NonMutableModule for ReLU6 {}
impl ZeroSizedModule for SiLU {}
impl NonMutableModule for SiLU {}

impl<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for ReLU6 {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        x.try_clamp(0.0, 6.0)
    }
}

impl<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for SiLU {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        // The sigmoid runs on a copy with an empty tape; the product merges the tapes, so the
        // gradient is `sigmoid(x) + x * sigmoid'(x)`.
        let gate = x.with_empty_tape().try_sigmoid()?;
        x.try_mul(gate)
    }
}

/// PyTorch's `nn.AdaptiveAvgPool2d((OH, OW))`: output cell `(i, j)` is the mean of input rows
/// `floor(i*H/OH) .. ceil((i+1)*H/OH)` and the columns likewise.
///
/// When `OH` divides `H` and `OW` divides `W` the windows tile the image and this is average
/// pooling with kernel and stride `(H/OH, W/OW)` (the crate's pooling op); otherwise windows
/// overlap or differ in size, and it runs as a product with the `(H*W, OH*OW)` matrix of
/// window weights.
///
/// # Generics
/// - `H`, `W`: the input's height and width
/// - `OH`, `OW`: the output's, at most `H` and `W`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdaptiveAvgPool2D<const H: usize, const W: usize, const OH: usize, const OW: usize>;

impl<const H: usize, const W: usize, const OH: usize, const OW: usize> ZeroSizedModule
    for AdaptiveAvgPool2D<H, W, OH, OW>
{
}
impl<const H: usize, const W: usize, const OH: usize, const OW: usize> NonMutableModule
    for AdaptiveAvgPool2D<H, W, OH, OW>
{
}

impl<const H: usize, const W: usize, const OH: usize, const OW: usize>
    AdaptiveAvgPool2D<H, W, OH, OW>
{
    /// Fails to compile (when used) if the output is empty or larger than the input.
    pub const SHAPE_CHECK: () = assert!(
        OH > 0 && OW > 0 && OH <= H && OW <= W,
        "AdaptiveAvgPool2D: the output must be at least 1x1 and at most the input"
    );

    /// The window of output cell `i` of `o` along an axis of length `n`.
    fn window(i: usize, n: usize, o: usize) -> std::ops::Range<usize> {
        i * n / o..((i + 1) * n).div_ceil(o)
    }

    /// The `(H*W, OH*OW)` matrix whose column `(i, j)` averages that cell's window.
    fn weights<E: Float>() -> Vec<E> {
        let mut m = vec![E::zero(); H * W * OH * OW];
        for i in 0..OH {
            for j in 0..OW {
                let (rows, cols) = (Self::window(i, H, OH), Self::window(j, W, OW));
                let share = E::one() / E::from_usize(rows.len() * cols.len()).unwrap();
                for y in rows {
                    for x in cols.clone() {
                        m[(y * W + x) * OH * OW + i * OW + j] = share;
                    }
                }
            }
        }
        m
    }

    fn try_pool<S: Shape, So: Shape, E: Float, D: crate::ConvDevice<E>, T: Tape<E, D>>(
        x: Tensor<S, E, D, T>,
        out_shape: So,
    ) -> Result<Tensor<So, E, D, T>, D::Err> {
        let () = Self::SHAPE_CHECK;
        if H % OH == 0 && W % OW == 0 {
            let geometry = crate::ops::Pool2DGeometry {
                kind: crate::ops::PoolKind::Avg,
                input: (H, W),
                output: (OH, OW),
                kernel: (H / OH, W / OW),
                stride: (H / OH, W / OW),
                padding: (0, 0),
            };
            return crate::ops::try_pool2d(x, geometry, out_shape);
        }
        let planes = x.shape().num_elements() / (H * W);
        let dev = x.device().clone();
        let m = dev.try_tensor_from_vec(Self::weights::<E>(), (H * W, OH * OW))?;
        let x = x.try_reshape_like(&(planes, H * W))?;
        x.try_matmul(m)?.try_reshape_like(&out_shape)
    }
}

impl<
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
    E: Float,
    D: crate::ConvDevice<E>,
    T: Tape<E, D>,
> Module<Tensor<(Const<C>, Const<H>, Const<W>), E, D, T>> for AdaptiveAvgPool2D<H, W, OH, OW>
{
    type Output = Tensor<(Const<C>, Const<OH>, Const<OW>), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(C, H, W) -> (C, OH, OW)`
    fn try_forward(
        &self,
        x: Tensor<(Const<C>, Const<H>, Const<W>), E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        Self::try_pool(x, (Const, Const, Const))
    }
}

impl<
    B: Dim,
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
    E: Float,
    D: crate::ConvDevice<E>,
    T: Tape<E, D>,
> Module<Tensor<(B, Const<C>, Const<H>, Const<W>), E, D, T>> for AdaptiveAvgPool2D<H, W, OH, OW>
{
    type Output = Tensor<(B, Const<C>, Const<OH>, Const<OW>), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(B, C, H, W) -> (B, C, OH, OW)`
    fn try_forward(
        &self,
        x: Tensor<(B, Const<C>, Const<H>, Const<W>), E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        let b = x.shape().0;
        Self::try_pool(x, (b, Const, Const, Const))
    }
}
