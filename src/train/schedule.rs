//! Learning-rate schedules: how [`Trainer`](super::Trainer) sets the optimizer's learning rate
//! at the start of each epoch.

use dfdx::optim::{Adam, RMSprop, Sgd};
use dfdx::shapes::Dtype;
use dfdx::tensor::Storage;

/// The learning rate of each epoch, as a factor of the optimizer's rate when training starts.
///
/// The rate is set once per epoch, before its first batch, as PyTorch's epoch-wise schedulers
/// are stepped (`scheduler.step()` after each epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// The starting rate throughout (d2l's chapters 6 and 8).
    #[default]
    Constant,
    /// Cosine annealing to zero over the run: epoch `e` of `E` (from 0) trains at
    /// `lr * (1 + cos(pi * e / E)) / 2`, PyTorch's `CosineAnnealingLR(opt, T_max=E)` with
    /// `eta_min = 0`. The first epoch trains at the full rate, the last at a small fraction.
    Cosine,
}

impl Schedule {
    /// The factor of the starting rate for epoch `epoch` (from 0) of `epochs`.
    ///
    /// ```
    /// use cnn::train::Schedule;
    /// assert_eq!(Schedule::Constant.factor(7, 10), 1.0);
    /// assert_eq!(Schedule::Cosine.factor(0, 10), 1.0);
    /// assert!((Schedule::Cosine.factor(5, 10) - 0.5).abs() < 1e-15);
    /// ```
    pub fn factor(self, epoch: usize, epochs: usize) -> f64 {
        match self {
            Schedule::Constant => 1.0,
            Schedule::Cosine => {
                let t = epoch as f64 / epochs.max(1) as f64;
                0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// An optimizer whose learning rate the trainer can read and set, for a [`Schedule`].
/// Implemented for dfdx's [`Sgd`], [`Adam`] and [`RMSprop`].
pub trait LearningRate {
    /// The learning rate the next update uses.
    fn learning_rate(&self) -> f64;
    /// Makes `lr` the learning rate of the following updates.
    fn set_learning_rate(&mut self, lr: f64);
}

macro_rules! learning_rate_in_cfg {
    ($($opt:ident),*) => {$(
        impl<M, E: Dtype, D: Storage<E>> LearningRate for $opt<M, E, D> {
            fn learning_rate(&self) -> f64 {
                self.cfg.lr
            }
            fn set_learning_rate(&mut self, lr: f64) {
                self.cfg.lr = lr;
            }
        }
    )*};
}
learning_rate_in_cfg!(Sgd, Adam, RMSprop);

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch 2.15: the rate each of ten epochs trains at under
    /// `CosineAnnealingLR(SGD([p], lr=1.0), T_max=10)`, stepped after each epoch:
    /// ```text
    /// o = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    /// s = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10)
    /// for e in range(10): print(o.param_groups[0]["lr"]); o.step(); s.step()
    /// ```
    const TORCH_COSINE_10: [f64; 10] = [
        1.0,
        0.9755282581475768,
        0.9045084971874737,
        0.7938926261462366,
        0.6545084971874737,
        0.5,
        0.34549150281252633,
        0.2061073738537635,
        0.09549150281252633,
        0.024471741852423234,
    ];

    #[test]
    fn cosine_matches_pytorchs_cosine_annealing() {
        for (epoch, want) in TORCH_COSINE_10.iter().enumerate() {
            let got = Schedule::Cosine.factor(epoch, 10);
            assert!((got - want).abs() < 1e-12, "epoch {epoch}: {got} vs {want}");
        }
    }

    #[test]
    fn constant_keeps_the_rate_and_one_epoch_is_the_full_rate() {
        assert!((0..5).all(|e| Schedule::Constant.factor(e, 5) == 1.0));
        assert_eq!(Schedule::Cosine.factor(0, 1), 1.0);
        assert_eq!(Schedule::Cosine.factor(0, 0), 1.0);
    }
}
