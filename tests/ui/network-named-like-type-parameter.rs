use cnn::prelude::*;

cnn! {
    struct E: [1, 28, 28] {
        conv2d(6, kernel = 5),
    }
}

fn main() {}
