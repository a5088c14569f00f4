// expect: MaxPool2D: OH must be (H + 2*PH - KH) / SH + 1
// A hand-written MaxPool2D whose declared output (13x14) disagrees with the formula (14x14).
use cnn::prelude::*;

fn main() {
    let dev = Cpu::default();
    let x: Tensor<Rank3<6, 28, 28>, f32, _> = dev.zeros();
    let _ = MaxPool2D::<2, 2, 28, 28, 13, 14>.forward(x);
}
