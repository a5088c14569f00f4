use cnn::prelude::*;
cnn! {
    block Residual(c, stride = 1) { conv2d(c, kernel = 3, padding = 1, stride = stride) }
    struct Net: [8, 8, 8] {
        Residual(8, strides = 2),
    }
}

fn main() {}
