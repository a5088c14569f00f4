use cnn::prelude::*;

cnn! {
    struct Net: [1, 8, 8] {
        flatten,
        conv_transpose2d(1, kernel = 3),
    }
}

fn main() {}
