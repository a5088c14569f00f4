//! The `cnn!` macro, re-exported by the `cnn` crate, which documents it.
//!
//! The pipeline: `ast` is the syntax (every node keeps its tokens for spans), `check` the shapes
//! and rules (the only place that decides), `expand` the generated code (`quote!` only).

// The macro must never panic (a panic is "proc macro panicked" with no location) nor compute a
// wrong number silently (a release build of the macro does not check overflow): outside tests,
// arithmetic that can overflow, indexing, and `unwrap`/`expect`/`panic!`/`unreachable!` are
// refused by clippy. Sizes go through `check::size`, which reports an overflow at the user's
// tokens.
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

mod ast;
mod check;
mod expand;
mod fmt;
mod ir;
mod size;

use proc_macro::TokenStream;

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
/// invocation := (block | network)*
/// network    := ATTR* VIS `struct` NAME `:` `[` C `,` H `,` W `]` (`->` dims)? `{` entries `}`
/// block      := ATTR* VIS? `block` NAME `(` (param `,`)* param? `)` `{` entries `}`
/// param      := IDENT (`=` expr)?                     a default makes it optional
/// ATTR       := `#[cnn(` (KEY `=` value `,`)* `)]` | any other outer attribute
/// entries    := (entry `,`)* entry?
/// entry      := (FIELD `:`)? item (`->` dims)?
/// item       := LAYER (`(` args `)`)?                 a layer (table below)
///             | NAME (`(` args `)`)?                  a call of a block
///             | `identity`
///             | `{` entries `}`                       a group (PyTorch's nn.Sequential)
///             | `residual` `{` entries `}` (`shortcut` `{` entries `}`)?   body(x) + shortcut(x)
///             | `concat` `{` branches `}`             the branches' channels, stacked
///             | `sum` `{` branches `}`                the branches, added
///             | `scale` `{` entries `}`               x * gate(x), the gate broadcast over H, W
///             | `repeat` `(` expr `)` `{` entries `}` the entries n times, each copy its own weights
///             | `if` expr `{` entries `}` (`else` `{` entries `}`)?
/// branches   := (entry `,`)* entry                    at least two
/// dims       := `[` INT (`,` INT)* `]`
/// args       := (arg `,`)* arg?
/// arg        := KEY `=` expr | (expr `=>`)? expr
/// expr       := INT | FLOAT | `true` | `false` | IDENT | IDENT `.` (`0` | `1`) | `(` expr `)`
///             | `(` expr `,` expr `)` | expr OP expr
/// OP         := `*` `/` (integers, rounded down), `+` `-`, `==` `!=` `<` `<=` `>` `>=`, `&&`, `||`
///               (binding in that order, tightest first)
/// ```
///
/// - `[C, H, W]` is the shape of one input image; `-> [DIMS]` after it is the network's output
///   shape for one image, optional and checked when given.
/// - `-> [DIMS]` after an entry is its output shape, checked.
/// - `FIELD:` names a layer, a block call, a group or a repeat: it becomes the field `FIELD`
///   (`pub` when the struct is) and the key `FIELD` (below). `residual`, `concat`, `sum`, `scale` and `if` are not fields
///   (their layers are fields of the enclosing scope), so they take no name.
/// - `{ ... }` is a group: a nested `nn.Sequential`, numbered from 0 inside; as one branch of
///   a `concat` or `sum` it is just that branch's stack.
/// - `#[cnn(...)]` holds the macro's options (below); it is read by the macro and not passed on.
///   Other attributes and doc comments pass through to the struct.
///
/// # Blocks and expressions
///
/// A block is a stack with parameters, expanded at each call with the call's arguments
/// (positional in order, or by name; a parameter with a default may be left out) and checked
/// on the call's input, so one block serves every size. Inside a block its parameters and `C`,
/// `H`, `W` (the shape of the block's input at that call) are names; at network level `C`, `H`,
/// `W` are the shape flowing into each entry (of the network, and of its groups, repeats and
/// `if`s), and in a `residual`, `concat`, `sum` or `scale` the shape flowing into it. `c.0`
/// and `c.1` are the parts of a pair
/// argument such as `(96, 128)`. Every expression is worked out at expansion time; the layers
/// still get literal sizes.
///
/// ```
/// use cnn::prelude::*;
/// cnn! {
///     /// d2l 8.6: two 3x3 convolutions with batch norm; a 1x1 convolution on the shortcut
///     /// when the shape changes.
///     block Residual(c, use_1x1conv = false, stride = 1) {
///         residual {
///             conv1: conv2d(c, kernel = 3, padding = 1, stride = stride), bn1: batch_norm2d, relu,
///             conv2: conv2d(c, kernel = 3, padding = 1), bn2: batch_norm2d,
///         } shortcut {
///             if use_1x1conv { conv3: conv2d(c, kernel = 1, stride = stride) }
///         },
///         relu,
///     }
///     /// Squeeze-and-excitation: one weight per channel, from the channels' means.
///     block SqueezeExcite(ratio = 4) {
///         scale { global_avg_pool2d, linear(C / ratio), relu, linear(C), sigmoid }
///     }
///     pub struct SmallResNet: [1, 28, 28] -> [10] {
///         conv2d(32, kernel = 3, padding = 1), batch_norm2d, relu,
///         b2: { Residual(32), Residual(32) },
///         b3: { Residual(64, use_1x1conv = true, stride = 2), SqueezeExcite },
///         concat { global_avg_pool2d, global_max_pool2d },
///         linear(10),
///     }
/// }
/// assert_eq!(SmallResNet::OUTPUT, [10]);
/// let dev = Cpu::default();
/// let model = dev.build_module::<SmallResNet, f32>();
/// // Every layer is reachable by its path of names.
/// let _: &Conv2D<32, 64, 1, 1, 28, 28, 14, 14, 2, 2, 0, 0, 1, 1, 1, 32, true, 0, 0, f32, Cpu> =
///     &model.b3._0.conv3;
/// ```
///
/// # Names, paths and checkpoint keys: PyTorch's
///
/// A network names its tensors as PyTorch names those of the module that mirrors it, so that
/// [`checkpoint::load_pytorch`](../cnn/checkpoint/fn.load_pytorch.html) loads that module's
/// `state_dict` with no key map, and `save_pytorch` writes one that it loads. One rule:
///
/// - the network, a block's body (at each call), a group and a named repeat are each a
///   *scope*: a struct of its own, and a field of the scope around it, like a PyTorch module;
/// - in a scope, every entry takes the next number from 0, as `nn.Sequential` numbers its
///   children: layers with parameters and without (an activation, a pool, `flatten` and
///   `dropout` take a number too), block calls, groups, named ones too (as `append` after
///   `add_module`). An unnamed entry's key is its number (the Rust field `_N`), a named one's
///   its name (an attribute of a PyTorch class, or `add_module(name, ...)`);
/// - `residual`, `shortcut`, `concat`, `sum`, `scale` and `if` are what a PyTorch `forward`
///   does, not modules: their entries take the next numbers of the scope they are in, in the
///   order written, and the group that is one branch of a `concat` or `sum` is just that
///   branch's entries; `identity` takes no number;
/// - an unnamed `repeat(n)` splices its copies' entries in, as `nn.Sequential(*layers)` with
///   `layers` built in a loop; a named one (`net: repeat(n) { ... }`) is an `nn.Sequential`
///   of the copies, each copy the body's one unnamed block call, or else a group of its
///   entries.
///
/// Unnamed stateless layers have no field. Names are unique in their scope. Keys are the
/// dotted paths: `model.net._0.weight` is `net.0.weight`. With the blocks above (and d2l's
/// chapter-8 code for PyTorch's side):
///
/// | construct | `cnn!` | PyTorch | key |
/// |---|---|---|---|
/// | layers | `conv2d(6, kernel = 5), sigmoid, avg_pool2d(kernel = 2), conv2d(16, ...)` | `nn.Sequential(nn.Conv2d(...), nn.Sigmoid(), nn.AvgPool2d(2), nn.Conv2d(...))` | `0.weight`, `3.weight` |
/// | named entry | `net: { ... }`, `conv3: conv2d(...)` | `self.net = ...`, `self.conv3 = ...` | `net.0.weight`, `conv3.weight` |
/// | group | `{ conv2d(...), relu }, { ... }` | `nn.Sequential(nn.Sequential(...), nn.Sequential(...))` | `0.0.weight`, `1.0.weight` |
/// | block | `b2: { Residual(32), Residual(32) }` | `nn.Sequential(Residual(32), Residual(32))`, added as `b2` | `b2.1.conv1.weight` |
/// | residual and shortcut | `residual { conv1: conv2d(...), ... } shortcut { conv3: conv2d(...) }` | `Y = self.bn2(self.conv2(...)); Y += self.conv3(X)` | `conv1.weight`, `conv3.weight` |
/// | concat or sum branches | `concat { identity, { batch_norm2d, relu, conv2d(...) } }` | `torch.cat((X, blk(X)), 1)`, `blk = nn.Sequential(...)` | `0.weight`, `2.weight` |
/// | scale | `scale { gate: { adaptive_avg_pool2d(1), flatten, linear(C / 4), relu, linear(C), sigmoid } }` | `x * self.gate(x)`, `self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(...), ...)` | `gate.2.weight`, `gate.4.weight` |
/// | unnamed repeat | `repeat(2) { conv2d(64, kernel = 3, padding = 1), relu }, max_pool2d(kernel = 2)` | d2l's `vgg_block(2, 64)`: `nn.Sequential(*layers)` | `0.weight`, `2.weight` |
/// | named repeat | `net: repeat(2) { concat { identity, { batch_norm2d, relu, conv2d(...) } } }` | d2l's `DenseBlock`: `self.net = nn.Sequential(conv_block(...), conv_block(...))` | `net.1.2.weight` |
///
/// A wrapper written in `forward` (`self.net(X)`, and no layers of its own) is the named group
/// it holds: d2l's classes keep their layers in `self.net`, so their `cnn!` twins are
/// `pub struct LeNet: [1, 28, 28] -> [10] { net: { ... } }`. One entry is one PyTorch module:
/// `global_avg_pool2d` is one entry where PyTorch writes two (`nn.AdaptiveAvgPool2d(1)`,
/// `nn.Flatten()`), so a twin of such a `Sequential` writes `adaptive_avg_pool2d(1), flatten`.
/// Batch norm's tensors are
/// `weight`, `bias`, `running_mean`, `running_var` and `num_batches_tracked`, as PyTorch's;
/// convolution, transposed convolution and linear layers have PyTorch's `weight` and `bias`
/// in PyTorch's layout. The examples `10-alexnet` to `16-densenet` are d2l's networks written
/// so, and load the book's `state_dict`s. One shape of PyTorch code has no twin: a module
/// called in `forward` around a `torch.cat` in a loop over an `nn.Sequential` (d2l's
/// `DenseBlock`, whose copies are `conv_block` `Sequential`s) is a copy *holding* a block call
/// in `cnn!` (`net.0.0.0.weight`), so the twin writes the `conv_block` as the branch's group
/// (`net.0.0.weight`, as in the table).
///
/// Calls of one block with the same arguments on the same input share one generated struct
/// (hidden from the docs, named `__Net_Block_N`).
///
/// The branches of `concat` and `sum` and the body of `scale` start from the same input; in a
/// `residual` without `shortcut` (or with an empty one) the shortcut is the identity. Gradients
/// flow back through every branch.
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
/// | `global_avg_pool2d`, `global_max_pool2d`: `[C, H, W]` to `[C]` | `nn.AdaptiveAvgPool2d(1)` / `nn.AdaptiveMaxPool2d(1)`, then `nn.Flatten()` | dfdx's `AvgPoolGlobal`, `MaxPoolGlobal` |
/// | `adaptive_avg_pool2d(S)`: `S` a number or a pair, at most the input's size; cell `i` averages rows `floor(i*H/S)..ceil((i+1)*H/S)` | `nn.AdaptiveAvgPool2d` | `cnn::nn::AdaptiveAvgPool2D` |
/// | `batch_norm2d`, `batch_norm2d(C)` | `nn.BatchNorm2d` | dfdx's `BatchNorm2D` |
/// | `batch_norm1d`, `batch_norm1d(N)`: on vectors (after `linear`); trains on batches only | `nn.BatchNorm1d` | dfdx's `BatchNorm1D` |
/// | `dropout(P)`: P 0.5 by default | `nn.Dropout` | dfdx's `Dropout` |
/// | `relu`, `sigmoid`, `tanh`, `gelu` (exact), `fast_gelu` (tanh approximation), `leaky_relu(SLOPE)` (0.01 by default), `softmax`, `log_softmax` (last axis), `abs`, `exp`, `ln`, `sqrt`, `square`, `sin`, `cos` | | dfdx's activations |
/// | `relu6`, `silu` | `nn.ReLU6`, `nn.SiLU` | `cnn::nn::ReLU6`, `cnn::nn::SiLU` |
///
/// A depthwise convolution is `conv2d(C, kernel = 3, padding = 1, groups = C)`, a pointwise one
/// `conv2d(OUT, kernel = 1)`.
///
/// An explicit `IN =>` count is checked against the actual one.
///
/// # What it generates
///
/// For `pub struct LeNet: ...`:
///
/// - `pub struct LeNet<E = f32, D = Cpu>`, `Debug` and `Clone`, whose fields are the layers
///   with parameters, the named ones and the nested scopes (named as above: `_0`, `net`; the
///   paths are the keys of saved checkpoints, `net.0.weight`).
///   Its documentation holds the layer table.
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
/// The summary nests: a block call, group, repeat, residual, shortcut, branch or scale has a
/// row with its output and the totals of what it holds, its contents indented below it; the
/// receptive field after branches is the largest branch's.
///
/// Each run `conv2d [relu|sigmoid|tanh] [max_pool2d|avg_pool2d]` within one stack runs as one
/// fused op (about twice as fast as the three layers); a block, group or branch ends a run.
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
/// not named `E` or `D`, the struct's type parameters. Where shapes meet: a residual's body and
/// shortcut give the same shape (when the body changes it and the shortcut is the identity, the
/// error suggests the 1x1 convolution that fits); the branches of a `concat` give images of one
/// height and width, or all vectors; the branches of a `sum` give one shape; a `scale` gate
/// gives one value per channel, `[C]` or `[C, 1, 1]`; `concat` and `sum` have two branches or
/// more. Blocks: a call names a block of the invocation (the error suggests the closest name),
/// gives each parameter once, every one without a default, and no unknown one; a block does
/// not call itself, directly or through others; a block is not named like a layer, nor
/// defined twice, and no parameter is `C`, `H` or `W`. Expressions: `c.0` takes a part of a
/// pair; nothing divides by zero or goes below zero; an `if` condition is `true` or `false`; a
/// repeat count is at least 1. An error inside a block points at the layer in the block and at
/// the call it was checked for (with the call's input shape), and an error inside a repeat
/// names the repetition. `adaptive_avg_pool2d` does not grow an image; `batch_norm1d` takes
/// vectors. Names: every name in an expression is defined where it is written (a block's
/// parameters, a default only the ones before it, and `C`, `H`, `W`; `same` and `valid` are
/// words for `padding`); a field is not named `_N` (an unnamed entry's) nor `__...` (the
/// macro's); the networks of one invocation have distinct names, none `{Other}Input` or
/// `{Other}TrainInput` (the traits generated for another). Numbers: every count and size the
/// macro works out (parameters, multiply-adds, receptive fields, expressions) fits in `usize`
/// (`i128` in expressions), every float is finite, and every tensor fits in memory (below).
/// `tests/ui/` has one case each.
///
/// # Limits
///
/// So that no input makes the macro (or rustc after it) crash, hang or run out of memory, it
/// refuses, each time with an error at the tokens that pass the limit:
///
/// - brackets nested more than 64 deep, and a network nested more than 32 levels as expanded
///   (groups, block calls, repeats and the other constructs; a block's body is a level inside
///   its call, a named repeat's copies two). Real networks nest 3 to 6 levels. A group, call
///   or repeat is a struct holding the next level's, and 32 keeps them well within rustc's
///   recursion limit (128; `tests/limits.rs` compiles networks at the limit);
/// - more than 10,000 rows in a network's summary (layers, block calls, groups, constructs and
///   copies, as expanded): ten times the largest torchvision classifiers (under 1,000 layers);
///   and more than 50,000 for all the networks of one invocation;
/// - a `repeat` count above 1,000 (real networks repeat a block a few dozen times);
/// - an expression with more than 64 operators and parentheses;
/// - a tensor with more than `isize::MAX / 8` elements (the input image, a layer's output for
///   one image, a weight): more bytes than one allocation can hold, in `f64`.
#[proc_macro]
pub fn cnn(input: TokenStream) -> TokenStream {
    expand(input.into()).into()
}

/// The whole macro on `proc_macro2` tokens, so that tests (and the fuzz test) run it as an
/// ordinary function.
fn expand(input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    front_end(input).unwrap_or_else(syn::Error::into_compile_error)
}

/// The brackets' depth checked, then parse -> check -> expand.
fn front_end(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    ast::check_nesting(&input)?;
    let ast = syn::parse2::<ast::Input>(input)?;
    check::net(&ast).map(|plan| expand::net(&plan))
}

#[cfg(test)]
mod fuzz;
