use cnn::prelude::*;
cnn! {
    block Down(c) { conv2d(c, kernel = 3, stride = 2), relu }
    struct Net: [1, 12, 12] {
        Down(8), // 12 -> 5
        Down(16), // 5 -> 2
        Down(32), // 2: the kernel no longer fits
    }
}

fn main() {}
