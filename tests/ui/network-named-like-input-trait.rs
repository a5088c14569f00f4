use cnn::prelude::*;
cnn! {
    struct Net: [1, 8, 8] { relu }
    struct NetInput: [1, 8, 8] { relu }
}

fn main() {}
