use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        max_pool2d(2),
    }
}

fn main() {}
