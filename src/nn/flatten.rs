use crate::{ConvDevice, Float};
use dfdx::nn::{Module, NonMutableModule, ZeroSizedModule};
use dfdx::shapes::{Const, Dim, HasShape};
use dfdx::tensor::{Tape, Tensor};
use dfdx::tensor_ops::ReshapeTo;

/// Flattens an image `(C, H, W)` to a vector of `N = C * H * W` features (and a batch
/// `(B, C, H, W)` to `(B, N)`), PyTorch's `nn.Flatten()`.
///
/// `N` is checked against `C * H * W` at compile time. A zero-sized unit struct.
///
/// # Generics
/// - `N`: the number of features, `C * H * W`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flatten2D<const N: usize>;

impl<const N: usize> ZeroSizedModule for Flatten2D<N> {}
impl<const N: usize> NonMutableModule for Flatten2D<N> {}

struct Check<const C: usize, const H: usize, const W: usize, const N: usize>;
impl<const C: usize, const H: usize, const W: usize, const N: usize> Check<C, H, W, N> {
    const OK: () = assert!(C * H * W == N, "Flatten2D: N must be C * H * W");
}

impl<
    const C: usize,
    const H: usize,
    const W: usize,
    const N: usize,
    E: Float,
    D: ConvDevice<E>,
    T: Tape<E, D>,
> Module<Tensor<(Const<C>, Const<H>, Const<W>), E, D, T>> for Flatten2D<N>
{
    type Output = Tensor<(Const<N>,), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(C, H, W) -> (C*H*W,)`
    fn try_forward(
        &self,
        x: Tensor<(Const<C>, Const<H>, Const<W>), E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        let () = Check::<C, H, W, N>::OK;
        x.try_reshape_like(&(Const,))
    }
}

impl<
    B: Dim,
    const C: usize,
    const H: usize,
    const W: usize,
    const N: usize,
    E: Float,
    D: ConvDevice<E>,
    T: Tape<E, D>,
> Module<Tensor<(B, Const<C>, Const<H>, Const<W>), E, D, T>> for Flatten2D<N>
{
    type Output = Tensor<(B, Const<N>), E, D, T>;
    type Error = D::Err;

    /// # Shapes
    /// `(B, C, H, W) -> (B, C*H*W)`
    fn try_forward(
        &self,
        x: Tensor<(B, Const<C>, Const<H>, Const<W>), E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        let () = Check::<C, H, W, N>::OK;
        let b = x.shape().0;
        x.try_reshape_like(&(b, Const))
    }
}
