// expect: Flatten2D: N must be C * H * W
// Flatten2D's N must be C * H * W: 16 * 5 * 5 = 400, not 401.
use cnn::prelude::*;

fn main() {
    let dev = Cpu::default();
    let x: Tensor<Rank3<16, 5, 5>, f32, _> = dev.zeros();
    let _ = Flatten2D::<401>.forward(x);
}
