use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        conv2d(16, kernel = 5, stride = 5),
        flatten,
        linear(500 => 120),
    }
}

fn main() {}
