use cnn::prelude::*;

cnn! {
    struct Net: [1, 8, 8] {
        conv2d(4, kernel = 3, dilation = 4),
    }
}

fn main() {}
