use cnn::prelude::*;

cnn! {
    struct Net: [6, 8, 8] {
        conv_transpose2d(4, kernel = 3, groups = 3),
    }
}

fn main() {}
