use cnn::prelude::*;
cnn! {
    struct Net: [16, 8, 8] {
        sum { identity, conv2d(32, kernel = 1) },
    }
}

fn main() {}
