use cnn::prelude::*;
cnn! {
    struct Net: [3, 8, 8] {
        concat { identity, global_avg_pool2d },
    }
}

fn main() {}
