use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        conv2d(6, kernel = 5, bias = 0),
    }
}

fn main() {}
