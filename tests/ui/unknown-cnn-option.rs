use cnn::prelude::*;

cnn! {
    #[cnn(input_gradient = false)]
    struct Net: [1, 28, 28] {
        conv2d(6, kernel = 5),
    }
}

fn main() {}
