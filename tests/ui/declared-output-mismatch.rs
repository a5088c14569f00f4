use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] -> [10] {
        flatten, linear(120), relu, linear(84),
    }
}

fn main() {}
