use cnn::prelude::*;

cnn! {
    struct Net: [6, 8, 8] {
        conv2d(8, kernel = 3, groups = 4),
    }
}

fn main() {}
