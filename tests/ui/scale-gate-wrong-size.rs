use cnn::prelude::*;
cnn! {
    struct Net: [32, 8, 8] {
        scale { global_avg_pool2d, linear(2), relu, linear(16), sigmoid },
    }
}

fn main() {}
