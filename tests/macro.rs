//! The `cnn!` macro end to end: the types it writes, the values they compute, and the dfdx
//! machinery (building, optimisers, gradients, save/load) working on them.

use cnn::prelude::*;

cnn! {
    /// d2l's LeNet (section 7.6), on 28x28 Fashion-MNIST images.
    pub struct LeNet: [1, 28, 28] -> [10] {
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

fn same_type<T>(_: &T, _: &T) {}

#[test]
fn lenet_types_and_sizes() {
    let dev: Cpu = Default::default();
    let model = dev.build_module::<LeNet, f32>();
    let _: &LeNet<f32, Cpu> = &model;
    let _: &Conv2D<1, 6, 5, 5, 28, 28, 28, 28, 1, 1, 2, 2, 1, 1, 1, 1, true, 2, 2, f32, Cpu> = &model.conv1;
    let _: &Conv2D<6, 16, 5, 5, 14, 14, 10, 10, 1, 1, 0, 0, 1, 1, 1, 6, true, 0, 0, f32, Cpu> = &model.conv2;
    let _: &modules::Linear<400, 120, f32, Cpu> = &model.linear1;
    let _: &modules::Linear<120, 84, f32, Cpu> = &model.linear2;
    let _: &modules::Linear<84, 10, f32, Cpu> = &model.linear3;

    let y = model.forward(dev.zeros::<Rank3<1, 28, 28>>());
    same_type(&y, &dev.zeros::<Rank1<10>>());
    let y = model.forward(dev.zeros::<Rank4<4, 1, 28, 28>>());
    same_type(&y, &dev.zeros::<Rank2<4, 10>>());
    let y = model.forward(dev.zeros_like(&(3usize, Const::<1>, Const::<28>, Const::<28>)));
    same_type(&y, &dev.zeros_like(&(3usize, Const::<10>)));
    assert_eq!(y.shape().0, 3);

    assert_eq!(LeNet::PARAMS, 61_706);
    assert_eq!(model.num_trainable_params(), LeNet::PARAMS);
    assert_eq!(LeNet::MACS, 117_600 + 240_000 + 48_000 + 10_080 + 840);
    assert_eq!(LeNet::INPUT, [1, 28, 28]);
    assert_eq!(LeNet::OUTPUT, [10]);
}
