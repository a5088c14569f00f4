use cnn::prelude::*;
cnn! {
    block Squeeze(c, ratio = 0) { scale { global_avg_pool2d, linear(C / ratio), relu, linear(C), sigmoid } }
    struct Net: [8, 8, 8] {
        Squeeze(8),
    }
}

fn main() {}
