use cnn::prelude::*;
cnn! {
    struct Net: [1, 28, 28] {
        conv2d(1, kernel = 3, dilation = 9223372036854775808, padding = same),
    }
}

fn main() {}
