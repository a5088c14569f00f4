use cnn::prelude::*;
cnn! {
    block Branch(c) { conv2d(c.0, kernel = 1), conv2d(c.1, kernel = 3, padding = 1) }
    struct Net: [8, 8, 8] {
        Branch(16),
    }
}

fn main() {}
