use cnn::prelude::*;

cnn! {
    struct Net: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5), batch_norm2d, relu,
        flatten,
        dropout(0.5),
        linear(10),
    }
}

fn main() {
    let dev: Cpu = Default::default();
    let mut model = dev.build_module::<Net, f32>();
    // Training needs a traced input: `x.traced(grads)`.
    let _ = model.forward_mut(dev.zeros::<Rank4<8, 1, 28, 28>>());
}
