use super::{OptionalField, pytorch_uniform};
use crate::ops::{ConvTranspose2DGeometry, try_conv_transpose2d};
use crate::{ConvDevice, Float};
use dfdx::nn::{
    BuildModule, BuildOnDevice, Module, ModuleVisitor, NonMutableModule, TensorCollection,
    TensorOptions,
};
use dfdx::shapes::{Const, Dim, Dtype, HasShape, Rank1, Rank4};
use dfdx::tensor::{Cpu, Storage, Tape, Tensor};
use dfdx::tensor_ops::Device;

/// 2-D transposed convolution, PyTorch's `nn.ConvTranspose2d(IN, OUT, kernel_size=(KH, KW),
/// stride=(SH, SW), padding=(PH, PW), output_padding=(OPH, OPW), groups=GROUPS, bias=BIAS,
/// dilation=(DH, DW))`, with its input and output sizes in the type.
///
/// Each input pixel `(iy, ix)` adds `x * kernel` into the output window whose corner is at
/// `(iy*SH - PH, ix*SW - PW)`, kernel taps `DH`/`DW` apart: the transpose (adjoint) of the
/// [`Conv2D`](super::Conv2D) with the same weight, so it upsamples where that conv downsamples.
///
/// Weight and bias are initialised as PyTorch does: uniform in ±1/√fan_in with
/// `fan_in = OUT_PER_GROUP * KH * KW` (PyTorch computes it from `weight.size(1)`).
///
/// One type is both the builder and the built module: `dev.build_module::<ConvTranspose2D<..>,
/// f32>()` returns `ConvTranspose2D<.., f32, D>`.
///
/// # Generics
/// - `IN`, `OUT`: input and output channels
/// - `KH`, `KW`: kernel height and width
/// - `H`, `W`: input height and width
/// - `OH`, `OW`: output height and width, `(H - 1)*SH - 2*PH + DH*(KH-1) + OPH + 1` (checked)
/// - `SH`, `SW`: stride (default 1)
/// - `PH`, `PW`: rows/columns removed from each side of the full output (default 0)
/// - `OPH`, `OPW`: output padding, extra rows/columns at the bottom/right (default 0); smaller
///   than the stride or the dilation, as PyTorch requires (checked)
/// - `DH`, `DW`: dilation (default 1)
/// - `GROUPS`: channel groups, dividing `IN` and `OUT` (default 1)
/// - `OUT_PER_GROUP`: `OUT / GROUPS`, the weight's second dimension (default `OUT`; checked)
/// - `BIAS`: whether the layer has a bias (default true)
///
/// # Shapes
/// `(IN, H, W) -> (OUT, OH, OW)`, `(B, IN, H, W) -> (B, OUT, OH, OW)`
///
/// # Example
/// ```
/// use cnn::prelude::*;
/// let dev = Cpu::default();
/// // DCGAN's upsampling step: kernel 4, stride 2, padding 1 doubles 8x8 to 16x16
/// type Up = ConvTranspose2D<16, 8, 4, 4, 8, 8, 16, 16, 2, 2, 1, 1>;
/// let up = dev.build_module::<Up, f32>();
/// let y: Tensor<Rank4<2, 8, 16, 16>, f32, _> = up.forward(dev.zeros::<Rank4<2, 16, 8, 8>>());
/// ```
#[derive(Clone, Debug)]
pub struct ConvTranspose2D<
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
    const OPH: usize = 0,
    const OPW: usize = 0,
    const DH: usize = 1,
    const DW: usize = 1,
    const GROUPS: usize = 1,
    const OUT_PER_GROUP: usize = OUT,
    const BIAS: bool = true,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// `(IN, OUT / GROUPS, KH, KW)`, PyTorch's layout (input channels first, unlike Conv2D).
    pub weight: Tensor<Rank4<IN, OUT_PER_GROUP, KH, KW>, E, D>,
    /// `(OUT,)`, or `None` when `BIAS` is false.
    pub bias: Option<Tensor<Rank1<OUT>, E, D>>,
}

/// Repeats the const parameter list of [`ConvTranspose2D`] in an impl header.
macro_rules! convt_impl {
    (impl<$($extra:ident : $bound:path),*> $($rest:tt)*) => {
        impl<
            const IN: usize, const OUT: usize, const KH: usize, const KW: usize,
            const H: usize, const W: usize, const OH: usize, const OW: usize,
            const SH: usize, const SW: usize, const PH: usize, const PW: usize,
            const OPH: usize, const OPW: usize, const DH: usize, const DW: usize,
            const GROUPS: usize, const OUT_PER_GROUP: usize, const BIAS: bool,
            $($extra: $bound),*
        > $($rest)*
    };
}

/// The type `ConvTranspose2D<..all const parameters.., E, D>`.
macro_rules! convt_ty {
    ($e:ty, $d:ty) => {
        ConvTranspose2D<IN, OUT, KH, KW, H, W, OH, OW, SH, SW, PH, PW, OPH, OPW, DH, DW, GROUPS, OUT_PER_GROUP, BIAS, $e, $d>
    };
}

convt_impl! {
impl<E: Dtype, D: Storage<E>> convt_ty!(E, D) {
    /// Fails to compile (when used) if the declared sizes disagree with the formula.
    pub const SHAPE_CHECK: () = {
        assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0 && DH > 0 && DW > 0,
            "ConvTranspose2D: kernel, stride and dilation must be at least 1");
        assert!(GROUPS > 0 && IN % GROUPS == 0 && OUT % GROUPS == 0,
            "ConvTranspose2D: GROUPS must divide IN and OUT");
        assert!(OUT_PER_GROUP * GROUPS == OUT, "ConvTranspose2D: OUT_PER_GROUP must be OUT / GROUPS");
        // PyTorch's rule; beyond it the extra rows would lie past every kernel tap.
        assert!((OPH < SH || OPH < DH) && (OPW < SW || OPW < DW),
            "ConvTranspose2D: output padding must be smaller than either stride or dilation (OPH < SH or OPH < DH, OPW < SW or OPW < DW)");
        assert!(OH == crate::shape::conv_transpose_out(H, KH, SH, PH, OPH, DH) && OH > 0,
            "ConvTranspose2D: OH must be (H - 1)*SH - 2*PH + DH*(KH-1) + OPH + 1");
        assert!(OW == crate::shape::conv_transpose_out(W, KW, SW, PW, OPW, DW) && OW > 0,
            "ConvTranspose2D: OW must be (W - 1)*SW - 2*PW + DW*(KW-1) + OPW + 1");
    };

    /// Trainable parameters: `IN * OUT_PER_GROUP * KH * KW` weights plus `OUT` biases.
    pub const PARAMS: usize = IN * OUT_PER_GROUP * KH * KW + if BIAS { OUT } else { 0 };

    /// The run-time description of this layer for a batch of `batch` images.
    pub const fn geometry(batch: usize) -> ConvTranspose2DGeometry {
        ConvTranspose2DGeometry {
            batch,
            in_channels: IN,
            out_channels: OUT,
            groups: GROUPS,
            input: (H, W),
            output: (OH, OW),
            kernel: (KH, KW),
            stride: (SH, SW),
            padding: (PH, PW),
            output_padding: (OPH, OPW),
            dilation: (DH, DW),
        }
    }
}
}

convt_impl! {
impl<E: Float, D: ConvDevice<E>, E0: Dtype, D0: Storage<E0>> BuildOnDevice<D, E> for convt_ty!(E0, D0) {
    type Built = convt_ty!(E, D);
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = Self::SHAPE_CHECK;
        Self::Built::try_build(device)
    }
}
}

convt_impl! {
impl<E: Float, D: ConvDevice<E>> TensorCollection<E, D> for convt_ty!(E, D) {
    type To<E2: Dtype, D2: Device<E2>> = convt_ty!(E2, D2);

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // PyTorch's fan_in is weight.size(1) * KH * KW, and weight.size(1) is OUT / GROUPS
        // here (the transposed layout), not IN / GROUPS as for Conv2D.
        let bias = BIAS.then(|| {
            Self::tensor(
                "bias",
                |s: &Self| s.bias.as_ref().expect("ConvTranspose2D with BIAS = true has a bias"),
                |s: &mut Self| s.bias.as_mut().expect("ConvTranspose2D with BIAS = true has a bias"),
                TensorOptions::reset_with(|t| pytorch_uniform(t, OUT_PER_GROUP * KH * KW)),
            )
        });
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| pytorch_uniform(t, OUT_PER_GROUP * KH * KW)),
                ),
                OptionalField(bias),
            ),
            |(weight, bias)| ConvTranspose2D { weight, bias },
        )
    }
}
}

convt_impl! {
impl<E: Dtype, D: Storage<E>> NonMutableModule for convt_ty!(E, D) {}
}

convt_impl! {
impl<E: Float, D: ConvDevice<E>, T: Tape<E, D>> Module<Tensor<(Const<IN>, Const<H>, Const<W>), E, D, T>> for convt_ty!(E, D) {
    type Output = Tensor<(Const<OUT>, Const<OH>, Const<OW>), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(IN, H, W) -> (OUT, OH, OW)`
    fn try_forward(&self, x: Tensor<(Const<IN>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        let () = Self::SHAPE_CHECK;
        try_conv_transpose2d(x, &self.weight, self.bias.as_ref(), Self::geometry(1), Default::default())
    }
}
}

convt_impl! {
impl<B: Dim, E: Float, D: ConvDevice<E>, T: Tape<E, D>> Module<Tensor<(B, Const<IN>, Const<H>, Const<W>), E, D, T>> for convt_ty!(E, D) {
    type Output = Tensor<(B, Const<OUT>, Const<OH>, Const<OW>), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(B, IN, H, W) -> (B, OUT, OH, OW)`
    fn try_forward(&self, x: Tensor<(B, Const<IN>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        let () = Self::SHAPE_CHECK;
        let b = x.shape().0;
        let out = (b, Const, Const, Const);
        try_conv_transpose2d(x, &self.weight, self.bias.as_ref(), Self::geometry(b.size()), out)
    }
}
}
