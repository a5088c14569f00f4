use cnn::prelude::*;
cnn! {
    block Maybe(c, pool = 1) { conv2d(c, kernel = 1), if pool { max_pool2d(kernel = 2) } }
    struct Net: [8, 8, 8] {
        Maybe(8),
    }
}

fn main() {}
