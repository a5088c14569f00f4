use cnn::prelude::*;

cnn! {
    struct Net: [1, 8, 8] {
        conv2d(6, kernel = 3),
        conv_transpose2d(3 => 1, kernel = 3),
    }
}

fn main() {}
