use cnn::prelude::*;

cnn! {
    struct Head: [8, 2, 2] -> [4] {
        flatten, linear(16), batch_norm1d, relu, linear(4),
    }
}

fn main() {
    let dev = Cpu::default();
    let mut model = dev.build_module::<Head, f32>();
    // Inference on one image is fine (a batch of one, running statistics)...
    let _ = model.forward(dev.zeros::<Rank3<8, 2, 2>>());
    // ...but batch statistics of one vector are undefined: training takes a batch.
    let x = dev.zeros::<Rank3<8, 2, 2>>().trace(model.alloc_grads());
    let _ = model.forward_mut(x);
}
