// expect: Conv2D: OH must be (H + PH + PH_END - DH*(KH-1) - 1) / SH + 1
// A hand-written Conv2D whose declared output (27x28) disagrees with the formula (28x28).
use cnn::prelude::*;

type Wrong = Conv2D<1, 6, 5, 5, 28, 28, 27, 28, 1, 1, 2, 2>;

fn main() {
    let dev = Cpu::default();
    let _ = dev.build_module::<Wrong, f32>();
}
