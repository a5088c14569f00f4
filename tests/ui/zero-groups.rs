use cnn::prelude::*;

cnn! {
    struct Net: [2, 8, 8] {
        conv2d(4, kernel = 3, groups = 0),
    }
}

fn main() {}
