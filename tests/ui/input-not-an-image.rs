use cnn::prelude::*;

cnn! {
    struct Net: [784] {
        linear(10),
    }
}

fn main() {}
