use cnn::prelude::*;
cnn! {
    struct Net: [3, 8, 8] {
        repeat(0) { conv2d(3, kernel = 3, padding = 1) },
    }
}

fn main() {}
