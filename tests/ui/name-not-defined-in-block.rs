use cnn::prelude::*;
cnn! {
    block Stem(c, stride = 1) { conv2d(d, kernel = 3, stride = stride) }
    struct Net: [1, 8, 8] {
        Stem(4),
    }
}

fn main() {}
