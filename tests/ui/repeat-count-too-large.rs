use cnn::prelude::*;
cnn! {
    struct Net: [1, 8, 8] {
        repeat(100000) { relu },
    }
}

fn main() {}
