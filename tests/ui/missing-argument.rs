use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        conv2d(6, padding = 2),
    }
}

fn main() {}
