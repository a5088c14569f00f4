use cnn::prelude::*;
cnn! {
    struct Net: [8, 8, 8] {
        conv2d(C - 16, kernel = 1),
    }
}

fn main() {}
