//! NaN and infinity in a model's tensors: found and named, so that weights that diverged are
//! neither saved over good ones nor trained on without a word.

use dfdx::nn::tensor_collection::{
    RecursiveWalker, ScalarOptions, TensorCollection, TensorOptions, TensorVisitor, ViewTensorName,
    ViewTensorRef,
};
use dfdx::shapes::{Dtype, HasShape, Shape};
use dfdx::tensor::Tensor;
use dfdx::tensor_ops::Device;
use std::fmt;

/// A tensor holding NaN or infinite values: which one, how many, and the first of them.
///
/// Displays as `tensor `conv1.weight` has 150 non-finite values (the first is NaN, at index
/// 0)`.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// The tensor's name, as checkpoints name it (`conv1.weight`).
    pub tensor: String,
    /// How many of its values are NaN or infinite.
    pub count: usize,
    /// The flat (row-major) index of the first.
    pub index: usize,
    /// The first: NaN, `inf` or `-inf`.
    pub first: f64,
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.count == 1 { "" } else { "s" };
        write!(
            f,
            "tensor `{}` has {} non-finite value{s} (the first is {}, at index {})",
            self.tensor, self.count, self.first, self.index
        )
    }
}

impl NonFinite {
    /// The non-finite values among `values` (a tensor's, in order), or `None` when there are
    /// none.
    pub(crate) fn scan(tensor: &str, values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut found: Option<NonFinite> = None;
        for (i, v) in values.into_iter().enumerate() {
            if !v.is_finite() {
                match &mut found {
                    Some(n) => n.count += 1,
                    None => {
                        found = Some(NonFinite {
                            tensor: tensor.to_string(),
                            count: 1,
                            index: i,
                            first: v,
                        })
                    }
                }
            }
        }
        found
    }
}

/// The first of `model`'s tensors (and scalars, such as batch norm's momentum) that holds a
/// NaN or an infinity, in the order checkpoints list them; `None` when every value is finite.
///
/// Each tensor is copied to the host to be read, so on a GPU this costs a transfer of the
/// whole model: call it once per epoch, not once per batch.
pub fn find_non_finite<E, D, M>(model: &M) -> Option<NonFinite>
where
    E: Dtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    struct Finder(Option<NonFinite>);
    impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Finder {
        type Viewer = (ViewTensorRef, ViewTensorName);
        type Err = std::convert::Infallible;
        type E2 = E;
        type D2 = D;
        fn visit<S: Shape>(
            &mut self,
            _: TensorOptions<S, E, D>,
            (t, name): (&Tensor<S, E, D>, String),
        ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
            // (dfdx's `as_vec` cannot read a tensor of no elements; it holds nothing anyway.)
            if self.0.is_none() && t.shape().num_elements() > 0 {
                // A value that does not convert is not a number either.
                let values = t
                    .as_vec()
                    .into_iter()
                    .map(|v| v.to_f64().unwrap_or(f64::NAN));
                self.0 = NonFinite::scan(&name, values);
            }
            Ok(None)
        }
        fn visit_scalar<N: num_traits::NumCast>(
            &mut self,
            _: ScalarOptions<N>,
            (n, name): (&N, String),
        ) -> Result<Option<N>, Self::Err> {
            if self.0.is_none() {
                self.0 = NonFinite::scan(&name, [n.to_f64().unwrap_or(f64::NAN)]);
            }
            Ok(None)
        }
    }
    let mut finder = Finder(None);
    let Ok(_) = M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut finder,
    });
    finder.0
}
