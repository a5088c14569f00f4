use dfdx::nn::{ModuleFields, ModuleVisitor, TensorCollection};
use dfdx::shapes::Dtype;
use dfdx::tensor_ops::Device;

/// A [`ModuleFields`] that may be absent: how a layer visits an `Option<Tensor>` field such as
/// [`Conv2D`](super::Conv2D)'s `bias` (`None` when built with `bias = false`, as in PyTorch).
///
/// An absent field is not visited at all: it has no parameters, no gradient and no entry in a
/// checkpoint.
pub struct OptionalField<F>(pub Option<F>);

impl<F, M, E, D> ModuleFields<M, E, D> for OptionalField<F>
where
    F: ModuleFields<M, E, D>,
    M: TensorCollection<E, D>,
    E: Dtype,
    D: Device<E>,
{
    type Options<E2: Dtype, D2: Device<E2>> = Option<F::Options<E2, D2>>;
    type Output<E2: Dtype, D2: Device<E2>> = Option<F::Output<E2, D2>>;

    fn visit_fields<V: ModuleVisitor<M, E, D>>(
        self,
        visitor: &mut V,
    ) -> Result<Self::Options<V::E2, V::D2>, V::Err> {
        self.0.map(|f| f.visit_fields(visitor)).transpose()
    }

    fn handle_options<E2: Dtype, D2: Device<E2>>(
        options: Self::Options<E2, D2>,
    ) -> Option<Self::Output<E2, D2>> {
        match options {
            None => Some(None),
            Some(o) => F::handle_options(o).map(Some),
        }
    }
}
