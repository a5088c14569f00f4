use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        a: conv2d(6, kernel = 5), a: relu,
    }
}

fn main() {}
