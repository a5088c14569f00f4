//! d2l's initialisation: Xavier-uniform weights, found by walking the model's tensors.

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName,
};
use dfdx::shapes::{Dtype, HasShape, Shape};
use dfdx::tensor::Tensor;
use dfdx::tensor_ops::Device;
use rand::Rng;
use rand::distributions::Uniform;

use super::TrainError;

/// Re-initialises every trainable weight of `model` from Xavier's uniform distribution and
/// returns how many tensors it changed. PyTorch equivalent: applying
/// `torch.nn.init.xavier_uniform_` to the `weight` of every `nn.Linear` and `nn.Conv2d`, as d2l's
/// `init_cnn` does.
///
/// A tensor counts as a weight when its last name component is `weight` (`"0.weight"`,
/// `"conv1.weight"`), it is updated by gradients, and it has rank 2 or more. Its fans follow
/// PyTorch's layout `(out, in, ...kernel)`:
/// - linear `(out, in)`: `fan_in = in`, `fan_out = out`;
/// - conv `(out, in/groups, kh, kw)`: `fan_in = in/groups*kh*kw`, `fan_out = out*kh*kw`.
///
/// Each value is drawn from `U(-a, a)` with `a = sqrt(6 / (fan_in + fan_out))`. Biases, norm
/// scales, running statistics and rank-1 tensors are left as they are.
///
/// Values are drawn on the host from `rng`, so a seeded generator gives the same weights on every
/// device.
///
/// ```
/// use cnn::train::xavier_uniform_;
/// use dfdx::prelude::*;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let dev = Cpu::default();
/// let mut model = dev.build_module::<(Linear<784, 256>, ReLU, Linear<256, 10>), f32>();
/// let changed = xavier_uniform_(&mut model, &mut StdRng::seed_from_u64(0))?;
/// assert_eq!(changed, 2); // the two weights, not the biases
/// # Ok::<(), cnn::train::TrainError>(())
/// ```
///
/// # Errors
/// [`TrainError::Device`] when the device fails to copy the new values in.
pub fn xavier_uniform_<E, D, M>(model: &mut M, rng: &mut impl Rng) -> Result<usize, TrainError>
where
    E: Dtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let mut visitor = Xavier { rng, changed: 0 };
    M::iter_tensors(&mut RecursiveWalker {
        m: (String::new(), model),
        f: &mut visitor,
    })
    .map_err(TrainError::device)?;
    Ok(visitor.changed)
}

/// `(fan_in, fan_out)` of a weight laid out `(out, in, ...receptive field)`, as PyTorch's
/// `_calculate_fan_in_and_fan_out`; `None` for rank < 2 or an empty tensor.
pub(crate) fn fans(dims: &[usize]) -> Option<(usize, usize)> {
    let [out, inp, kernel @ ..] = dims else {
        return None;
    };
    let receptive: usize = kernel.iter().product();
    let (fan_in, fan_out) = (inp * receptive, out * receptive);
    (fan_in + fan_out > 0).then_some((fan_in, fan_out))
}

struct Xavier<'r, R> {
    rng: &'r mut R,
    changed: usize,
}

impl<E: Dtype, D: Device<E>, R: Rng> TensorVisitor<E, D> for Xavier<'_, R> {
    // The name decides whether to touch a tensor, the `&mut` lets us write it.
    type Viewer = (ViewTensorName, ViewTensorMut);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        (name, t): (String, &mut Tensor<S, E, D>),
    ) -> Result<Option<Tensor<S, E, D>>, Self::Err> {
        let is_weight = name.rsplit('.').next() == Some("weight");
        if !(opts.do_gradient_update && is_weight) {
            return Ok(None);
        }
        let Some((fan_in, fan_out)) = fans(t.shape().concrete().as_ref()) else {
            return Ok(None);
        };
        let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
        let dist = Uniform::new_inclusive(-a, a);
        // Rounding to E is monotonic, so the values stay within E's rounding of ±a.
        let values: Vec<E> = (0..t.shape().num_elements())
            .map(|_| E::from_f64(self.rng.sample(dist)).unwrap_or_default())
            .collect();
        t.copy_from(&values);
        self.changed += 1;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::fans;

    #[test]
    fn fans_follow_pytorch() {
        assert_eq!(fans(&[10, 784]), Some((784, 10)));
        // LeNet's second conv: 16 out, 6 in, 5x5
        assert_eq!(fans(&[16, 6, 5, 5]), Some((150, 400)));
        assert_eq!(fans(&[10]), None);
        assert_eq!(fans(&[0, 0]), None);
    }
}
