use cnn::prelude::*;
cnn! {
    block relu(c) { conv2d(c, kernel = 1) }
    struct Net: [8, 8, 8] {
        relu(8),
    }
}

fn main() {}
