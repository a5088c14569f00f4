use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        conv2d(6, kernel = 5, strides = 2), pool(kernel = 2), flatten, linear(10, bias = 1),
    }
}

fn main() {}
