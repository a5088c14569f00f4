use cnn::prelude::*;
cnn! {
    block Unit(C) { conv2d(C, kernel = 1) }
    struct Net: [8, 8, 8] {
        Unit(8),
    }
}

fn main() {}
