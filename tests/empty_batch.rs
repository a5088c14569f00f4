//! A batch of no images is a shape the types allow (`(usize, ...)` with 0): every layer gives
//! an empty output, forward and backward, and the parameters' gradients come back as zeros,
//! with no kernel launched (and nothing divided by the batch size).

mod common;

use cnn::prelude::*;
use common::TestDevice;

cnn! {
    // d2l's LeNet: conv -> sigmoid -> avg pool, fused.
    struct Sigmoid: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(10),
    }
    // ReLU and max pooling (the fused max pool keeps where each maximum came from); a plain
    // conv; separate pooling layers; groups; a transposed conv.
    struct Mixed: [2, 12, 12] -> [5] {
        conv2d(4, kernel = 3, padding = 1), relu,
        max_pool2d(kernel = 2),
        conv2d(4, kernel = 3, groups = 2, bias = false),
        conv_transpose2d(2, kernel = 2, stride = 2),
        tanh,
        max_pool2d(kernel = 3, stride = 2, padding = 1),
        avg_pool2d(kernel = 2),
        flatten,
        linear(5),
    }
    // The modern constructs: batch norm (folded into the conv in inference, fused with the
    // ReLU in training), a residual block ending in one add-and-ReLU, concatenation, scaling,
    // the adaptive and global pools, batch_norm1d.
    struct Modern: [2, 7, 7] -> [3] {
        conv2d(4, kernel = 3, padding = 1), batch_norm2d, relu,
        residual { conv2d(4, kernel = 3, padding = 1), batch_norm2d, relu } shortcut { conv2d(4, kernel = 1) },
        relu,
        concat { identity, { batch_norm2d, relu, conv2d(2, kernel = 1) } },
        scale { global_avg_pool2d, linear(3), relu, linear(6), sigmoid },
        adaptive_avg_pool2d(3),
        global_max_pool2d,
        linear(4), batch_norm1d, relu,
        linear(3),
    }
}

/// Runs a batch of 0 through `M` without a tape and with one, and checks that the output is
/// empty and that every parameter's gradient exists and is zero.
fn empty_batch<M, const C: usize, const H: usize, const W: usize, const K: usize>()
where
    M: BuildOnDevice<TestDevice, f32>,
    M::Built: Module<
            Tensor<(usize, Const<C>, Const<H>, Const<W>), f32, TestDevice>,
            Output = Tensor<(usize, Const<K>), f32, TestDevice>,
        > + ModuleMut<
            Tensor<
                (usize, Const<C>, Const<H>, Const<W>),
                f32,
                TestDevice,
                OwnedTape<f32, TestDevice>,
            >,
            Output = Tensor<(usize, Const<K>), f32, TestDevice, OwnedTape<f32, TestDevice>>,
        >,
{
    let dev: TestDevice = Default::default();
    let mut model = dev.build_module::<M, f32>();
    let x = dev.zeros_like(&(0, Const::<C>, Const::<H>, Const::<W>));
    let y = model.forward(x.clone());
    assert_eq!(y.shape().0, 0);
    // (dfdx's `as_vec` cannot read an empty tensor: it indexes element 0.)
    assert_eq!(y.shape().num_elements(), 0);

    let grads = model.alloc_grads();
    let y = model.forward_mut(x.trace(grads));
    assert_eq!(y.shape().0, 0);
    // dfdx cannot reduce an empty tensor (its `sum` divides by the element count), so the
    // tape runs from a scalar that carries it: every backward op recorded runs, on nothing.
    let (_, tape) = y.split_tape();
    let grads = dev.zeros::<Rank0>().put_tape(tape).backward();
    // An update works, and changes nothing: every gradient is there and zero.
    let mut opt = Sgd::new(
        &model,
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    );
    let x1 = dev.ones_like(&(1, Const::<C>, Const::<H>, Const::<W>));
    let before = model.forward(x1.clone()).as_vec();
    opt.update(&mut model, &grads)
        .expect("every parameter has a gradient");
    assert_eq!(model.forward(x1).as_vec(), before);
}

#[test]
fn lenet_takes_an_empty_batch() {
    empty_batch::<Sigmoid, 1, 28, 28, 10>();
}

#[test]
fn relu_max_pool_groups_and_transposed_conv_take_an_empty_batch() {
    empty_batch::<Mixed, 2, 12, 12, 5>();
}

#[test]
fn batch_norm_residual_concat_scale_and_pools_take_an_empty_batch() {
    empty_batch::<Modern, 2, 7, 7, 3>();
}
