use cnn::prelude::*;
cnn! {
    struct Net: [1, 8, 8] {
        if big { relu },
    }
}

fn main() {}
