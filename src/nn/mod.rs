//! Layers whose shapes are const generics, checked by const assertions.
//!
//! Every layer takes one image `(C, H, W)` or a batch `(B, C, H, W)` (`B` a `Const` or a
//! `usize`), with or without a tape, and returns const spatial dimensions. A size that
//! disagrees with the layer's formula is a compile error (`cargo build`; the `cnn!` macro also
//! reports it earlier, at `cargo check`, with the numbers).
//!
//! Parameterised layers implement dfdx's `TensorCollection`, `BuildOnDevice` and `Module`, so
//! `build_module`, the optimizers, `alloc_grads`, `num_trainable_params`, `reset_params`,
//! `to_device` and safetensors save/load work on them unchanged. dfdx's stable layers
//! (`Linear`, activations, `Dropout`, `BatchNorm2D`) are used as they are.

mod avg_pool2d;
mod batch_norm;
mod blocks;
mod conv2d;
mod conv_transpose2d;
mod flatten;
mod fused;
mod max_pool2d;
mod optional_field;

pub use avg_pool2d::AvgPool2D;
pub use batch_norm::{BatchNorm, BatchNorm1D, BatchNorm2D, WithRelu};
pub use blocks::{
    AdaptiveAvgPool2D, ChannelShape, ReLU6, SiLU, channels_to_usize, try_concat, try_scale,
};
pub use conv_transpose2d::ConvTranspose2D;
pub use conv2d::Conv2D;
pub use flatten::Flatten2D;
pub use fused::{Fused, FusedActivation, FusedBatchNorm, FusedPool};
pub use max_pool2d::MaxPool2D;
pub use optional_field::OptionalField;

/// Fills a conv layer's weight or bias as PyTorch does: uniform in ±1/√`fan_in`, the bound
/// that `kaiming_uniform_(a = √5)` works out to for the weight and that PyTorch uses for the bias.
pub(crate) fn pytorch_uniform<S, E, D>(
    t: &mut dfdx::tensor::Tensor<S, E, D>,
    fan_in: usize,
) -> Result<(), D::Err>
where
    S: dfdx::shapes::Shape,
    E: crate::Float,
    D: dfdx::tensor_ops::Device<E>,
{
    let b = E::one() / E::from_usize(fan_in).unwrap().sqrt();
    t.try_fill_with_distr(rand_distr::Uniform::new(-b, b))
}

/// Defines a pooling layer type; max and average pooling differ only in their kind and docs.
macro_rules! pool_layer {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name<
            const KH: usize,
            const KW: usize,
            const H: usize,
            const W: usize,
            const OH: usize,
            const OW: usize,
            const SH: usize = KH,
            const SW: usize = KW,
            const PH: usize = 0,
            const PW: usize = 0,
        >;

        impl<const KH: usize, const KW: usize, const H: usize, const W: usize, const OH: usize, const OW: usize,
             const SH: usize, const SW: usize, const PH: usize, const PW: usize>
            $name<KH, KW, H, W, OH, OW, SH, SW, PH, PW>
        {
            /// Fails to compile (when used) if the declared sizes disagree with the formula.
            pub const SHAPE_CHECK: () = {
                assert!(KH > 0 && KW > 0 && SH > 0 && SW > 0, concat!($label, ": kernel and stride must be at least 1"));
                assert!(2 * PH <= KH && 2 * PW <= KW, concat!($label, ": padding must be at most half the kernel (PH <= KH / 2, PW <= KW / 2)"));
                assert!(OH == $crate::shape::pool_out(H, KH, SH, PH) && OH > 0, concat!($label, ": OH must be (H + 2*PH - KH) / SH + 1"));
                assert!(OW == $crate::shape::pool_out(W, KW, SW, PW) && OW > 0, concat!($label, ": OW must be (W + 2*PW - KW) / SW + 1"));
            };

            /// The run-time description of this window.
            pub const GEOMETRY: $crate::ops::Pool2DGeometry = $crate::ops::Pool2DGeometry {
                kind: $kind,
                input: (H, W),
                output: (OH, OW),
                kernel: (KH, KW),
                stride: (SH, SW),
                padding: (PH, PW),
            };
        }

        impl<const KH: usize, const KW: usize, const H: usize, const W: usize, const OH: usize, const OW: usize,
             const SH: usize, const SW: usize, const PH: usize, const PW: usize>
            dfdx::nn::ZeroSizedModule for $name<KH, KW, H, W, OH, OW, SH, SW, PH, PW> {}
        impl<const KH: usize, const KW: usize, const H: usize, const W: usize, const OH: usize, const OW: usize,
             const SH: usize, const SW: usize, const PH: usize, const PW: usize>
            dfdx::nn::NonMutableModule for $name<KH, KW, H, W, OH, OW, SH, SW, PH, PW> {}

        impl<const KH: usize, const KW: usize, const H: usize, const W: usize, const OH: usize, const OW: usize,
             const SH: usize, const SW: usize, const PH: usize, const PW: usize,
             const C: usize, E: $crate::Float, D: $crate::ConvDevice<E>, T: dfdx::tensor::Tape<E, D>>
            dfdx::nn::Module<dfdx::tensor::Tensor<(dfdx::shapes::Const<C>, dfdx::shapes::Const<H>, dfdx::shapes::Const<W>), E, D, T>>
            for $name<KH, KW, H, W, OH, OW, SH, SW, PH, PW>
        {
            type Output = dfdx::tensor::Tensor<(dfdx::shapes::Const<C>, dfdx::shapes::Const<OH>, dfdx::shapes::Const<OW>), E, D, T>;
            type Error = D::Err;

            /// # Shapes
            /// `(C, H, W) -> (C, OH, OW)`
            fn try_forward(
                &self,
                x: dfdx::tensor::Tensor<(dfdx::shapes::Const<C>, dfdx::shapes::Const<H>, dfdx::shapes::Const<W>), E, D, T>,
            ) -> Result<Self::Output, D::Err> {
                let () = Self::SHAPE_CHECK;
                $crate::ops::try_pool2d(x, Self::GEOMETRY, Default::default())
            }
        }

        impl<const KH: usize, const KW: usize, const H: usize, const W: usize, const OH: usize, const OW: usize,
             const SH: usize, const SW: usize, const PH: usize, const PW: usize,
             B: dfdx::shapes::Dim, const C: usize, E: $crate::Float, D: $crate::ConvDevice<E>, T: dfdx::tensor::Tape<E, D>>
            dfdx::nn::Module<dfdx::tensor::Tensor<(B, dfdx::shapes::Const<C>, dfdx::shapes::Const<H>, dfdx::shapes::Const<W>), E, D, T>>
            for $name<KH, KW, H, W, OH, OW, SH, SW, PH, PW>
        {
            type Output = dfdx::tensor::Tensor<(B, dfdx::shapes::Const<C>, dfdx::shapes::Const<OH>, dfdx::shapes::Const<OW>), E, D, T>;
            type Error = D::Err;

            /// # Shapes
            /// `(B, C, H, W) -> (B, C, OH, OW)`
            fn try_forward(
                &self,
                x: dfdx::tensor::Tensor<(B, dfdx::shapes::Const<C>, dfdx::shapes::Const<H>, dfdx::shapes::Const<W>), E, D, T>,
            ) -> Result<Self::Output, D::Err> {
                let () = Self::SHAPE_CHECK;
                let b = x.shape().0;
                $crate::ops::try_pool2d(x, Self::GEOMETRY, (b, dfdx::shapes::Const, dfdx::shapes::Const, dfdx::shapes::Const))
            }
        }
    };
}
use pool_layer;
