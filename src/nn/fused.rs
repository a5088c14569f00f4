use super::conv2d::{conv_impl, conv_ty};
use super::{AvgPool2D, BatchNorm, Conv2D, MaxPool2D};
use crate::ops::{Activation, Pool2DGeometry, try_conv2d};
use crate::{ConvDevice, Float};
use dfdx::nn::Module;
use dfdx::nn::modules::{ReLU, Sigmoid, Tanh};
use dfdx::shapes::{Axes3, Const, ConstDim, Dim, HasShape, Rank1, Rank4};
use dfdx::tensor::{Tape, Tensor};
use dfdx::tensor_ops::{BroadcastTo, TryAdd, TryMul, TrySub};
use std::marker::PhantomData;

/// A [`Conv2D`](super::Conv2D) followed by an activation and a pooling window, run as one op:
/// the result equals the three layers one after another, but the full-size activation never
/// goes to memory and back between them. Made by `conv.fused(act, pool)`; the `cnn!` macro
/// uses it for every `conv2d [relu|sigmoid|tanh] [max_pool2d|avg_pool2d]` run.
///
/// # Shapes
/// `(IN, H, W) -> (OUT, POH, POW)`, `(B, IN, H, W) -> (B, OUT, POH, POW)`, where `POH`/`POW`
/// are the pool's output (the conv's `OH`/`OW` without a pool).
#[derive(Debug)]
pub struct Fused<'a, C, A, P> {
    conv: &'a C,
    // The activation and the pool are zero-sized; only their types matter.
    marker: PhantomData<fn() -> (A, P)>,
    input_grad: bool,
}

impl<'a, C, A, P> Fused<'a, C, A, P> {
    pub(crate) fn new(conv: &'a C, _act: A, _pool: P) -> Self {
        Fused {
            conv,
            marker: PhantomData,
            input_grad: true,
        }
    }

    /// Skips the gradient with respect to this op's input. For a first layer whose input is
    /// data (images whose gradient nobody reads), not computing it saves about a fifth of a
    /// LeNet training step; `cnn!` does this for a network declared `#[cnn(input_grad =
    /// false)]`. Nothing is written for the input in the gradient store, so any layer before
    /// this one gets no gradient: never use it where the input comes from trainable layers.
    pub fn without_input_grad(mut self) -> Self {
        self.input_grad = false;
        self
    }
}

/// An activation that [`Fused`] can apply: `()` (none), dfdx's `ReLU`, `Sigmoid` or `Tanh`.
pub trait FusedActivation: Copy {
    /// Which one.
    const ACTIVATION: Activation;
}
impl FusedActivation for () {
    const ACTIVATION: Activation = Activation::Identity;
}
impl FusedActivation for ReLU {
    const ACTIVATION: Activation = Activation::Relu;
}
impl FusedActivation for Sigmoid {
    const ACTIVATION: Activation = Activation::Sigmoid;
}
impl FusedActivation for Tanh {
    const ACTIVATION: Activation = Activation::Tanh;
}

/// A pooling window that [`Fused`] can apply to an `H x W` conv output: `()` (none),
/// [`MaxPool2D`] or [`AvgPool2D`] with input size `H x W` (a pool of another input size does
/// not implement this trait, so a mismatch is a type error).
pub trait FusedPool<const H: usize, const W: usize>: Copy {
    /// Output height.
    type OutH: ConstDim;
    /// Output width.
    type OutW: ConstDim;
    /// The window, or `None` for no pooling.
    const GEOMETRY: Option<Pool2DGeometry>;
}
impl<const H: usize, const W: usize> FusedPool<H, W> for () {
    type OutH = Const<H>;
    type OutW = Const<W>;
    const GEOMETRY: Option<Pool2DGeometry> = None;
}

macro_rules! fused_pool {
    ($name:ident) => {
        impl<
            const KH: usize,
            const KW: usize,
            const H: usize,
            const W: usize,
            const OH: usize,
            const OW: usize,
            const SH: usize,
            const SW: usize,
            const PH: usize,
            const PW: usize,
        > FusedPool<H, W> for $name<KH, KW, H, W, OH, OW, SH, SW, PH, PW>
        {
            type OutH = Const<OH>;
            type OutW = Const<OW>;
            const GEOMETRY: Option<Pool2DGeometry> = {
                let () = Self::SHAPE_CHECK;
                Some(Self::GEOMETRY)
            };
        }
    };
}
fused_pool!(MaxPool2D);
fused_pool!(AvgPool2D);

conv_impl! {
impl<E: Float, D: ConvDevice<E>, T: Tape<E, D>, A: FusedActivation, P: FusedPool<OH, OW>>
    Module<Tensor<(Const<IN>, Const<H>, Const<W>), E, D, T>> for Fused<'_, conv_ty!(E, D), A, P>
{
    type Output = Tensor<(Const<OUT>, P::OutH, P::OutW), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(IN, H, W) -> (OUT, POH, POW)`
    fn try_forward(&self, x: Tensor<(Const<IN>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        let () = <conv_ty!(E, D)>::SHAPE_CHECK;
        let conv = self.conv;
        try_conv2d(x, &conv.weight, conv.bias.as_ref(), <conv_ty!(E, D)>::geometry(1), A::ACTIVATION,
            P::GEOMETRY, Default::default(), self.input_grad)
    }
}
}

conv_impl! {
impl<B: Dim, E: Float, D: ConvDevice<E>, T: Tape<E, D>, A: FusedActivation, P: FusedPool<OH, OW>>
    Module<Tensor<(B, Const<IN>, Const<H>, Const<W>), E, D, T>> for Fused<'_, conv_ty!(E, D), A, P>
{
    type Output = Tensor<(B, Const<OUT>, P::OutH, P::OutW), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(B, IN, H, W) -> (B, OUT, POH, POW)`
    fn try_forward(&self, x: Tensor<(B, Const<IN>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        let () = <conv_ty!(E, D)>::SHAPE_CHECK;
        let b = x.shape().0;
        let conv = self.conv;
        let out = (b, Const, Default::default(), Default::default());
        try_conv2d(x, &conv.weight, conv.bias.as_ref(), <conv_ty!(E, D)>::geometry(b.size()), A::ACTIVATION,
            P::GEOMETRY, out, self.input_grad)
    }
}
}

/// A [`Fused`] convolution with an inference-mode [`BatchNorm`](super::BatchNorm) folded into
/// it: `act(bn(conv(x)))` (then the pool) as one convolution whose weight is scaled per output
/// channel by `a = scale / sqrt(running_var + epsilon)` and whose bias is
/// `(bias - running_mean) * a + bn.bias`. The batch norm costs no pass over the activation at
/// all. Made by `conv.fused(act, pool).folding(&bn)`; `cnn!` uses it for every `conv2d
/// batch_norm2d [relu|sigmoid|tanh] [pool]` run in `forward` (inference). Training
/// (`forward_mut`) needs the batch's statistics, so there the three run as layers.
///
/// # Shapes
/// As [`Fused`]; the input is untraced (inference).
#[derive(Debug)]
pub struct FusedBatchNorm<'a, C, N, A, P> {
    fused: Fused<'a, C, A, P>,
    bn: &'a N,
}

impl<'a, C, A, P> Fused<'a, C, A, P> {
    /// Folds `bn` (in inference mode: its running statistics) into this convolution.
    pub fn folding<N>(self, bn: &'a N) -> FusedBatchNorm<'a, C, N, A, P> {
        FusedBatchNorm { fused: self, bn }
    }
}

conv_impl! {
impl<E: Float, D: ConvDevice<E>> Conv2D<IN, OUT, KH, KW, H, W, OH, OW, SH, SW, PH, PW, DH, DW, GROUPS, IN_PER_GROUP, BIAS, PH_END, PW_END, E, D> {
    /// The weight and bias of this convolution with `bn` (inference) folded in.
    #[allow(clippy::type_complexity)]
    fn fold(
        &self,
        bn: &BatchNorm<OUT, E, D>,
    ) -> Result<(Tensor<Rank4<OUT, IN_PER_GROUP, KH, KW>, E, D>, Tensor<Rank1<OUT>, E, D>), D::Err> {
        let a = bn.running_var.clone().try_add(E::from_f64(bn.epsilon).unwrap())?
            .try_sqrt()?
            .try_recip()?
            .try_mul(bn.weight.clone())?;
        let weight = self.weight.clone().try_mul(a.clone().try_broadcast::<_, Axes3<1, 2, 3>>()?)?;
        let centred = match &self.bias {
            Some(b) => b.clone().try_sub(bn.running_mean.clone())?,
            None => bn.running_mean.clone().try_negate()?,
        };
        let bias = centred.try_mul(a)?.try_add(bn.bias.clone())?;
        Ok((weight, bias))
    }
}
}

conv_impl! {
impl<E: Float, D: ConvDevice<E>, A: FusedActivation, P: FusedPool<OH, OW>>
    Module<Tensor<(Const<IN>, Const<H>, Const<W>), E, D>> for FusedBatchNorm<'_, conv_ty!(E, D), BatchNorm<OUT, E, D>, A, P>
{
    type Output = Tensor<(Const<OUT>, P::OutH, P::OutW), E, D>;
    type Error = D::Err;

    /// # Shapes
    /// `(IN, H, W) -> (OUT, POH, POW)`
    fn try_forward(&self, x: Tensor<(Const<IN>, Const<H>, Const<W>), E, D>) -> Result<Self::Output, D::Err> {
        let () = <conv_ty!(E, D)>::SHAPE_CHECK;
        let (weight, bias) = self.fused.conv.fold(self.bn)?;
        try_conv2d(x, &weight, Some(&bias), <conv_ty!(E, D)>::geometry(1), A::ACTIVATION,
            P::GEOMETRY, Default::default(), self.fused.input_grad)
    }
}
}

conv_impl! {
impl<B: Dim, E: Float, D: ConvDevice<E>, A: FusedActivation, P: FusedPool<OH, OW>>
    Module<Tensor<(B, Const<IN>, Const<H>, Const<W>), E, D>> for FusedBatchNorm<'_, conv_ty!(E, D), BatchNorm<OUT, E, D>, A, P>
{
    type Output = Tensor<(B, Const<OUT>, P::OutH, P::OutW), E, D>;
    type Error = D::Err;

    /// # Shapes
    /// `(B, IN, H, W) -> (B, OUT, POH, POW)`
    fn try_forward(&self, x: Tensor<(B, Const<IN>, Const<H>, Const<W>), E, D>) -> Result<Self::Output, D::Err> {
        let () = <conv_ty!(E, D)>::SHAPE_CHECK;
        let b = x.shape().0;
        let (weight, bias) = self.fused.conv.fold(self.bn)?;
        let out = (b, Const, Default::default(), Default::default());
        try_conv2d(x, &weight, Some(&bias), <conv_ty!(E, D)>::geometry(b.size()), A::ACTIVATION,
            P::GEOMETRY, out, self.fused.input_grad)
    }
}
}
