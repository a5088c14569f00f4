use cnn::prelude::*;
cnn! {
    block A(c) { conv2d(c, kernel = 1), B(c) }
    block B(c) { A(c) }
    struct Net: [8, 8, 8] {
        A(8),
    }
}

fn main() {}
