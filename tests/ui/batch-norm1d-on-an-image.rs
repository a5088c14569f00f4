use cnn::prelude::*;
cnn! {
    struct Net: [8, 4, 4] {
        batch_norm1d,
    }
}

fn main() {}
