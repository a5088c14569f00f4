use cnn::prelude::*;
cnn! {
    block Stem(a = b, b = 1) { conv2d(a, kernel = 1) }
    struct Net: [1, 8, 8] {
        Stem,
    }
}

fn main() {}
