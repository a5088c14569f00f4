//! The plan: what `check` decides and `expand` writes. Plain data: every size is a number, every
//! name an identifier; nothing here reports an error or generates code.
//!
//! A network is a tree of *scopes*, each a generated struct: the network itself, every call of a
//! user block, every named group and every `repeat` (with one scope per copy). A scope's fields
//! are the layers with parameters (and named ones) and its child scopes; `residual`, `concat`,
//! `sum`, `scale`, `if` and unnamed groups are control flow, so their layers are fields of the
//! scope they are written in. The forward pass is one tree of [`Step`]s that reaches every layer
//! by its [`Path`] of fields from the network.

use proc_macro2::Span;
use syn::{Attribute, Ident, Visibility};

/// Everything `expand` writes, for every network of the invocation.
pub struct Plan<'a> {
    pub nets: Vec<NetPlan<'a>>,
}

pub struct NetPlan<'a> {
    pub attrs: &'a [Attribute],
    pub vis: &'a Visibility,
    pub ident: &'a Ident,
    /// `[C, H, W]` of one image.
    pub input: [usize; 3],
    /// Where the input shape is written, for type errors about the input.
    pub input_span: Span,
    /// The shape of one output, `[N]` after `flatten`, `[C, H, W]` without.
    pub output: Vec<usize>,
    /// The network struct's own fields, in order.
    pub fields: Vec<Field>,
    /// The structs of the nested scopes (block calls, named groups, repeats), each once:
    /// calls of one block with the same arguments and input share one.
    pub scopes: Vec<Scope>,
    /// The forward pass.
    pub steps: Vec<Step>,
    /// What the summary table and the struct's doc show: one row per layer, and one per block,
    /// group or branch construct before its contents (one level deeper).
    pub rows: Vec<Row>,
    pub params: usize,
    pub non_trainable: usize,
    pub macs: usize,
    pub mode: Mode,
    /// Whether a traced input gets its gradient: false only with `#[cnn(input_grad = false)]`,
    /// which makes the first conv2d skip it.
    pub input_grad: bool,
}

/// A generated struct for a nested scope.
pub struct Scope {
    /// The struct's name, `__{Net}_{what}_{n}`: hidden, and unique within the invocation.
    pub ident: Ident,
    /// A block's doc comments and attributes, for the struct of each of its calls.
    pub attrs: Vec<Attribute>,
    pub fields: Vec<Field>,
    /// What the scope is, for its doc: `Residual(128, stride=2) on [64, 24, 24]`.
    pub doc: String,
}

/// Whether training (`forward_mut` on a traced input) and inference (`forward`) differ.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum Mode {
    /// No dropout, no batch norm: one forward for every tape.
    Same,
    /// Dropout (identity in inference): `forward` takes any tape, `forward_mut` an `OwnedTape`.
    Dropout,
    /// Batch norm (running statistics in inference, batch statistics in training, as dfdx):
    /// `forward` takes a `NoneTape`, `forward_mut` an `OwnedTape`.
    BatchNorm,
}

pub struct Field {
    /// The Rust field: the name, or `_N` for the N-th entry of a group or repeat.
    pub ident: Ident,
    /// Its checkpoint key within the scope: the name, or `N`.
    pub key: String,
    pub ty: FieldTy,
    /// The field's doc line.
    pub doc: String,
}

pub enum FieldTy {
    Layer(FieldLayer),
    /// A nested scope, by its index in [`NetPlan::scopes`].
    Scope(usize),
}

impl Field {
    /// Whether the field holds tensors that the scope's `TensorCollection` must visit (a
    /// nested scope is always visited: it is a collection, possibly empty).
    pub fn has_tensors(&self) -> bool {
        match &self.ty {
            FieldTy::Layer(layer) => layer.has_tensors(),
            FieldTy::Scope(_) => true,
        }
    }
}

pub enum FieldLayer {
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    Linear(Linear),
    /// `batch_norm2d` (`image`) or `batch_norm1d`.
    BatchNorm {
        channels: usize,
        image: bool,
    },
    /// A stateless layer that was given a name.
    Unit(Unit),
    Dropout(f64),
}

impl FieldLayer {
    pub fn has_tensors(&self) -> bool {
        matches!(
            self,
            FieldLayer::Conv(_)
                | FieldLayer::ConvTranspose(_)
                | FieldLayer::Linear(_)
                | FieldLayer::BatchNorm { .. }
        )
    }
}

/// Every const parameter of `::cnn::nn::Conv2D`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv {
    pub in_c: usize,
    pub out_c: usize,
    pub kernel: (usize, usize),
    pub input: (usize, usize),
    pub output: (usize, usize),
    pub stride: (usize, usize),
    /// Top and left padding.
    pub pad: (usize, usize),
    /// Bottom and right padding: `pad` but for `padding = same` with an odd total.
    pub pad_end: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub bias: bool,
}

/// Every const parameter of `::cnn::nn::ConvTranspose2D`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvTranspose {
    pub in_c: usize,
    pub out_c: usize,
    pub kernel: (usize, usize),
    pub input: (usize, usize),
    pub output: (usize, usize),
    pub stride: (usize, usize),
    /// Rows and columns removed from each side of the full output.
    pub pad: (usize, usize),
    /// Extra rows and columns at the bottom and right.
    pub output_pad: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub bias: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linear {
    pub in_f: usize,
    pub out_f: usize,
    pub bias: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// Every const parameter of `::cnn::nn::{MaxPool2D, AvgPool2D}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: (usize, usize),
    pub input: (usize, usize),
    pub output: (usize, usize),
    pub stride: (usize, usize),
    pub pad: (usize, usize),
}

/// A layer without state, so a value that can be written in place.
#[derive(Clone, Debug, PartialEq)]
pub enum Unit {
    Act(Act),
    Pool(Pool),
    /// `global_avg_pool2d`, `global_max_pool2d`: `[C, H, W]` to `[C]`.
    GlobalPool(PoolKind),
    /// `adaptive_avg_pool2d(S)`: `(H, W)` to `(OH, OW)`.
    AdaptiveAvg {
        input: (usize, usize),
        output: (usize, usize),
    },
    /// `Flatten2D<N>`.
    Flatten(usize),
}

/// The activations, by the keyword that names them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    ReLU,
    /// `relu6`: `min(max(x, 0), 6)`.
    ReLU6,
    /// `leaky_relu(SLOPE)`, slope 0.01 by default as PyTorch's.
    LeakyReLU(f64),
    Sigmoid,
    /// `silu` (swish): `x * sigmoid(x)`.
    SiLU,
    Tanh,
    /// `gelu`: the exact GELU, PyTorch's default.
    GeLU,
    /// `fast_gelu`: the tanh approximation.
    FastGeLU,
    Softmax,
    LogSoftmax,
    Abs,
    Exp,
    Ln,
    Sqrt,
    Square,
    Sin,
    Cos,
}

/// The fields from the network to a layer: `b3._0.conv1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path(pub Vec<Ident>);

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Ident::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl PartialEq<str> for Path {
    /// Compares with the dotted form, `"b3._0.conv1"`.
    fn eq(&self, other: &str) -> bool {
        let mut parts = other.split('.');
        self.0
            .iter()
            .all(|ident| parts.next().is_some_and(|p| ident == p))
            && parts.next().is_none()
    }
}

impl PartialEq<&str> for Path {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

/// One step of the forward pass.
pub enum Step {
    /// A `conv2d` with the activation and pooling right after it fused into one pass: this is
    /// the rule the library's `Conv2D::fused` serves (about twice as fast as three layers). Only
    /// `relu`, `sigmoid` and `tanh` fuse; other activations run on their own.
    ///
    /// `input_grad` is false only for the first layer of a network declared with
    /// `#[cnn(input_grad = false)]`: its input is then data whose gradient nobody reads, and
    /// skipping it saves about a fifth of a LeNet training step (`Fused::without_input_grad`).
    /// By default it is true, so that a network placed after another one passes the gradient
    /// back to it, and saliency maps (gradients with respect to the image) work.
    ///
    /// `bn` is a `batch_norm2d` right after the conv (before the activation): in inference it
    /// is folded into the conv's weights (`Fused::folding`); in training, where it needs the
    /// batch's statistics, the conv, the batch norm, the activation and the pool run as layers.
    Conv {
        field: Path,
        bn: Option<Path>,
        act: Option<Act>,
        pool: Option<Pool>,
        input_grad: bool,
    },
    /// A layer stored in a field that runs the same in training and inference (a transposed
    /// conv, a linear layer, a named stateless layer).
    Field(Path),
    /// A stateless layer without a name, written in place.
    Unit(Unit),
    /// `batch_norm2d`/`batch_norm1d`: running statistics in inference, batch statistics in
    /// training. `features` is `Some(N)` for `batch_norm1d`, which trains on batches only (the
    /// batch statistics of one vector are undefined).
    /// `relu` is a ReLU right after it, fused into the same op.
    BatchNorm {
        field: Path,
        features: Option<usize>,
        relu: bool,
    },
    /// `dropout(P)`: identity in inference.
    Dropout { field: Option<Path>, p: f64 },
    /// `body(x) + shortcut(x)`; an empty shortcut is the identity. `relu`: a ReLU right after,
    /// fused into the addition (one pass each way).
    Residual {
        body: Vec<Step>,
        shortcut: Vec<Step>,
        relu: bool,
    },
    /// The branches' outputs stacked along the channel (or feature) axis, `channels` in all.
    Concat {
        branches: Vec<Vec<Step>>,
        channels: usize,
    },
    /// The branches' outputs added; `relu` as for `Residual`.
    Sum {
        branches: Vec<Vec<Step>>,
        relu: bool,
    },
    /// `x * gate(x)`, the gate (one value per channel; `flatten` is `Some(C)` when it gives
    /// `[C, 1, 1]`, flattened to `[C]` first) broadcast over the image.
    Scale {
        gate: Vec<Step>,
        flatten: Option<usize>,
    },
}

/// One line of the summary table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The entry's name in its scope (`conv1`, `0`), empty for a stateless layer without one.
    pub name: String,
    /// The dotted path from the network (`b3.0.conv1`): the checkpoint key prefix of the
    /// layer's tensors; empty when the row has no field.
    pub path: String,
    /// How deep the row is nested: 0 for the network's own entries.
    pub depth: usize,
    /// The layer as written, its expressions worked out: `conv2d(6, kernel=5, padding=2)`.
    pub kind: String,
    pub output: Vec<usize>,
    /// Trainable parameters (of everything inside, for a construct's row).
    pub params: usize,
    /// Parameters that the optimiser does not update (batch norm's running statistics).
    pub non_trainable: usize,
    /// Multiply-adds for one image.
    pub macs: usize,
    /// Receptive field of one output unit on the input image, `(h, w)`; `None` after `flatten`.
    pub receptive_field: Option<(usize, usize)>,
}
