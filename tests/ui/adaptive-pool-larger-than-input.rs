use cnn::prelude::*;
cnn! {
    struct Net: [8, 4, 4] {
        adaptive_avg_pool2d(6),
    }
}

fn main() {}
