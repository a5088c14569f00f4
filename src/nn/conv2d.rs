use super::{Fused, FusedActivation, FusedPool, OptionalField, pytorch_uniform};
use crate::ops::Conv2DGeometry;
use crate::{ConvDevice, Float};
use dfdx::nn::{
    BuildModule, BuildOnDevice, Module, ModuleVisitor, NonMutableModule, TensorCollection,
    TensorOptions,
};
use dfdx::shapes::{Const, Dim, Dtype, Rank1, Rank4};
use dfdx::tensor::{Cpu, Storage, Tape, Tensor};
use dfdx::tensor_ops::Device;

/// 2-D convolution (cross-correlation), PyTorch's `nn.Conv2d(IN, OUT, kernel_size=(KH, KW),
/// stride=(SH, SW), padding=(PH, PW), dilation=(DH, DW), groups=GROUPS, bias=BIAS)`, with its
/// input and output sizes in the type.
///
/// Weight and bias are initialised as PyTorch does: uniform in ±1/√fan_in with
/// `fan_in = IN_PER_GROUP * KH * KW`.
///
/// One type is both the builder and the built module: `dev.build_module::<Conv2D<..>, f32>()`
/// returns `Conv2D<.., f32, D>`. Writing the 19 numbers by hand is possible (every size is
/// checked); the `cnn!` macro writes them for you.
///
/// # Generics
/// - `IN`, `OUT`: input and output channels
/// - `KH`, `KW`: kernel height and width
/// - `H`, `W`: input height and width
/// - `OH`, `OW`: output height and width, `(H + PH + PH_END - DH*(KH-1) - 1) / SH + 1` (checked)
/// - `SH`, `SW`: stride (default 1)
/// - `PH`, `PW`: top and left zero padding (default 0)
/// - `DH`, `DW`: dilation (default 1)
/// - `GROUPS`: channel groups, dividing `IN` and `OUT` (default 1; `GROUPS = IN` is depthwise)
/// - `IN_PER_GROUP`: `IN / GROUPS`, the weight's second dimension (default `IN`; checked)
/// - `BIAS`: whether the layer has a bias (default true)
/// - `PH_END`, `PW_END`: bottom and right padding (default `PH`, `PW`; they differ only for
///   TensorFlow-style `padding = same` with an odd total)
///
/// # Shapes
/// `(IN, H, W) -> (OUT, OH, OW)`, `(B, IN, H, W) -> (B, OUT, OH, OW)`
///
/// # Example
/// ```
/// use cnn::prelude::*;
/// let dev = Cpu::default();
/// // d2l 6.3: 8x8 input, kernel 3, padding 1, stride 2 -> 4x4
/// type Layer = Conv2D<1, 1, 3, 3, 8, 8, 4, 4, 2, 2, 1, 1>;
/// let conv = dev.build_module::<Layer, f32>();
/// let y: Tensor<Rank3<1, 4, 4>, f32, _> = conv.forward(dev.zeros::<Rank3<1, 8, 8>>());
/// ```
#[derive(Clone, Debug)]
pub struct Conv2D<
    const IN: usize,
    const OUT: usize,
    const KH: usize,
    const KW: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
    const SH: usize = 1,
    const SW: usize = 1,
    const PH: usize = 0,
    const PW: usize = 0,
    const DH: usize = 1,
    const DW: usize = 1,
    const GROUPS: usize = 1,
    const IN_PER_GROUP: usize = IN,
    const BIAS: bool = true,
    const PH_END: usize = PH,
    const PW_END: usize = PW,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// `(OUT, IN / GROUPS, KH, KW)`, PyTorch's layout.
    pub weight: Tensor<Rank4<OUT, IN_PER_GROUP, KH, KW>, E, D>,
    /// `(OUT,)`, or `None` when `BIAS` is false.
    pub bias: Option<Tensor<Rank1<OUT>, E, D>>,
}

/// Repeats the const parameter list of [`Conv2D`] in an impl header.
macro_rules! conv_impl {
    (impl<$($extra:ident : $bound:path),*> $($rest:tt)*) => {
        impl<
            const IN: usize, const OUT: usize, const KH: usize, const KW: usize,
            const H: usize, const W: usize, const OH: usize, const OW: usize,
            const SH: usize, const SW: usize, const PH: usize, const PW: usize,
            const DH: usize, const DW: usize, const GROUPS: usize, const IN_PER_GROUP: usize,
            const BIAS: bool, const PH_END: usize, const PW_END: usize,
            $($extra: $bound),*
        > $($rest)*
    };
}
pub(crate) use conv_impl;

/// The type `Conv2D<..all const parameters.., E, D>`.
macro_rules! conv_ty {
    ($e:ty, $d:ty) => {
        $crate::nn::Conv2D<IN, OUT, KH, KW, H, W, OH, OW, SH, SW, PH, PW, DH, DW, GROUPS, IN_PER_GROUP, BIAS, PH_END, PW_END, $e, $d>
    };
}
pub(crate) use conv_ty;

conv_impl! {
impl<E: Dtype, D: Storage<E>> Conv2D<IN, OUT, KH, KW, H, W, OH, OW, SH, SW, PH, PW, DH, DW, GROUPS, IN_PER_GROUP, BIAS, PH_END, PW_END, E, D> {
    /// Fails to compile (when used) if the declared sizes disagree with the formula.
    pub const SHAPE_CHECK: () = {
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0 && DH > 0 && DW > 0,
            "Conv2D: kernel, stride and dilation must be at least 1");
        assert!(GROUPS > 0 && IN % GROUPS == 0 && OUT % GROUPS == 0,
            "Conv2D: GROUPS must divide IN and OUT");
        assert!(IN_PER_GROUP * GROUPS == IN, "Conv2D: IN_PER_GROUP must be IN / GROUPS");
        assert!(OH == crate::shape::conv_out(H, KH, SH, PH, PH_END, DH) && OH > 0,
            "Conv2D: OH must be (H + PH + PH_END - DH*(KH-1) - 1) / SH + 1");
        assert!(OW == crate::shape::conv_out(W, KW, SW, PW, PW_END, DW) && OW > 0,
            "Conv2D: OW must be (W + PW + PW_END - DW*(KW-1) - 1) / SW + 1");
    };

    /// Trainable parameters: `OUT * IN_PER_GROUP * KH * KW` weights plus `OUT` biases.
    pub const PARAMS: usize = OUT * IN_PER_GROUP * KH * KW + if BIAS { OUT } else { 0 };

    /// The run-time description of this layer for a batch of `batch` images.
    pub const fn geometry(batch: usize) -> Conv2DGeometry {
        Conv2DGeometry {
            batch,
            in_channels: IN,
            out_channels: OUT,
            groups: GROUPS,
            input: (H, W),
            output: (OH, OW),
            kernel: (KH, KW),
            stride: (SH, SW),
            padding: (PH, PW),
            dilation: (DH, DW),
        }
    }

    /// This convolution followed by `act` and `pool` in one pass (see [`Fused`]): the same
    /// result as the three layers one after another, without the full-size activation ever
    /// going to memory and back.
    pub fn fused<A: FusedActivation, P: FusedPool<OH, OW>>(&self, act: A, pool: P) -> Fused<'_, Self, A, P> {
        Fused::new(self, act, pool)
    }
}
}

conv_impl! {
impl<E: Float, D: ConvDevice<E>, E0: Dtype, D0: Storage<E0>> BuildOnDevice<D, E> for conv_ty!(E0, D0) {
    type Built = conv_ty!(E, D);
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = Self::SHAPE_CHECK;
        Self::Built::try_build(device)
    }
}
}

conv_impl! {
impl<E: Float, D: ConvDevice<E>> TensorCollection<E, D> for conv_ty!(E, D) {
    type To<E2: Dtype, D2: Device<E2>> = conv_ty!(E2, D2);

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // PyTorch's default: kaiming_uniform(a = sqrt(5)) for the weight, which is
        // U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
        let bias = BIAS.then(|| {
            Self::tensor(
                "bias",
                |s: &Self| s.bias.as_ref().expect("Conv2D with BIAS = true has a bias"),
                |s: &mut Self| s.bias.as_mut().expect("Conv2D with BIAS = true has a bias"),
                TensorOptions::reset_with(|t| pytorch_uniform(t, IN_PER_GROUP * KH * KW)),
            )
        });
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| pytorch_uniform(t, IN_PER_GROUP * KH * KW)),
                ),
                OptionalField(bias),
            ),
            |(weight, bias)| Conv2D { weight, bias },
        )
    }
}
}

conv_impl! {
impl<E: Dtype, D: Storage<E>> NonMutableModule for conv_ty!(E, D) {}
}

conv_impl! {
impl<E: Float, D: ConvDevice<E>, T: Tape<E, D>> Module<Tensor<(Const<IN>, Const<H>, Const<W>), E, D, T>> for conv_ty!(E, D) {
    type Output = Tensor<(Const<OUT>, Const<OH>, Const<OW>), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(IN, H, W) -> (OUT, OH, OW)`
    fn try_forward(&self, x: Tensor<(Const<IN>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        self.fused((), ()).try_forward(x)
    }
}
}

conv_impl! {
impl<B: Dim, E: Float, D: ConvDevice<E>, T: Tape<E, D>> Module<Tensor<(B, Const<IN>, Const<H>, Const<W>), E, D, T>> for conv_ty!(E, D) {
    type Output = Tensor<(B, Const<OUT>, Const<OH>, Const<OW>), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(B, IN, H, W) -> (B, OUT, OH, OW)`
    fn try_forward(&self, x: Tensor<(B, Const<IN>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        self.fused((), ()).try_forward(x)
    }
}
}
