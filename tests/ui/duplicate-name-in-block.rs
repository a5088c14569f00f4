use cnn::prelude::*;
cnn! {
    block Twice(c) {
        conv: conv2d(c, kernel = 3, padding = 1), relu,
        residual { conv: conv2d(c, kernel = 3, padding = 1) },
    }
    struct Net: [8, 8, 8] {
        Twice(8),
    }
}

fn main() {}
