use cnn::prelude::*;

cnn! {
    struct Net: [1, 6, 6] {
        conv2d(4, kernel = 3), max_pool2d(kernel = 2), // 4x4 -> 2x2
        avg_pool2d(kernel = 3), // nothing left
    }
}

fn main() {}
