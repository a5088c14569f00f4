use cnn::prelude::*;
cnn! {
    struct Net: [64, 25, 25] {
        // 25 -> 13 in the body (padding 1), 25 -> 12 in the shortcut (kernel 2, stride 2).
        residual {
            conv2d(128, kernel = 3, padding = 1, stride = 2),
        } shortcut {
            conv2d(128, kernel = 2, stride = 2)
        },
    }
}

fn main() {}
