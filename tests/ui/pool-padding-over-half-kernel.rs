use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        max_pool2d(kernel = 3, padding = 2),
    }
}

fn main() {}
