use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] {
        flatten, dropout(1.5),
    }
}

fn main() {}
