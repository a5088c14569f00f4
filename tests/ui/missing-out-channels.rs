use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        flatten, linear(bias = false),
    }
}

fn main() {}
