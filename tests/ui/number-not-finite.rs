use cnn::prelude::*;
cnn! {
    struct Net: [1, 28, 28] {
        leaky_relu(0.0 / 0.0),
    }
}

fn main() {}
