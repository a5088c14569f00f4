use cnn::prelude::*;
cnn! {
    struct Net: [8, 8, 8] {
        skip: residual { conv2d(8, kernel = 3, padding = 1) },
    }
}

fn main() {}
