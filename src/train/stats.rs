//! What one epoch measured.

use std::fmt;

/// Metrics of one training epoch.
///
/// Displays as d2l prints them: `loss 0.469, train acc 0.823, test acc 0.779`;
/// [`EpochStats::summary`] adds the epoch number and the speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training examples, each batch weighted by its size.
    /// Measured while the weights changed, as d2l does, not after the epoch.
    pub loss: f64,
    /// Fraction of training examples whose arg-max logit was the label, measured during the
    /// epoch alongside `loss`.
    pub train_acc: f64,
    /// Fraction of test examples classified correctly after the epoch.
    pub test_acc: f64,
    /// The optimizer's learning rate during the epoch (see [`Schedule`](super::Schedule)).
    pub lr: f64,
    /// Training examples per second of training (forward, backward and update; not evaluation).
    pub images_per_s: f64,
    /// Wall-clock seconds of the whole epoch, evaluation included.
    pub seconds: f64,
}

impl EpochStats {
    /// The line printed after each epoch, e.g.
    /// `epoch 3/10: loss 0.469, train acc 0.823, test acc 0.779, lr 9.045e-2, 5120.3 images/s,
    /// 11.9 s`.
    pub fn summary(&self, epochs: usize) -> String {
        format!(
            "epoch {}/{epochs}: {self}, lr {:.3e}, {:.1} images/s, {:.1} s",
            self.epoch, self.lr, self.images_per_s, self.seconds
        )
    }
}

impl fmt::Display for EpochStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss {:.3}, train acc {:.3}, test acc {:.3}",
            self.loss, self.train_acc, self.test_acc
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_d2l() {
        let stats = EpochStats {
            epoch: 3,
            loss: 0.4694,
            train_acc: 0.82251,
            test_acc: 0.779,
            lr: 0.09045,
            images_per_s: 5120.26,
            seconds: 11.94,
        };
        assert_eq!(
            stats.to_string(),
            "loss 0.469, train acc 0.823, test acc 0.779"
        );
        assert_eq!(
            stats.summary(10),
            "epoch 3/10: loss 0.469, train acc 0.823, test acc 0.779, lr 9.045e-2, 5120.3 images/s, 11.9 s"
        );
    }
}
