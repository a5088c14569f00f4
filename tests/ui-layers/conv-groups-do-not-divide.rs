// expect: Conv2D: GROUPS must divide IN and OUT
// GROUPS must divide IN and OUT: 3 input channels cannot be split into 2 groups.
use cnn::prelude::*;

type Wrong = Conv2D<3, 4, 3, 3, 8, 8, 6, 6, 1, 1, 0, 0, 1, 1, 2, 1>;

fn main() {
    let dev = Cpu::default();
    let _ = dev.build_module::<Wrong, f32>();
}
