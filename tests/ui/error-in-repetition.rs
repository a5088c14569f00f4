use cnn::prelude::*;
cnn! {
    struct Net: [3, 8, 8] {
        // Each copy takes 2 pixels off: the fourth has a 2x2 input.
        repeat(4) { conv2d(3, kernel = 3) },
    }
}

fn main() {}
