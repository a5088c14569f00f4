use cnn::prelude::*;

cnn! {
    struct Net: [1, 8, 8] {
        conv2d(6, kernel = 5), // 8x8 -> 4x4
        conv2d(16, kernel = 5),
    }
}

fn main() {}
