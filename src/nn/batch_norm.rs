use crate::ops::batch_norm::{BatchNormGeometry, try_batch_norm_infer, try_batch_norm_train};
use crate::{ConvDevice, Float};
use dfdx::nn::tensor_collection::{ModuleVisitor, ScalarOptions, TensorCollection, TensorOptions};
use dfdx::nn::{BuildOnDevice, Module, ModuleMut};
use dfdx::shapes::{Const, Dim, Dtype, HasShape, Rank1};
use dfdx::tensor::{NoneTape, OwnedTape, Storage, Tensor};
use dfdx::tensor_ops::Device;

/// Batch normalisation over channels: PyTorch's `nn.BatchNorm2d` on images `(C, H, W)` and
/// batches `(B, C, H, W)`, and `nn.BatchNorm1d` on batches of vectors `(B, C)` (and, in
/// inference, one vector `(C,)`).
///
/// `forward` (an untraced input) is inference: `(x - running_mean) / sqrt(running_var +
/// epsilon) * weight + bias`. `forward_mut` on a traced input trains: the batch's own mean and
/// biased variance, and the running statistics move towards them by `momentum` (the unbiased
/// variance for the running one), as in PyTorch. The op is the crate's own
/// ([`crate::ops::batch_norm`]): two parallel passes forward and two backward, where dfdx's
/// `BatchNorm2D` runs a dozen single-threaded ones.
///
/// Its tensors have PyTorch's names (`weight`, `bias`, `running_mean`, `running_var`, and the
/// count `num_batches_tracked`), so its keys are those of PyTorch's `state_dict`; the crate's
/// own checkpoints also keep `epsilon` and `momentum`.
///
/// # Generics
/// - `C`: the channels (features)
#[derive(Clone, Debug)]
pub struct BatchNorm<const C: usize, E: Dtype, D: Storage<E>> {
    /// `γ`, the scale; ones at first.
    pub weight: Tensor<Rank1<C>, E, D>,
    /// `β`; zeros at first.
    pub bias: Tensor<Rank1<C>, E, D>,
    /// The running mean, updated in training; zeros at first.
    pub running_mean: Tensor<Rank1<C>, E, D>,
    /// The running (unbiased) variance, updated in training; ones at first.
    pub running_var: Tensor<Rank1<C>, E, D>,
    /// Added to the variance before the square root; 1e-5.
    pub epsilon: f64,
    /// How far one batch moves the running statistics; 0.1.
    pub momentum: f64,
    /// How many batches have moved the running statistics, as PyTorch counts them (which
    /// uses the count only when its `momentum` is `None`).
    pub num_batches_tracked: u64,
}

/// A traced tensor, as training takes and gives it.
type Traced<S, E, D> = Tensor<S, E, D, OwnedTape<E, D>>;

/// [`BatchNorm`] on images: PyTorch's `nn.BatchNorm2d`.
pub type BatchNorm2D<const C: usize, E, D> = BatchNorm<C, E, D>;
/// [`BatchNorm`] on vectors: PyTorch's `nn.BatchNorm1d`.
pub type BatchNorm1D<const C: usize, E, D> = BatchNorm<C, E, D>;

impl<const C: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for BatchNorm<C, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = BatchNorm<C, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            // (dfdx takes tuples of up to six fields: a pair of tuples.)
            (
                (
                    Self::tensor(
                        "weight",
                        |s| &s.weight,
                        |s| &mut s.weight,
                        TensorOptions::reset_to_ones(),
                    ),
                    Self::tensor(
                        "bias",
                        |s| &s.bias,
                        |s| &mut s.bias,
                        TensorOptions::reset_to_zeros(),
                    ),
                    Self::tensor(
                        "running_mean",
                        |s| &s.running_mean,
                        |s| &mut s.running_mean,
                        TensorOptions::detached(|t| t.try_fill_with_zeros()),
                    ),
                    Self::tensor(
                        "running_var",
                        |s| &s.running_var,
                        |s| &mut s.running_var,
                        TensorOptions::detached(|t| t.try_fill_with_ones()),
                    ),
                ),
                (
                    Self::scalar(
                        "epsilon",
                        |s| &s.epsilon,
                        |s| &mut s.epsilon,
                        ScalarOptions::from_default(1e-5),
                    ),
                    Self::scalar(
                        "momentum",
                        |s| &s.momentum,
                        |s| &mut s.momentum,
                        ScalarOptions::from_default(0.1),
                    ),
                    Self::scalar(
                        "num_batches_tracked",
                        |s| &s.num_batches_tracked,
                        |s| &mut s.num_batches_tracked,
                        ScalarOptions::from_default(0),
                    ),
                ),
            ),
            |(
                (weight, bias, running_mean, running_var),
                (epsilon, momentum, num_batches_tracked),
            )| {
                BatchNorm {
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    epsilon,
                    momentum,
                    num_batches_tracked,
                }
            },
        )
    }
}

impl<const C: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for BatchNorm<C, E, D> {
    type Built = Self;
}

/// A [`BatchNorm`] and the ReLU after it, run as one op (the same passes as the batch norm
/// alone): `WithRelu(&mut bn)` trains (`forward_mut`), `WithRelu(&bn)` infers (`forward`).
/// `cnn!` uses it for every `batch_norm2d, relu` (and `batch_norm1d, relu`) pair.
#[derive(Debug)]
pub struct WithRelu<B>(pub B);

impl<const C: usize, E: Float, D: ConvDevice<E>> BatchNorm<C, E, D> {
    fn geometry(&self, batch: usize, plane: usize, relu: bool) -> BatchNormGeometry {
        BatchNormGeometry {
            batch,
            channels: C,
            plane,
            epsilon: self.epsilon,
            momentum: self.momentum,
            relu,
        }
    }

    fn infer<S: dfdx::shapes::Shape>(
        &self,
        x: Tensor<S, E, D>,
        (batch, plane): (usize, usize),
        relu: bool,
    ) -> Result<Tensor<S, E, D>, D::Err> {
        let g = self.geometry(batch, plane, relu);
        try_batch_norm_infer(
            x,
            g,
            &self.weight,
            &self.bias,
            &self.running_mean,
            &self.running_var,
        )
    }

    fn train<S: dfdx::shapes::Shape>(
        &mut self,
        x: Traced<S, E, D>,
        (batch, plane): (usize, usize),
        relu: bool,
    ) -> Result<Traced<S, E, D>, D::Err> {
        let g = self.geometry(batch, plane, relu);
        let y = try_batch_norm_train(
            x,
            g,
            &self.weight,
            &self.bias,
            &mut self.running_mean,
            &mut self.running_var,
        )?;
        if batch > 0 {
            self.num_batches_tracked += 1;
        }
        Ok(y)
    }
}

/// Implements `Module` (inference, untraced input) and `ModuleMut` (training, traced input)
/// for one input shape, for [`BatchNorm`] and [`WithRelu`]; `$batch` and `$plane` are read
/// from the shape `s`.
macro_rules! modes {
    ([$($gen:tt)*], $shape:ty, |$s:ident| $sizes:expr, train: $train:tt) => {
        impl<$($gen)* const C: usize, E: Float, D: ConvDevice<E>>
            Module<Tensor<$shape, E, D, NoneTape>> for BatchNorm<C, E, D>
        {
            type Output = Tensor<$shape, E, D, NoneTape>;
            type Error = D::Err;

            /// Inference, with the running statistics.
            fn try_forward(&self, x: Tensor<$shape, E, D, NoneTape>) -> Result<Self::Output, D::Err> {
                let $s = *x.shape();
                self.infer(x, $sizes, false)
            }
        }

        impl<'a, $($gen)* const C: usize, E: Float, D: ConvDevice<E>>
            Module<Tensor<$shape, E, D, NoneTape>> for WithRelu<&'a BatchNorm<C, E, D>>
        {
            type Output = Tensor<$shape, E, D, NoneTape>;
            type Error = D::Err;

            /// Inference, with the running statistics, then the ReLU.
            fn try_forward(&self, x: Tensor<$shape, E, D, NoneTape>) -> Result<Self::Output, D::Err> {
                let $s = *x.shape();
                self.0.infer(x, $sizes, true)
            }
        }
        modes!(@train $train [$($gen)*], $shape, |$s| $sizes);
    };
    (@train true [$($gen:tt)*], $shape:ty, |$s:ident| $sizes:expr) => {
        impl<$($gen)* const C: usize, E: Float, D: ConvDevice<E>>
            ModuleMut<Tensor<$shape, E, D, OwnedTape<E, D>>> for BatchNorm<C, E, D>
        {
            type Output = Tensor<$shape, E, D, OwnedTape<E, D>>;
            type Error = D::Err;

            /// Training, with the batch's statistics; moves the running ones.
            fn try_forward_mut(
                &mut self,
                x: Tensor<$shape, E, D, OwnedTape<E, D>>,
            ) -> Result<Self::Output, D::Err> {
                let $s = *x.shape();
                self.train(x, $sizes, false)
            }
        }

        impl<'a, $($gen)* const C: usize, E: Float, D: ConvDevice<E>>
            ModuleMut<Tensor<$shape, E, D, OwnedTape<E, D>>> for WithRelu<&'a mut BatchNorm<C, E, D>>
        {
            type Output = Tensor<$shape, E, D, OwnedTape<E, D>>;
            type Error = D::Err;

            /// Training, with the batch's statistics, then the ReLU; moves the running ones.
            fn try_forward_mut(
                &mut self,
                x: Tensor<$shape, E, D, OwnedTape<E, D>>,
            ) -> Result<Self::Output, D::Err> {
                let $s = *x.shape();
                self.0.train(x, $sizes, true)
            }
        }
    };
    (@train false $($rest:tt)*) => {};
}

// One image, a batch of images, a batch of vectors; one vector in inference only (the
// statistics of one value per channel are undefined).
modes!([H: Dim, W: Dim,], (Const<C>, H, W), |s| (1, s.1.size() * s.2.size()), train: true);
modes!([B: Dim, H: Dim, W: Dim,], (B, Const<C>, H, W), |s| (s.0.size(), s.2.size() * s.3.size()), train: true);
modes!([B: Dim,], (B, Const<C>), |s| (s.0.size(), 1), train: true);
modes!([], (Const<C>,), |_s| (1, 1), train: false);
