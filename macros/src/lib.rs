//! The `cnn!` macro, re-exported by the `cnn` crate, which documents it.
//!
//! The pipeline: `ast` is the syntax (every node keeps its tokens for spans), `check` the shapes
//! and rules (the only place that decides), `expand` the generated code (`quote!` only).

mod ast;
mod check;
mod expand;
mod ir;

use proc_macro::TokenStream;
use syn::parse_macro_input;

/// Declares convolutional networks whose shapes the compiler checks.
///
/// A network is a stack of layers written the way the book writes it; the macro works every
/// size out at expansion time and writes it as a literal into the layers' const generics, so a
/// shape that cannot work is a compile error at the offending layer (from `cargo check` and
/// rust-analyzer, not only `cargo build`), and nothing needs nightly.
///
/// ```
/// use cnn::prelude::*; // all a user imports
///
/// cnn! {
///     /// d2l's LeNet. Doc comments and attributes pass through to the struct.
///     pub struct LeNet: [1, 28, 28] -> [10] {
///         conv2d(6, kernel = 5, padding = 2), sigmoid,
///         avg_pool2d(kernel = 2, stride = 2),
///         conv2d(16, kernel = 5), sigmoid,
///         avg_pool2d(kernel = 2, stride = 2),
///         flatten,
///         linear(120), sigmoid,
///         linear(84), sigmoid,
///         linear(10),
///     }
///     // any number of networks in one invocation
/// }
///
/// let dev = Cpu::default();
/// let model: LeNet<f32, Cpu> = dev.build_module::<LeNet, f32>();
/// let y: Tensor<Rank1<10>, f32, Cpu> = model.forward(dev.zeros::<Rank3<1, 28, 28>>());
/// let y: Tensor<Rank2<64, 10>, f32, Cpu> = model.forward(dev.zeros::<Rank4<64, 1, 28, 28>>());
/// assert_eq!(LeNet::PARAMS, 61_706);
/// assert_eq!(model.num_trainable_params(), LeNet::PARAMS);
/// println!("{}", LeNet::summary());
/// ```
///
/// # Grammar
///
/// ```text
/// invocation := network*
/// network    := ATTR* VIS `struct` NAME `:` `[` C `,` H `,` W `]` (`->` dims)? `{` layers `}`
/// ATTR       := `#[cnn(` (KEY `=` value `,`)* `)]` | any other outer attribute
/// layers     := (layer `,`)* layer?
/// layer      := (FIELD `:`)? KEYWORD (`(` args `)`)? (`->` dims)?
/// dims       := `[` INT (`,` INT)* `]`
/// args       := (arg `,`)* arg?
/// arg        := KEY `=` value | (value `=>`)? value
/// value      := INT | FLOAT | `true` | `false` | IDENT | `(` INT `,` INT `)`
/// ```
///
/// - `[C, H, W]` is the shape of one input image; `-> [DIMS]` after it is the network's output
///   shape for one image, optional and checked when given.
/// - `-> [DIMS]` after a layer is that layer's output shape, checked.
/// - `FIELD:` names a layer: it becomes the struct field `FIELD` (`pub` when the struct is).
/// - `#[cnn(...)]` holds the macro's options (below); it is read by the macro and not passed on.
///   Other attributes and doc comments pass through to the struct.
///
/// # Options
///
/// - `#[cnn(input_grad = false)]`: the network's input is treated as data: no gradient is
///   computed for it, which saves about a fifth of a LeNet training step. Needs `conv2d` as the
///   first layer (the layer that skips it). Do not compose such a network after another one
///   (a tuple `(Stage1, Stage2)`, or `stage2.forward(stage1.forward(x))`): the earlier
///   network's weights would get exactly zero gradient, silently. Without the option
///   (`input_grad = true`, the default) a traced input gets its gradient: networks compose,
///   and `grads.get(&x)` is a saliency map.
///
/// ```
/// use cnn::prelude::*;
/// cnn! {
///     // Trained on images only: the speed-up is safe.
///     #[cnn(input_grad = false)]
///     pub struct Fast: [1, 28, 28] -> [10] {
///         conv2d(6, kernel = 5, padding = 2), relu, max_pool2d(kernel = 2),
///         flatten, linear(10),
///     }
/// }
/// ```
///
/// # Layers
///
/// Sizes (`K`, `S`, `P`, `OP`, `D`) are an integer or a pair `(height, width)`.
///
/// | layer | PyTorch | type |
/// |---|---|---|
/// | `conv2d([IN =>] OUT, kernel = K, stride = S, padding = P, dilation = D, groups = G, bias = B)`: `kernel` required; stride 1, padding 0, dilation 1, groups 1, bias `true` by default; `padding = same` pads so that the output is `ceil(n / s)`, the odd pixel at the bottom/right (TensorFlow's `same`); `padding = valid` is 0 | `nn.Conv2d` | `cnn::nn::Conv2D` |
/// | `conv_transpose2d([IN =>] OUT, kernel = K, stride = S, padding = P, output_padding = OP, dilation = D, groups = G, bias = B)`: `kernel` required; stride 1, padding 0, output_padding 0, dilation 1, groups 1, bias `true` by default; the output is `(n - 1)*S - 2*P + D*(K - 1) + OP + 1` per axis; `OP` is smaller than `S` or `D` | `nn.ConvTranspose2d` | `cnn::nn::ConvTranspose2D` |
/// | `max_pool2d(kernel = K, stride = S, padding = P)`: stride the kernel by default, padding at most half the kernel | `nn.MaxPool2d` | `cnn::nn::MaxPool2D` |
/// | `avg_pool2d(kernel = K, stride = S, padding = P)`: as `max_pool2d`; padded zeros count | `nn.AvgPool2d` | `cnn::nn::AvgPool2D` |
/// | `flatten`: `[C, H, W]` to `[C*H*W]` | `nn.Flatten` | `cnn::nn::Flatten2D` |
/// | `linear([IN =>] OUT, bias = B)` | `nn.Linear` | dfdx's `Linear`, `UnbiasedLinear` |
/// | `batch_norm2d`, `batch_norm2d(C)` | `nn.BatchNorm2d` | dfdx's `BatchNorm2D` |
/// | `dropout(P)`: P 0.5 by default | `nn.Dropout` | dfdx's `Dropout` |
/// | `relu`, `sigmoid`, `tanh`, `gelu` (exact), `fast_gelu` (tanh approximation), `leaky_relu(SLOPE)` (0.01 by default), `softmax`, `log_softmax` (last axis), `abs`, `exp`, `ln`, `sqrt`, `square`, `sin`, `cos` | | dfdx's activations |
///
/// An explicit `IN =>` count is checked against the actual one.
///
/// # What it generates
///
/// For `pub struct LeNet: ...`:
///
/// - `pub struct LeNet<E = f32, D = Cpu>`, `Debug` and `Clone`, whose fields are the layers
///   with parameters (and the named ones). Its documentation holds the layer table. An unnamed
///   layer with parameters is named by kind and ordinal among the layers of its kind, counting
///   from 1: `conv1`, `conv2`, ... for `conv2d`, `conv_transpose1`, ... for
///   `conv_transpose2d`, `linear1`, ... for `linear`, `bn1`, ... for `batch_norm2d`. These names are the keys of saved checkpoints (`conv1.weight`), so they
///   stay put when other layers are named. Stateless layers without a name (activations,
///   pooling, `flatten`, `dropout`) have no field.
/// - `BuildOnDevice` (`dev.build_module::<LeNet, f32>()` gives a `LeNet<f32, Cpu>`) and
///   `TensorCollection`, so that dfdx's optimisers, `alloc_grads`, `num_trainable_params`,
///   `reset_params`, `to_device`, `to_dtype` and safetensors save/load work.
/// - `Module` (`forward`, `try_forward`) and `ModuleMut` (`forward_mut`, `try_forward_mut`) for
///   one image `Tensor<Rank3<C, H, W>, E, D, T>` and a batch `Tensor<(B, Const<C>, Const<H>,
///   Const<W>), E, D, T>` (`B` a `Const` or `usize`), returning `[DIMS]` or `[B, DIMS]`. A
///   tensor of another shape is a type error that names the network and the shapes it takes.
///   A traced input gets its gradient unless the network says `#[cnn(input_grad = false)]`.
///   Without dropout or batch norm, every tape works in both. With them, as in dfdx,
///   `forward_mut` on a traced input trains (dropout applied, batch statistics used and the
///   running ones updated) and `forward` is inference (dropout skipped, running statistics);
///   `forward` then takes any tape with dropout and only an untraced input with batch norm.
/// - `LeNet::PARAMS` (trainable parameters), `LeNet::MACS` (multiply-adds per image: a
///   convolution counts `OUT * OH * OW * (IN / GROUPS) * KH * KW`, a transposed convolution
///   `IN * (OUT / GROUPS) * KH * KW * H * W` (every input pixel through every kernel tap), a
///   linear layer `IN * OUT`, other layers 0), `LeNet::INPUT`, `LeNet::OUTPUT`, and
///   `LeNet::summary()`, a [`Summary`](../cnn/summary/struct.Summary.html) that displays as a
///   table with each layer's output shape, parameters, multiply-adds and receptive field. These
///   are on `LeNet`, the default `LeNet<f32, Cpu>`. The receptive field is `-` after `flatten`,
///   and after a transposed convolution with a stride above 1: its output units lie a fraction
///   of an input pixel apart, and the field one of them sees depends on where it falls, so no
///   one number is right (with stride 1 it is a convolution, and counted as one).
///
/// Each run `conv2d [relu|sigmoid|tanh] [max_pool2d|avg_pool2d]` runs as one fused op (about
/// twice as fast as the three layers).
///
/// # Compile errors
///
/// Each points at the offending tokens and quotes the numbers, e.g.
///
/// ```compile_fail
/// use cnn::prelude::*;
/// cnn! {
///     struct Net: [1, 8, 8] {
///         conv2d(6, kernel = 5), // 8x8 -> 4x4
///         conv2d(16, kernel = 5), // error: kernel 5 does not fit input 4x4 (padding 0, dilation 1)
///     }
/// }
/// # fn main() {}
/// ```
///
/// The rules: a (dilated) kernel fits the padded input, so no output is empty; a transposed
/// convolution's padding leaves some output, and its output padding is smaller than its
/// stride or its dilation (PyTorch's rule); kernel, stride, dilation, groups and out-counts
/// are at least 1; groups divide the in- and out-channels; an explicit `IN =>` count and a
/// declared output shape are the actual ones; convolution, pooling and batch norm take images,
/// so not after `flatten`, and `linear` takes vectors, so needs `flatten` after images;
/// pooling pads at most half its kernel; layers, arguments, options and names are known, given
/// once, and required ones present; `input_grad = false` needs a first `conv2d`; a network is
/// not named `E` or `D`, the struct's type parameters. `tests/ui/` has one case each.
#[proc_macro]
pub fn cnn(input: TokenStream) -> TokenStream {
    let ast = parse_macro_input!(input as ast::Input);
    check::net(&ast)
        .map(|plan| expand::net(&plan))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
