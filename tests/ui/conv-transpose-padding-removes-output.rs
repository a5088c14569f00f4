use cnn::prelude::*;

cnn! {
    struct Net: [1, 2, 2] {
        conv_transpose2d(1, kernel = 2, padding = 2),
    }
}

fn main() {}
