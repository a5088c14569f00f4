use cnn::prelude::*;
cnn! {
    block Unit(c) { conv2d(c, kernel = 1) }
    block Unit(c) { conv2d(c, kernel = 3, padding = 1) }
    struct Net: [8, 8, 8] {
        Unit(8),
    }
}

fn main() {}
