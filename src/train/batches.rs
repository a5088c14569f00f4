//! How the loop receives data: mini-batches of flat features and class labels, and the input
//! shape that turns a batch into a tensor.

use dfdx::shapes::{Const, Shape};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::TrainError;

/// An input shape whose first dimension is the batch size and whose other dimensions are fixed,
/// such as `(usize, Const<784>)` or `(usize, Const<1>, Const<28>, Const<28>)`.
///
/// The loop uses it to check a batch's length and to build the tensor the model takes, so the
/// same loop serves flat vectors and images.
pub trait BatchShape: Shape {
    /// Number of values in one example: the product of the fixed dimensions.
    const EXAMPLE_NUMEL: usize;

    /// The shape of a batch of `batch` examples.
    fn with_batch(batch: usize) -> Self;
}

macro_rules! batch_shape {
    ($($dim:ident),+) => {
        impl<$(const $dim: usize),+> BatchShape for (usize, $(Const<$dim>,)+) {
            const EXAMPLE_NUMEL: usize = 1 $(* $dim)+;

            fn with_batch(batch: usize) -> Self {
                (batch, $(Const::<$dim>,)+)
            }
        }
    };
}

batch_shape!(A);
batch_shape!(A, B);
batch_shape!(A, B, C);
batch_shape!(A, B, C, D);

/// One mini-batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<E = f32> {
    /// Features of every example, row-major: (batch, ...example shape), so
    /// `x.len() == y.len() * S::EXAMPLE_NUMEL` for the data set's shape `S`.
    pub x: Vec<E>,
    /// Class label of every example, each below the model's number of classes.
    pub y: Vec<usize>,
}

/// A data set the loop can iterate in mini-batches.
///
/// The implementor decides the order (shuffled per epoch or not) and where the data lives; the
/// loop only checks that each batch is consistent with [`Batches::Shape`].
pub trait Batches<E = f32> {
    /// Shape of a batch tensor, batch dimension first.
    type Shape: BatchShape;

    /// Number of examples one pass yields; used for the progress bar, not trusted for the
    /// metrics, which count what the batches actually hold.
    fn num_examples(&self) -> usize;

    /// The mini-batches of epoch `epoch` (from 0), each of `batch_size` examples except perhaps
    /// the last.
    fn batches(&self, epoch: usize, batch_size: usize) -> impl Iterator<Item = Batch<E>>;

    /// Why the last iterator of [`Batches::batches`] ended early, if it did: a source that
    /// reads files (an image that would not decode) cannot yield an error in place of a batch,
    /// so it stops and keeps the error here, and the loop asks after every pass, to stop
    /// with [`TrainError::Data`] rather than train on a short epoch. Taking it clears it.
    /// In-memory sets never fail: the default is `None`.
    fn take_error(&self) -> Option<super::BoxError> {
        None
    }
}

impl<E, B: Batches<E>> Batches<E> for &B {
    type Shape = B::Shape;

    fn num_examples(&self) -> usize {
        B::num_examples(self)
    }

    fn batches(&self, epoch: usize, batch_size: usize) -> impl Iterator<Item = Batch<E>> {
        B::batches(self, epoch, batch_size)
    }

    fn take_error(&self) -> Option<super::BoxError> {
        B::take_error(self)
    }
}

/// A data set held in memory, optionally reshuffled every epoch.
///
/// ```
/// use cnn::train::{Batches, InMemory};
/// use dfdx::shapes::Const;
///
/// // 3 examples of 2 features each
/// let data = InMemory::<(usize, Const<2>)>::new(vec![0., 1., 2., 3., 4., 5.], vec![0, 1, 0])?;
/// let batches: Vec<_> = data.batches(0, 2).collect();
/// assert_eq!(batches[1].x, [4., 5.]);
/// assert_eq!(batches[1].y, [0]);
/// # Ok::<(), cnn::train::TrainError>(())
/// ```
#[derive(Debug, Clone)]
pub struct InMemory<S: BatchShape, E = f32> {
    // x: (n, ...S without its batch dim), row-major; y: (n,)
    x: Vec<E>,
    y: Vec<usize>,
    shuffle_seed: Option<u64>,
    shape: std::marker::PhantomData<S>,
}

impl<S: BatchShape, E: Clone> InMemory<S, E> {
    /// A data set of `y.len()` examples whose features are `x`, laid out as in [`Batch::x`].
    ///
    /// # Errors
    /// [`TrainError::BatchSize`] (with `batch` 0) when `x` does not hold exactly
    /// `S::EXAMPLE_NUMEL` values per label.
    pub fn new(x: Vec<E>, y: Vec<usize>) -> Result<Self, TrainError> {
        if x.len() != y.len() * S::EXAMPLE_NUMEL {
            return Err(TrainError::BatchSize {
                batch: 0,
                labels: y.len(),
                values: x.len(),
                per_example: S::EXAMPLE_NUMEL,
            });
        }
        Ok(InMemory {
            x,
            y,
            shuffle_seed: None,
            shape: std::marker::PhantomData,
        })
    }

    /// Visit the examples in a different random order every epoch, reproducibly from `seed`.
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.shuffle_seed = Some(seed);
        self
    }

    /// The order of the examples in epoch `epoch`.
    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.y.len()).collect();
        if let Some(seed) = self.shuffle_seed {
            // Mix the epoch into the seed so that consecutive epochs are not shifted copies of
            // one stream.
            let mixed = seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            order.shuffle(&mut StdRng::seed_from_u64(mixed));
        }
        order
    }
}

impl<S: BatchShape, E: Clone> Batches<E> for InMemory<S, E> {
    type Shape = S;

    fn num_examples(&self) -> usize {
        self.y.len()
    }

    /// A `batch_size` of 0 is read as 1 so that this never panics; the trainer rejects it
    /// before getting here.
    fn batches(&self, epoch: usize, batch_size: usize) -> impl Iterator<Item = Batch<E>> {
        let numel = S::EXAMPLE_NUMEL;
        let order = self.order(epoch);
        let chunks: Vec<Vec<usize>> = order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        chunks.into_iter().map(move |indices| {
            let mut x = Vec::with_capacity(indices.len() * numel);
            for &i in &indices {
                x.extend_from_slice(&self.x[i * numel..(i + 1) * numel]);
            }
            let y = indices.iter().map(|&i| self.y[i]).collect();
            Batch { x, y }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_numel_is_the_product_of_fixed_dims() {
        assert_eq!(<(usize, Const<784>)>::EXAMPLE_NUMEL, 784);
        assert_eq!(
            <(usize, Const<1>, Const<28>, Const<28>)>::EXAMPLE_NUMEL,
            784
        );
        assert_eq!(
            <(usize, Const<3>, Const<4>, Const<5>)>::with_batch(7),
            (7, Const, Const, Const)
        );
    }

    #[test]
    fn new_rejects_mismatched_lengths() {
        let err = InMemory::<(usize, Const<3>)>::new(vec![0.0; 7], vec![0, 1]).unwrap_err();
        assert!(matches!(
            err,
            TrainError::BatchSize {
                labels: 2,
                values: 7,
                per_example: 3,
                ..
            }
        ));
    }

    #[test]
    fn shuffled_batches_cover_every_example_once_and_differ_per_epoch() {
        let n = 50;
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let y: Vec<usize> = (0..n).collect();
        let data = InMemory::<(usize, Const<1>)>::new(x, y)
            .unwrap()
            .shuffled(3);
        let epoch = |e| -> Vec<usize> { data.batches(e, 8).flat_map(|b| b.y).collect() };
        let (first, second) = (epoch(0), epoch(1));
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        assert_ne!(first, second);
        assert_eq!(first, epoch(0), "the same epoch must give the same order");
        // features travel with their labels
        for b in data.batches(2, 8) {
            let labels: Vec<f32> = b.y.iter().map(|&l| l as f32).collect();
            assert_eq!(b.x, labels);
        }
    }
}
