use cnn::prelude::*;

cnn! {
    #[cnn(input_grad = false)]
    struct Net: [1, 28, 28] {
        max_pool2d(kernel = 2),
        conv2d(6, kernel = 5),
    }
}

fn main() {}
