use cnn::prelude::*;
cnn! {
    // Each network has 9,001 rows, within its limit; six of them pass the invocation's 50,000.
    struct N0: [1, 8, 8] { repeat(1000) { relu, relu, relu, relu, relu, relu, relu, relu } }
    struct N1: [1, 8, 8] { repeat(1000) { relu, relu, relu, relu, relu, relu, relu, relu } }
    struct N2: [1, 8, 8] { repeat(1000) { relu, relu, relu, relu, relu, relu, relu, relu } }
    struct N3: [1, 8, 8] { repeat(1000) { relu, relu, relu, relu, relu, relu, relu, relu } }
    struct N4: [1, 8, 8] { repeat(1000) { relu, relu, relu, relu, relu, relu, relu, relu } }
    struct N5: [1, 8, 8] { repeat(1000) { relu, relu, relu, relu, relu, relu, relu, relu } }
}

fn main() {}
