use cnn::prelude::*;
cnn! {
    struct Net: [1, 28, 28] {
        flatten,
        linear(170141183460469231731687303715884105727 + 1),
    }
}

fn main() {}
