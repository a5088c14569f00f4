use cnn::prelude::*;

cnn! {
    struct LeNet: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }
}

fn main() {
    let dev: Cpu = Default::default();
    let model = dev.build_module::<LeNet, f32>();
    let _ = model.forward(dev.zeros::<Rank3<1, 32, 32>>());
}
