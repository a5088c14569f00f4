use cnn::prelude::*;
cnn! {
    struct Net: [1, 28, 28] {
        flatten,
        linear(18446744073709551615),
    }
}

fn main() {}
