use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        conv2: conv2d(6, kernel = 5), conv2d(6, kernel = 5),
    }
}

fn main() {}
