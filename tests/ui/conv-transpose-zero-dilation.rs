use cnn::prelude::*;

cnn! {
    struct Net: [1, 8, 8] {
        conv_transpose2d(4, kernel = 3, dilation = (1, 0)),
    }
}

fn main() {}
