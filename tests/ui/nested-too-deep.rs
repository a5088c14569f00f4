use cnn::prelude::*;
cnn! {
    // 40 nested groups: more than 32 levels.
    struct Net: [1, 8, 8] {
        { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { relu } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } }
    }
}

fn main() {}
