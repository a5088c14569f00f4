//! d2l's LeNet (6.6) and its modern variant: trained by `lenet`, used by `predict`. Each
//! example includes it with `#[path = "common/lenets.rs"] mod lenets;`.

use cnn::prelude::*;

cnn! {
    /// d2l's LeNet (6.6): sigmoid activations and average pooling.
    // Trained on images only, never placed after another network: skip the input's gradient.
    #[cnn(input_grad = false)]
    pub struct LeNet: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }

    /// LeNet as it would be written today: ReLU and max pooling.
    // Trained on images only, never placed after another network: skip the input's gradient.
    #[cnn(input_grad = false)]
    pub struct LeNetModern: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), relu,
        max_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), relu,
        max_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), relu,
        linear(84), relu,
        linear(10),
    }
}
