use cnn::prelude::*;
cnn! {
    // `_0` would clash with the field of the unnamed conv2d.
    struct Net: [1, 8, 8] {
        _0: relu,
        conv2d(1, kernel = 1),
    }
}

fn main() {}
