use cnn::prelude::*;
cnn! {
    struct Net: [3, 8, 8] {
        concat { conv2d(8, kernel = 1) },
    }
}

fn main() {}
