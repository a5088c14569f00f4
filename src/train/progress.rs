//! What the loop shows while it runs: a bar per epoch and a summary line after it.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::EpochStats;

/// How much the loop prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A progress bar per epoch on stderr when stderr is a terminal, and a summary line per
    /// epoch on stdout.
    #[default]
    Auto,
    /// Only the summary line per epoch, on stdout (for logs).
    Summary,
    /// Nothing (for tests and callers that report through the returned stats).
    Quiet,
}

/// The bar of one epoch; absent when it would not be seen.
pub(crate) struct EpochBar {
    bar: Option<ProgressBar>,
}

impl EpochBar {
    /// A bar counting `examples` training examples of epoch `epoch` of `epochs`.
    pub(crate) fn new(progress: Progress, epoch: usize, epochs: usize, examples: usize) -> Self {
        // indicatif hides a bar on a non-terminal target by itself; checking here as well means
        // nothing is even allocated when output goes to a file or a pipe.
        if progress != Progress::Auto || !std::io::stderr().is_terminal() {
            return EpochBar { bar: None };
        }
        let style = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} images, {elapsed} < {eta}, {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar =
            ProgressBar::with_draw_target(Some(examples as u64), ProgressDrawTarget::stderr())
                .with_style(style)
                .with_prefix(format!("{epoch}/{epochs}"));
        EpochBar { bar: Some(bar) }
    }

    /// Reports `seen` examples done at a running mean loss of `loss`.
    pub(crate) fn update(&self, seen: usize, loss: f64, images_per_s: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(seen as u64);
            bar.set_message(format!("loss {loss:.3}, {images_per_s:.0} images/s"));
        }
    }

    /// Shows that the epoch's training is over and its test set is being evaluated.
    pub(crate) fn evaluating(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message("evaluating");
        }
    }

    /// Removes the bar and prints the epoch's summary line, unless quiet.
    pub(crate) fn finish(self, progress: Progress, stats: &EpochStats, epochs: usize) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if progress != Progress::Quiet {
            println!("{}", stats.summary(epochs));
        }
    }
}
