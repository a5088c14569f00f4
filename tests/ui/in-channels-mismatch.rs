use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        conv2d(6, kernel = 5), max_pool2d(kernel = 2),
        conv2d(3 => 16, kernel = 5),
    }
}

fn main() {}
