//! d2l 8.6's residual networks: the small ResNet and ResNet-18 that `resnet` trains, which
//! `predict` also uses. Each example includes it with `#[path = "common/resnets.rs"] mod
//! resnets;`.

use cnn::prelude::*;

cnn! {
    /// d2l 8.6's residual block: two 3x3 convolutions with batch norm, added to the input (through
    /// a 1x1 convolution when the shape changes), then ReLU.
    block Residual(c, use_1x1conv = false, stride = 1) {
        residual {
            conv1: conv2d(c, kernel = 3, padding = 1, stride = stride), bn1: batch_norm2d, relu,
            conv2: conv2d(c, kernel = 3, padding = 1), bn2: batch_norm2d,
        } shortcut {
            if use_1x1conv { conv3: conv2d(c, kernel = 1, stride = stride) }
        },
        relu,
    }

    /// d2l 8.6's `ResNet.block(num_residuals, num_channels, first_block=False)` (as in
    /// `examples/15-resnet.rs`).
    block ResnetStage(num_residuals, c, first_block = false) {
        if first_block {
            repeat(num_residuals) { Residual(c) }
        } else {
            Residual(c, use_1x1conv = true, stride = 2),
            repeat(num_residuals - 1) { Residual(c) }
        }
    }

    /// d2l 8.6's `ResNet18` on Fashion-MNIST at 96x96, written as `examples/15-resnet.rs`
    /// writes it (`self.net`: an unnamed stem, then `b2` to `last`), so that its checkpoint
    /// keys are the book's state_dict keys.
    #[cnn(input_grad = false)]
    pub struct ResNet18: [1, 96, 96] -> [10] {
        net: {
            {
                conv2d(64, kernel = 7, stride = 2, padding = 3), batch_norm2d, relu,
                max_pool2d(kernel = 3, stride = 2, padding = 1),
            } -> [64, 24, 24],
            b2: ResnetStage(2, 64, first_block = true) -> [64, 24, 24],
            b3: ResnetStage(2, 128) -> [128, 12, 12],
            b4: ResnetStage(2, 256) -> [256, 6, 6],
            b5: ResnetStage(2, 512) -> [512, 3, 3],
            last: { adaptive_avg_pool2d((1, 1)), flatten, linear(10) },
        }
    }

    /// A small ResNet for 28x28 images.
    // Trained on images only, never placed after another network: skip the input's gradient.
    #[cnn(input_grad = false)]
    pub struct ResNet: [1, 28, 28] -> [10] {
        conv2d(32, kernel = 3, padding = 1), batch_norm2d, relu,
        Residual(32), Residual(32),
        Residual(64, use_1x1conv = true, stride = 2), Residual(64),
        global_avg_pool2d, linear(10),
    }
}
