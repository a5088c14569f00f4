use cnn::prelude::*;
cnn! {
    struct Net: [3, 32, 32] {
        concat {
            conv2d(8, kernel = 1),
            conv2d(8, kernel = 3),
        },
    }
}

fn main() {}
