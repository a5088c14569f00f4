use cnn::prelude::*;
cnn! {
    struct Net: [64, 24, 24] {
        // The body halves the image and doubles the channels; the identity shortcut cannot
        // be added to it.
        residual {
            conv2d(128, kernel = 3, padding = 1, stride = 2), batch_norm2d, relu,
            conv2d(128, kernel = 3, padding = 1), batch_norm2d,
        },
    }
}

fn main() {}
