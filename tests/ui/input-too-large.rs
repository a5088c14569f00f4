use cnn::prelude::*;
cnn! {
    // 2^63 channels: more elements than a tensor can hold.
    struct Net: [9223372036854775808, 1, 1] {
        batch_norm2d,
    }
}

fn main() {}
