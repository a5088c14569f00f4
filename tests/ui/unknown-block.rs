use cnn::prelude::*;
cnn! {
    block Residual(c) { residual { conv2d(c, kernel = 3, padding = 1) } }
    struct Net: [8, 8, 8] {
        Residul(8),
    }
}

fn main() {}
