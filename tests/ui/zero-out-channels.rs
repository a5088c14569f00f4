use cnn::prelude::*;

cnn! {
    struct Net: [1, 8, 8] {
        conv2d(0, kernel = 3),
    }
}

fn main() {}
