//! An in-memory image classification set and its mini-batches.

use std::path::Path;

use rand::Rng;
use rand::seq::SliceRandom;

use super::DataError;
use super::idx::{read_idx, shape};

/// Grey-scale images with one class label each, held in memory.
///
/// Pixels are `f32` in `[0, 1]` (the IDX bytes divided by 255), the layout that
/// `dev.tensor_from_vec(v, (n, Const::<1>, Const::<28>, Const::<28>))` expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// All images, row-major, one after another: `(len, rows, cols)`.
    pub images: Vec<f32>,
    /// The class of each image.
    pub labels: Vec<u8>,
    /// Height of each image in pixels.
    pub rows: usize,
    /// Width of each image in pixels.
    pub cols: usize,
}

impl Dataset {
    /// Reads an images file (IDX, 3 dimensions `N x rows x cols`) and a labels file (IDX, 1
    /// dimension `N`), raw or gzipped, as MNIST and Fashion-MNIST ship them.
    ///
    /// An error names the file at fault: a wrong number of dimensions, or (naming the labels
    /// file) a label count different from the image count.
    pub fn from_idx(images: &Path, labels: &Path) -> Result<Self, DataError> {
        let img = read_idx(images)?;
        let &[n, rows, cols] = img.dims.as_slice() else {
            return Err(DataError::format(
                images,
                format!(
                    "expected 3 dimensions (count x rows x cols) for images, found {} ({})",
                    img.dims.len(),
                    img.shape()
                ),
            ));
        };
        let lab = read_idx(labels)?;
        let &[m] = lab.dims.as_slice() else {
            return Err(DataError::format(
                labels,
                format!(
                    "expected 1 dimension for labels, found {} ({})",
                    lab.dims.len(),
                    lab.shape()
                ),
            ));
        };
        if m != n {
            return Err(DataError::format(
                labels,
                format!(
                    "holds {m} labels but {} holds {n} images ({})",
                    images.display(),
                    shape(&img.dims)
                ),
            ));
        }
        Ok(Dataset {
            images: img.data.iter().map(|&p| f32::from(p) / 255.0).collect(),
            labels: lab.data,
            rows,
            cols,
        })
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels in one image: `rows * cols`.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`, row-major.
    ///
    /// # Panics
    /// If `i >= self.len()`, as slice indexing does.
    pub fn image(&self, i: usize) -> &[f32] {
        let p = self.pixels();
        &self.images[i * p..(i + 1) * p]
    }

    /// A copy of the first `n` examples (all of them if there are fewer), for quick runs.
    pub fn subset(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            images: self.images[..n * self.pixels()].to_vec(),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Mini-batches of `size` examples in stored order, as for evaluation.
    ///
    /// The last batch holds the `len % size` left-over examples when `size` does not divide
    /// the length: it is kept, not dropped, as d2l's data loaders keep it, so an epoch sees
    /// every example. A `size` of 0 is read as 1 (as [`crate::train::InMemory`] reads it), so
    /// that this never panics.
    pub fn batches(&self, size: usize) -> Batches<'_> {
        Batches::new(self, (0..self.len()).collect(), size)
    }

    /// Mini-batches of `size` examples in an order shuffled by `rng`, as for one training
    /// epoch: every example appears exactly once, and the last batch may be smaller (see
    /// [`Dataset::batches`]).
    ///
    /// The order depends only on the state of `rng`, so a seeded
    /// `rand::rngs::StdRng::seed_from_u64(seed)` gives the same epochs on every run. A `size`
    /// of 0 is read as 1.
    pub fn shuffled_batches(&self, size: usize, rng: &mut impl Rng) -> Batches<'_> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        Batches::new(self, order, size)
    }
}

/// One mini-batch, copied out of a [`Dataset`] so that its pixels can move into a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Which examples of the dataset these are, in batch order.
    pub indices: Vec<usize>,
    /// The images, row-major, one after another: `(len, rows, cols)`.
    pub images: Vec<f32>,
    /// The class of each image, as `usize` for indexing one-hot rows.
    pub labels: Vec<usize>,
}

impl Batch {
    /// The number of examples in this batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch is empty (never, for batches from [`Batches`]).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// The iterator of [`Dataset::batches`] and [`Dataset::shuffled_batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    size: usize,
    next: usize,
}

impl<'a> Batches<'a> {
    fn new(data: &'a Dataset, order: Vec<usize>, size: usize) -> Self {
        Batches {
            data,
            order,
            size: size.max(1),
            next: 0,
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.size).min(self.order.len());
        let indices = self.order[self.next..end].to_vec();
        self.next = end;
        let mut images = Vec::with_capacity(indices.len() * self.data.pixels());
        for &i in &indices {
            images.extend_from_slice(self.data.image(i));
        }
        let labels = indices
            .iter()
            .map(|&i| usize::from(self.data.labels[i]))
            .collect();
        Some(Batch {
            indices,
            images,
            labels,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.order.len() - self.next).div_ceil(self.size);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// `n` 2x3 images whose pixels all equal their index / 255, labelled `index % 10`.
    fn numbered(n: usize) -> Dataset {
        Dataset {
            images: (0..n).flat_map(|i| [i as f32 / 255.0; 6]).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            rows: 2,
            cols: 3,
        }
    }

    fn order(batches: Batches<'_>) -> Vec<usize> {
        batches.flat_map(|b| b.indices).collect()
    }

    #[test]
    fn every_index_once_per_epoch_with_partial_last_batch() {
        let data = numbered(23);
        let mut rng = StdRng::seed_from_u64(7);
        let batches: Vec<Batch> = data.shuffled_batches(5, &mut rng).collect();
        assert_eq!(
            batches.iter().map(Batch::len).collect::<Vec<_>>(),
            [5, 5, 5, 5, 3]
        );
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..23).collect::<Vec<_>>());
        // Pixels and labels travel with their index.
        for b in &batches {
            assert_eq!(b.images.len(), b.len() * 6);
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(b.images[k * 6..(k + 1) * 6], [i as f32 / 255.0; 6]);
                assert_eq!(b.labels[k], i % 10);
            }
        }
    }

    #[test]
    fn same_seed_same_order_different_seed_different_order() {
        let data = numbered(100);
        let a = order(data.shuffled_batches(8, &mut StdRng::seed_from_u64(1)));
        let b = order(data.shuffled_batches(8, &mut StdRng::seed_from_u64(1)));
        let c = order(data.shuffled_batches(8, &mut StdRng::seed_from_u64(2)));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, (0..100).collect::<Vec<_>>(), "not shuffled");
    }

    #[test]
    fn successive_epochs_from_one_rng_differ() {
        let data = numbered(50);
        let mut rng = StdRng::seed_from_u64(3);
        let first = order(data.shuffled_batches(10, &mut rng));
        let second = order(data.shuffled_batches(10, &mut rng));
        assert_ne!(first, second);
    }

    #[test]
    fn in_order_batches_and_exact_size() {
        let data = numbered(7);
        let batches = data.batches(3);
        assert_eq!(batches.len(), 3);
        let sizes: Vec<Vec<usize>> = batches.map(|b| b.indices).collect();
        assert_eq!(sizes, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(data.batches(7).len(), 1);
        assert_eq!(data.batches(100).len(), 1);
        assert_eq!(numbered(0).batches(4).count(), 0);
    }

    #[test]
    fn zero_batch_size_is_read_as_one() {
        let data = numbered(3);
        assert_eq!(data.batches(0).len(), 3);
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            data.shuffled_batches(0, &mut rng).map(|b| b.len()).max(),
            Some(1)
        );
    }

    #[test]
    fn image_and_subset() {
        let data = numbered(5);
        assert_eq!(data.len(), 5);
        assert_eq!(data.image(4), [4.0 / 255.0; 6]);
        let sub = data.subset(2);
        assert_eq!(sub.len(), 2);
        assert_eq!(sub.images.len(), 12);
        assert_eq!(sub.labels, [0, 1]);
        assert_eq!(data.subset(99), data);
    }
}
