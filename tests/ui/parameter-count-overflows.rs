use cnn::prelude::*;
cnn! {
    // Each layer has 10^18 weights, which fit; twenty of them do not fit in usize.
    struct Net: [1, 1000000000, 1] {
        flatten,
        repeat(20) { linear(1000000000) },
    }
}

fn main() {}
