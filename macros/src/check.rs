//! Shapes and rules: the only place that decides. It reads the syntax tree, interprets each
//! layer's arguments, walks the shapes from the input to the output, and returns a [`Plan`] in
//! which every number `expand` writes is already worked out. Errors point at the user's tokens
//! and quote the numbers.
//!
//! Independent mistakes (an unknown layer, an unknown or duplicated argument, a name used twice)
//! are collected and reported together; the shape walk stops at its first error, since every
//! later shape would depend on it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proc_macro2::Span;
use quote::format_ident;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Visibility};

use crate::ast::{self, Arg, Kind, Op, Value};

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
    /// The struct's fields, in layer order.
    pub fields: Vec<Field>,
    /// The forward pass.
    pub steps: Vec<Step>,
    /// What the summary table and the struct's doc show, one row per layer.
    pub rows: Vec<Row>,
    pub params: usize,
    pub non_trainable: usize,
    pub macs: usize,
    pub mode: Mode,
}

/// Whether training (`forward_mut` on a traced input) and inference (`forward`) differ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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
    pub ident: Ident,
    pub layer: FieldLayer,
    /// The row of this layer in `rows`, for the field's doc.
    pub row: usize,
}

pub enum FieldLayer {
    Conv(Conv),
    Linear(Linear),
    BatchNorm {
        channels: usize,
    },
    /// A stateless layer that was given a name.
    Unit(Unit),
    Dropout(f64),
}

impl FieldLayer {
    /// Whether the field holds tensors that the network's `TensorCollection` must visit.
    pub fn has_tensors(&self) -> bool {
        matches!(
            self,
            FieldLayer::Conv(_) | FieldLayer::Linear(_) | FieldLayer::BatchNorm { .. }
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
    /// `Flatten2D<N>`.
    Flatten(usize),
}

/// dfdx's activations, by the keyword that names them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    ReLU,
    /// `leaky_relu(SLOPE)`, slope 0.01 by default as PyTorch's.
    LeakyReLU(f64),
    Sigmoid,
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

/// One step of the forward pass.
pub enum Step {
    /// A `conv2d` with the activation and pooling right after it fused into one pass: this is
    /// the rule the library's `Conv2D::fused` serves (about twice as fast as three layers). Only
    /// `relu`, `sigmoid` and `tanh` fuse; other activations run on their own.
    ///
    /// `input_grad` is false for a conv that is the network's first layer: its input is the
    /// image, whose gradient training never reads, and skipping it saves about a fifth of a
    /// LeNet training step (`Fused::without_input_grad`).
    Conv {
        field: Ident,
        act: Option<Act>,
        pool: Option<Pool>,
        input_grad: bool,
    },
    /// A layer stored in a field that runs the same in training and inference.
    Field(Ident),
    /// A stateless layer without a name, written in place.
    Unit(Unit),
    /// `batch_norm2d`: running statistics in inference, batch statistics in training.
    BatchNorm(Ident),
    /// `dropout(P)`: identity in inference.
    Dropout { field: Option<Ident>, p: f64 },
}

/// One line of the summary table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The layer's field, empty for a stateless layer without a name.
    pub name: String,
    /// The layer as written, normalised: `conv2d(6, kernel=5, padding=2)`.
    pub kind: String,
    pub output: Vec<usize>,
    /// Trainable parameters.
    pub params: usize,
    /// Parameters that the optimiser does not update (batch norm's running statistics).
    pub non_trainable: usize,
    /// Multiply-adds for one image.
    pub macs: usize,
    /// Receptive field of one output unit on the input image, `(h, w)`; `None` after `flatten`.
    pub receptive_field: Option<(usize, usize)>,
}

/// The keywords of every layer, as the "unknown layer" error lists them.
pub const LAYERS: &[&str] = &[
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "flatten",
    "linear",
    "batch_norm2d",
    "dropout",
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "gelu",
    "fast_gelu",
    "softmax",
    "log_softmax",
    "abs",
    "exp",
    "ln",
    "sqrt",
    "square",
    "sin",
    "cos",
];

const ACTIVATIONS: &[(&str, Act)] = &[
    ("relu", Act::ReLU),
    ("sigmoid", Act::Sigmoid),
    ("tanh", Act::Tanh),
    ("gelu", Act::GeLU),
    ("fast_gelu", Act::FastGeLU),
    ("softmax", Act::Softmax),
    ("log_softmax", Act::LogSoftmax),
    ("abs", Act::Abs),
    ("exp", Act::Exp),
    ("ln", Act::Ln),
    ("sqrt", Act::Sqrt),
    ("square", Act::Square),
    ("sin", Act::Sin),
    ("cos", Act::Cos),
];

/// Checks every network of the invocation.
pub fn net(input: &ast::Input) -> syn::Result<Plan<'_>> {
    let mut errors = Errors::default();
    let nets = input
        .nets
        .iter()
        .filter_map(|net| errors.ok(one_net(net)))
        .collect();
    errors.finish(Plan { nets })
}

// ---------------------------------------------------------------------------------------------
// Size arithmetic. The library's `src/shape.rs` has the same formulas; both are tested against
// `tests/shape_cases.in`.

/// Output length along one axis of a convolution or pooling window:
/// `(n + p_begin + p_end - (d*(k-1) + 1)) / s + 1`, rounded down (PyTorch's floor mode).
/// `None` when `k`, `s` or `d` is 0 or when the dilated kernel is longer than the padded input
/// (which is exactly when the output would be empty).
pub fn conv_out(
    n: usize,
    k: usize,
    s: usize,
    p_begin: usize,
    p_end: usize,
    d: usize,
) -> Option<usize> {
    if k == 0 || s == 0 || d == 0 {
        return None;
    }
    let span = d.checked_mul(k - 1)?.checked_add(1)?;
    let padded = n.checked_add(p_begin)?.checked_add(p_end)?;
    padded.checked_sub(span).map(|room| room / s + 1)
}

/// Padding `(begin, end)` of `padding = same` along one axis: the output is `ceil(n / s)`, and
/// an odd total puts the extra row or column at the end (bottom/right), as TensorFlow and Keras.
pub fn same_padding(n: usize, k: usize, s: usize, d: usize) -> (usize, usize) {
    let out = n.div_ceil(s);
    let span = d * (k - 1) + 1;
    let total = ((out - 1) * s + span).saturating_sub(n);
    (total / 2, total - total / 2)
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

fn error(span: Span, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, message)
}

// ---------------------------------------------------------------------------------------------
// One network

fn one_net(net: &ast::Net) -> syn::Result<NetPlan<'_>> {
    let mut errors = Errors::default();

    // The input is one image: `[C, H, W]`, none of them 0.
    let input = errors.ok(input_shape(&net.input));

    // Layers and their arguments, each on its own: every mistake found here is reported.
    let specs: Vec<_> = net
        .body
        .layers
        .iter()
        .map(|layer| errors.ok(spec(layer)))
        .collect();

    // Field names: user-given, or kind and ordinal (`conv1`, `linear2`, `bn1`), which are
    // checkpoint keys: the n-th `conv2d` is `conv{n}` whether or not other layers are named.
    let names = errors.ok(field_names(&net.body, &specs));

    match (
        input,
        specs.into_iter().collect::<Option<Vec<_>>>(),
        names,
        errors.0,
    ) {
        (Some(input), Some(specs), Some(names), None) => walk(net, input, &specs, names),
        (.., Some(error)) => Err(error),
        _ => unreachable!("every missing part comes with its error"),
    }
}

fn input_shape(dims: &ast::Dims) -> syn::Result<[usize; 3]> {
    let values = dims_values(dims)?;
    match values[..] {
        // Rule: every dimension is at least 1.
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        [_, _, _] => Err(error(
            dims.span(),
            format!(
                "input dimensions must be at least 1, not {}",
                fmt_dims(&values)
            ),
        )),
        _ => Err(error(
            dims.span(),
            format!(
                "the input must be one image [C, H, W], not {}",
                fmt_dims(&values)
            ),
        )),
    }
}

fn dims_values(dims: &ast::Dims) -> syn::Result<Vec<usize>> {
    dims.dims.iter().map(|lit| lit.base10_parse()).collect()
}

// ---------------------------------------------------------------------------------------------
// Layers and their arguments

/// A layer with its arguments read and checked on their own (no shapes yet).
struct Spec<'a> {
    op: &'a Op,
    layer: LayerSpec,
}

enum LayerSpec {
    Conv(ConvSpec),
    Pool(PoolKind, PoolSpec),
    Flatten,
    Linear(LinearSpec),
    BatchNorm(Option<Num>),
    Dropout(f64),
    Act(Act),
}

#[derive(Clone, Copy)]
struct Num {
    value: usize,
    span: Span,
}

#[derive(Clone, Copy)]
struct Pair {
    h: usize,
    w: usize,
    span: Span,
}

enum Padding {
    Same,
    Explicit(Pair),
}

struct ConvSpec {
    in_c: Option<Num>,
    out_c: usize,
    kernel: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair,
    groups: Num,
    bias: bool,
}

struct PoolSpec {
    kernel: Pair,
    stride: Pair,
    padding: Pair,
}

struct LinearSpec {
    in_f: Option<Num>,
    out_f: usize,
    bias: bool,
}

fn spec(layer: &ast::Layer) -> syn::Result<Spec<'_>> {
    let Kind::Op(op) = &layer.kind;
    let name = op.ident.to_string();
    let layer = match name.as_str() {
        "conv2d" => LayerSpec::Conv(conv_spec(op)?),
        "max_pool2d" => LayerSpec::Pool(PoolKind::Max, pool_spec(op)?),
        "avg_pool2d" => LayerSpec::Pool(PoolKind::Avg, pool_spec(op)?),
        "linear" => LayerSpec::Linear(linear_spec(op)?),
        "flatten" => {
            Args::read(op, &[], 0).finish()?;
            LayerSpec::Flatten
        }
        "batch_norm2d" => {
            let mut args = Args::read(op, &[], 1);
            let channels = args
                .positional(false)
                .map(|v| num(v, "channels"))
                .transpose();
            let channels = args.errors.ok(channels).flatten();
            args.finish()?;
            LayerSpec::BatchNorm(channels)
        }
        "dropout" => {
            let mut args = Args::read(op, &[], 1);
            let p = args.positional(false).map(probability).transpose();
            let p = args.errors.ok(p).flatten().unwrap_or(0.5);
            args.finish()?;
            LayerSpec::Dropout(p)
        }
        "leaky_relu" => {
            let mut args = Args::read(op, &[], 1);
            let slope = args
                .positional(false)
                .map(|v| float(v, "the slope"))
                .transpose();
            let slope = args.errors.ok(slope).flatten().unwrap_or(0.01);
            args.finish()?;
            LayerSpec::Act(Act::LeakyReLU(slope))
        }
        _ => match ACTIVATIONS.iter().find(|(keyword, _)| *keyword == name) {
            Some((_, act)) => {
                Args::read(op, &[], 0).finish()?;
                LayerSpec::Act(*act)
            }
            // Rule: a layer is one of `LAYERS`.
            None => {
                return Err(error(
                    op.ident.span(),
                    format!(
                        "unknown layer `{name}`; expected one of: {}",
                        LAYERS.join(", ")
                    ),
                ));
            }
        },
    };
    Ok(Spec { op, layer })
}

fn conv_spec(op: &Op) -> syn::Result<ConvSpec> {
    let mut args = Args::read(
        op,
        &["kernel", "stride", "padding", "dilation", "groups", "bias"],
        1,
    );
    let (in_c, out_c) = args.channels("out-channels", "conv2d(OUT, kernel = K)");
    let kernel = args
        .required("kernel", "conv2d(OUT, kernel = K)")
        .map(|v| pair(v, "kernel"));
    let kernel = args.errors.ok(kernel.transpose()).flatten();
    let stride = args.pair_or("stride", 1);
    let dilation = args.pair_or("dilation", 1);
    let padding = match args.named("padding") {
        None => Some(Padding::Explicit(Pair {
            h: 0,
            w: 0,
            span: op.span(),
        })),
        Some(Value::Ident(ident)) if ident == "same" => Some(Padding::Same),
        Some(Value::Ident(ident)) if ident == "valid" => Some(Padding::Explicit(Pair {
            h: 0,
            w: 0,
            span: ident.span(),
        })),
        Some(value @ (Value::Int(_) | Value::Pair { .. })) => args
            .errors
            .ok(pair(value, "padding"))
            .map(Padding::Explicit),
        Some(value) => {
            args.errors.push(error(
                value.span(),
                "expected an integer, a pair `(h, w)`, `same` or `valid` for `padding`",
            ));
            None
        }
    };
    let groups = match args.named("groups") {
        Some(value) => args.errors.ok(num(value, "groups")),
        None => Some(Num {
            value: 1,
            span: op.span(),
        }),
    };
    let bias = args.bool_or("bias", true);
    // Rule: kernel, stride, dilation and groups are at least 1; so are the out-channels.
    for (what, pair) in [
        ("kernel", &kernel),
        ("stride", &stride),
        ("dilation", &dilation),
    ] {
        if let Some(pair) = pair {
            args.at_least_one(what, pair);
        }
    }
    if let Some(groups) = groups.filter(|g| g.value == 0) {
        args.errors
            .push(error(groups.span, "groups must be at least 1, not 0"));
    }
    if let Some(Num { value: 0, span }) = out_c {
        args.errors
            .push(error(span, "out-channels must be at least 1, not 0"));
    }
    args.finish()?;
    let some = "checked by finish";
    Ok(ConvSpec {
        in_c,
        out_c: out_c.expect(some).value,
        kernel: kernel.expect(some),
        stride: stride.expect(some),
        padding: padding.expect(some),
        dilation: dilation.expect(some),
        groups: groups.expect(some),
        bias: bias.expect(some),
    })
}

fn pool_spec(op: &Op) -> syn::Result<PoolSpec> {
    let mut args = Args::read(op, &["kernel", "stride", "padding"], 1);
    let layer = op.ident.to_string();
    let kernel = match args.positional(false) {
        // PyTorch's spelling, `MaxPool2d(2)`: point at the keyword instead.
        Some(value) => {
            let message = format!(
                "{layer} takes no positional arguments; write `kernel = {}`",
                describe_value(value)
            );
            args.errors.push(error(value.span(), message));
            None
        }
        None => args
            .required("kernel", &format!("{layer}(kernel = K)"))
            .map(|v| pair(v, "kernel")),
    };
    let kernel = args.errors.ok(kernel.transpose()).flatten();
    // PyTorch's default: the stride is the kernel.
    let stride = match (args.named("stride"), kernel) {
        (Some(value), _) => args.errors.ok(pair(value, "stride")),
        (None, kernel) => kernel,
    };
    let padding = args.pair_or("padding", 0);
    for (what, pair) in [("kernel", &kernel), ("stride", &stride)] {
        if let Some(pair) = pair {
            args.at_least_one(what, pair);
        }
    }
    // Rule (PyTorch's): pooling pads at most half the kernel, so that every window holds at
    // least one element of the input.
    if let (Some(kernel), Some(padding)) = (kernel, padding) {
        if padding.h > kernel.h / 2 || padding.w > kernel.w / 2 {
            args.errors.push(error(
                padding.span,
                format!(
                    "padding {} is more than half the kernel {} (at most {})",
                    fmt_pair((padding.h, padding.w)),
                    fmt_pair((kernel.h, kernel.w)),
                    fmt_pair((kernel.h / 2, kernel.w / 2)),
                ),
            ));
        }
    }
    args.finish()?;
    let some = "checked by finish";
    Ok(PoolSpec {
        kernel: kernel.expect(some),
        stride: stride.expect(some),
        padding: padding.expect(some),
    })
}

fn linear_spec(op: &Op) -> syn::Result<LinearSpec> {
    let mut args = Args::read(op, &["bias"], 1);
    let (in_f, out_f) = args.channels("out-features", "linear(OUT)");
    let bias = args.bool_or("bias", true);
    if let Some(Num { value: 0, span }) = out_f {
        args.errors
            .push(error(span, "out-features must be at least 1, not 0"));
    }
    args.finish()?;
    let some = "checked by finish";
    Ok(LinearSpec {
        in_f,
        out_f: out_f.expect(some).value,
        bias: bias.expect(some),
    })
}

/// A layer's arguments, read once: unknown and duplicated names and extra positional arguments
/// are errors, collected with the others of the layer.
struct Args<'a> {
    op: &'a Op,
    positional: std::vec::IntoIter<(Option<&'a Value>, &'a Value)>,
    named: BTreeMap<String, &'a Value>,
    errors: Errors,
}

impl<'a> Args<'a> {
    fn read(op: &'a Op, keys: &[&str], max_positional: usize) -> Self {
        let layer = op.ident.to_string();
        let mut errors = Errors::default();
        let mut positional = Vec::new();
        let mut named = BTreeMap::new();
        for arg in op.args() {
            match arg {
                Arg::Named { key, value, .. } => {
                    let name = key.to_string();
                    // Rule: every named argument is one the layer knows, given once.
                    if !keys.contains(&name.as_str()) {
                        let expected = match keys {
                            [] => format!("{layer} takes no named arguments"),
                            _ => format!("expected one of: {}", keys.join(", ")),
                        };
                        errors.push(error(
                            key.span(),
                            format!("unknown argument `{name}` for {layer}; {expected}"),
                        ));
                    } else if named.insert(name.clone(), value).is_some() {
                        errors.push(error(key.span(), format!("duplicate argument `{name}`")));
                    }
                }
                Arg::Positional { from, value } => {
                    if positional.len() == max_positional {
                        let message = match max_positional {
                            0 => format!("{layer} takes no positional arguments"),
                            _ => format!("{layer} takes one positional argument"),
                        };
                        errors.push(syn::Error::new_spanned(arg, message));
                    } else {
                        positional.push((from.as_ref().map(|(from, _)| from), value));
                    }
                }
            }
        }
        Args {
            op,
            positional: positional.into_iter(),
            named,
            errors,
        }
    }

    fn named(&mut self, key: &str) -> Option<&'a Value> {
        self.named.get(key).copied()
    }

    /// The positional argument; `IN =>` is allowed only where `arrow` says so.
    fn positional(&mut self, arrow: bool) -> Option<&'a Value> {
        let (from, value) = self.positional.next()?;
        if let (Some(from), false) = (from, arrow) {
            self.errors.push(error(
                from.span(),
                format!("{} takes no `IN =>` count", self.op.ident),
            ));
        }
        Some(value)
    }

    /// `[IN =>] OUT`: the explicit input count, checked later, and the output count.
    fn channels(&mut self, what: &str, usage: &str) -> (Option<Num>, Option<Num>) {
        let Some((from, value)) = self.positional.next() else {
            self.errors.push(syn::Error::new_spanned(
                self.op,
                format!("missing the {what}, as in `{usage}`"),
            ));
            return (None, None);
        };
        let in_c = from.and_then(|from| self.errors.ok(num(from, "the in-count")));
        (in_c, self.errors.ok(num(value, what)))
    }

    fn required(&mut self, key: &str, usage: &str) -> Option<&'a Value> {
        let value = self.named(key);
        if value.is_none() {
            self.errors.push(syn::Error::new_spanned(
                self.op,
                format!("missing argument `{key}`, as in `{usage}`"),
            ));
        }
        value
    }

    fn pair_or(&mut self, key: &str, default: usize) -> Option<Pair> {
        match self.named(key) {
            Some(value) => self.errors.ok(pair(value, key)),
            None => Some(Pair {
                h: default,
                w: default,
                span: self.op.span(),
            }),
        }
    }

    fn bool_or(&mut self, key: &str, default: bool) -> Option<bool> {
        match self.named(key) {
            Some(Value::Bool(b)) => Some(b.value),
            Some(value) => {
                self.errors.push(error(
                    value.span(),
                    format!("expected `true` or `false` for `{key}`"),
                ));
                None
            }
            None => Some(default),
        }
    }

    fn at_least_one(&mut self, what: &str, pair: &Pair) {
        if pair.h == 0 || pair.w == 0 {
            let got = if pair.h == pair.w {
                pair.h.to_string()
            } else {
                format!("({}, {})", pair.h, pair.w)
            };
            self.errors.push(error(
                pair.span,
                format!("{what} must be at least 1, not {got}"),
            ));
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.errors.finish(())
    }
}

fn num(value: &Value, what: &str) -> syn::Result<Num> {
    match value {
        Value::Int(lit) => Ok(Num {
            value: lit.base10_parse()?,
            span: lit.span(),
        }),
        _ => Err(error(
            value.span(),
            format!("expected an integer for {what}"),
        )),
    }
}

fn pair(value: &Value, what: &str) -> syn::Result<Pair> {
    match value {
        Value::Int(lit) => {
            let n = lit.base10_parse()?;
            Ok(Pair {
                h: n,
                w: n,
                span: lit.span(),
            })
        }
        Value::Pair { h, w, .. } => Ok(Pair {
            h: h.base10_parse()?,
            w: w.base10_parse()?,
            span: value.span(),
        }),
        _ => Err(error(
            value.span(),
            format!("expected an integer or a pair `(h, w)` for `{what}`"),
        )),
    }
}

fn float(value: &Value, what: &str) -> syn::Result<f64> {
    match value {
        Value::Float(lit) => lit.base10_parse(),
        Value::Int(lit) => lit.base10_parse(),
        _ => Err(error(value.span(), format!("expected a number for {what}"))),
    }
}

fn probability(value: &Value) -> syn::Result<f64> {
    let p = float(value, "the dropout probability")?;
    // Rule: a dropout probability is in [0, 1); 1 would zero every activation.
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(error(
            value.span(),
            format!("dropout probability must be in [0, 1), not {p}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Field names

/// The field of each layer: its given name, else kind and ordinal for layers with parameters,
/// else none.
fn field_names(body: &ast::Stack, specs: &[Option<Spec>]) -> syn::Result<Vec<Option<Ident>>> {
    let mut errors = Errors::default();
    let mut ordinals = BTreeMap::<&str, usize>::new();
    let mut names = Vec::new();
    for (layer, spec) in body.layers.iter().zip(specs) {
        let prefix = spec.as_ref().and_then(|spec| match spec.layer {
            LayerSpec::Conv(_) => Some("conv"),
            LayerSpec::Linear(_) => Some("linear"),
            LayerSpec::BatchNorm(_) => Some("bn"),
            _ => None,
        });
        let auto = prefix.map(|prefix| {
            let n = ordinals.entry(prefix).or_default();
            *n += 1;
            format_ident!("{prefix}{n}", span = layer_span(layer))
        });
        names.push(layer.name.clone().or(auto));
    }
    // Rule: field names are unique, given ones included.
    let mut seen = BTreeMap::new();
    for (layer, name) in body.layers.iter().zip(&names) {
        let Some(name) = name else { continue };
        if let Some(first) = seen.insert(name.to_string(), layer) {
            // Point at the layer the user named; if both were, at the second one.
            let (named, other) = if layer.name.is_some() {
                (layer, first)
            } else {
                (first, layer)
            };
            let message = match (&named.name, &other.name) {
                (_, Some(_)) => format!("layer name `{name}` is used twice"),
                _ => format!(
                    "layer name `{name}` is already the default name of another layer (unnamed layers \
                     with parameters are conv1, conv2, ..., linear1, ..., bn1, ... by kind)"
                ),
            };
            errors.push(error(
                named
                    .name
                    .as_ref()
                    .map_or_else(|| layer_span(named), Ident::span),
                message,
            ));
        }
    }
    errors.finish(names)
}

fn layer_span(layer: &ast::Layer) -> Span {
    let Kind::Op(op) = &layer.kind;
    op.ident.span()
}

// ---------------------------------------------------------------------------------------------
// Shapes

#[derive(Clone, Debug, PartialEq, Eq)]
enum Shape {
    Image { c: usize, h: usize, w: usize },
    Flat(usize),
}

impl Shape {
    fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Image { c, h, w } => vec![c, h, w],
            Shape::Flat(n) => vec![n],
        }
    }
}

/// Receptive field `(r_h, r_w)` of one unit and the distance `(j_h, j_w)` between neighbouring
/// units, both in input pixels: `r' = r + (k_eff - 1) * j`, `j' = j * s`.
#[derive(Clone, Copy)]
struct Field2 {
    r: (usize, usize),
    j: (usize, usize),
}

impl Field2 {
    fn through(
        self,
        kernel: (usize, usize),
        dilation: (usize, usize),
        stride: (usize, usize),
    ) -> Self {
        let k_eff = |k: usize, d: usize| d * (k - 1) + 1;
        Field2 {
            r: (
                self.r.0 + (k_eff(kernel.0, dilation.0) - 1) * self.j.0,
                self.r.1 + (k_eff(kernel.1, dilation.1) - 1) * self.j.1,
            ),
            j: (self.j.0 * stride.0, self.j.1 * stride.1),
        }
    }
}

/// A layer with its shapes worked out, before fusion.
struct Placed {
    field: Option<Ident>,
    layer: Placing,
}

enum Placing {
    Conv(Conv),
    Linear(Linear),
    BatchNorm(usize),
    Unit(Unit),
    Dropout(f64),
}

fn walk<'a>(
    net: &'a ast::Net,
    input: [usize; 3],
    specs: &[Spec],
    names: Vec<Option<Ident>>,
) -> syn::Result<NetPlan<'a>> {
    let [c, h, w] = input;
    let mut shape = Shape::Image { c, h, w };
    // What made the current channel or feature count, for "differ from the actual" errors.
    let mut made_by = format!("the network's input {}", fmt_dims(&input));
    let mut field = Some(Field2 {
        r: (1, 1),
        j: (1, 1),
    });
    let mut placed = Vec::new();
    let mut rows = Vec::new();
    let mut mode = Mode::Same;

    for ((layer, spec), name) in net.body.layers.iter().zip(specs).zip(names) {
        let op = spec.op;
        let keyword = op.ident.to_string();
        let label = name
            .as_ref()
            .map_or_else(|| keyword.clone(), Ident::to_string);
        let mut params = 0;
        let mut non_trainable = 0;
        let mut macs = 0;
        let needs_image = |shape: &Shape| match *shape {
            Shape::Image { c, h, w } => Ok((c, h, w)),
            // Rule: convolution, pooling and batch norm work on images, so not after `flatten`.
            Shape::Flat(n) => Err(syn::Error::new_spanned(
                op,
                format!("{keyword} needs an image input [C, H, W], but its input is flat: [{n}]"),
            )),
        };
        let (next, layer_plan) = match &spec.layer {
            LayerSpec::Conv(conv) => {
                let (c, h, w) = needs_image(&shape)?;
                // Rule: an explicit in-channel count is the actual one.
                if let Some(in_c) = conv.in_c.filter(|in_c| in_c.value != c) {
                    return Err(error(
                        in_c.span,
                        format!(
                            "in-channels {} differ from the actual {c} (made by {made_by})",
                            in_c.value
                        ),
                    ));
                }
                // Rule: groups divide both channel counts.
                for (what, n) in [("in-channels", c), ("out-channels", conv.out_c)] {
                    if n % conv.groups.value != 0 {
                        return Err(error(
                            conv.groups.span,
                            format!("groups {} does not divide {what} {n}", conv.groups.value),
                        ));
                    }
                }
                let (k, s, d) = (conv.kernel, conv.stride, conv.dilation);
                let (pad, pad_end) = match conv.padding {
                    Padding::Same => {
                        let (top, bottom) = same_padding(h, k.h, s.h, d.h);
                        let (left, right) = same_padding(w, k.w, s.w, d.w);
                        ((top, left), (bottom, right))
                    }
                    Padding::Explicit(p) => ((p.h, p.w), (p.h, p.w)),
                };
                // Rule: the dilated kernel fits the padded input (else the output is empty).
                let (Some(oh), Some(ow)) = (
                    conv_out(h, k.h, s.h, pad.0, pad_end.0, d.h),
                    conv_out(w, k.w, s.w, pad.1, pad_end.1, d.w),
                ) else {
                    return Err(does_not_fit(op, (h, w), (k.h, k.w), pad, Some((d.h, d.w))));
                };
                let conv = Conv {
                    in_c: c,
                    out_c: conv.out_c,
                    kernel: (k.h, k.w),
                    input: (h, w),
                    output: (oh, ow),
                    stride: (s.h, s.w),
                    pad,
                    pad_end,
                    dilation: (d.h, d.w),
                    groups: conv.groups.value,
                    bias: conv.bias,
                };
                let per_out = (c / conv.groups) * k.h * k.w;
                params = product(layer, &[conv.out_c, per_out])?
                    + if conv.bias { conv.out_c } else { 0 };
                macs = product(layer, &[conv.out_c, oh, ow, per_out])?;
                field = field.map(|f| f.through(conv.kernel, conv.dilation, conv.stride));
                made_by = label.clone();
                (
                    Shape::Image {
                        c: conv.out_c,
                        h: oh,
                        w: ow,
                    },
                    Placing::Conv(conv),
                )
            }
            LayerSpec::Pool(kind, pool) => {
                let (c, h, w) = needs_image(&shape)?;
                let (k, s, p) = (pool.kernel, pool.stride, pool.padding);
                let (Some(oh), Some(ow)) = (
                    conv_out(h, k.h, s.h, p.h, p.h, 1),
                    conv_out(w, k.w, s.w, p.w, p.w, 1),
                ) else {
                    return Err(does_not_fit(op, (h, w), (k.h, k.w), (p.h, p.w), None));
                };
                let pool = Pool {
                    kind: *kind,
                    kernel: (k.h, k.w),
                    input: (h, w),
                    output: (oh, ow),
                    stride: (s.h, s.w),
                    pad: (p.h, p.w),
                };
                field = field.map(|f| f.through(pool.kernel, (1, 1), pool.stride));
                (
                    Shape::Image { c, h: oh, w: ow },
                    Placing::Unit(Unit::Pool(pool)),
                )
            }
            LayerSpec::Flatten => {
                let (c, h, w) = needs_image(&shape)?;
                let n = product(layer, &[c, h, w])?;
                made_by = format!("flatten: {c}x{h}x{w} = {n}");
                field = None;
                (Shape::Flat(n), Placing::Unit(Unit::Flatten(n)))
            }
            LayerSpec::Linear(linear) => {
                // Rule: `linear` works on vectors; images are flattened first.
                let Shape::Flat(n) = shape else {
                    return Err(syn::Error::new_spanned(
                        op,
                        format!(
                            "linear needs a flat input, not {}; add `flatten` before it",
                            fmt_dims(&shape.dims())
                        ),
                    ));
                };
                // Rule: an explicit in-feature count is the actual one.
                if let Some(in_f) = linear.in_f.filter(|in_f| in_f.value != n) {
                    return Err(error(
                        in_f.span,
                        format!(
                            "in-features {} differ from the actual {n} (made by {made_by})",
                            in_f.value
                        ),
                    ));
                }
                params = product(layer, &[n, linear.out_f])?
                    + if linear.bias { linear.out_f } else { 0 };
                macs = product(layer, &[n, linear.out_f])?;
                made_by = label.clone();
                (
                    Shape::Flat(linear.out_f),
                    Placing::Linear(Linear {
                        in_f: n,
                        out_f: linear.out_f,
                        bias: linear.bias,
                    }),
                )
            }
            LayerSpec::BatchNorm(channels) => {
                let (c, _, _) = needs_image(&shape)?;
                if let Some(channels) = channels.filter(|channels| channels.value != c) {
                    return Err(error(
                        channels.span,
                        format!(
                            "channels {} differ from the actual {c} (made by {made_by})",
                            channels.value
                        ),
                    ));
                }
                // Scale and bias train; the running mean and variance do not.
                params = 2 * c;
                non_trainable = 2 * c;
                mode = Mode::BatchNorm;
                (shape.clone(), Placing::BatchNorm(c))
            }
            LayerSpec::Dropout(p) => {
                if mode == Mode::Same {
                    mode = Mode::Dropout;
                }
                (shape.clone(), Placing::Dropout(*p))
            }
            LayerSpec::Act(act) => (shape.clone(), Placing::Unit(Unit::Act(*act))),
        };
        shape = next;

        // Rule: a layer's declared output shape is its actual one.
        if let Some(expect) = &layer.expect {
            let expected = dims_values(expect)?;
            if expected != shape.dims() {
                return Err(error(
                    expect.span(),
                    format!(
                        "output {} differs from the actual {}",
                        fmt_dims(&expected),
                        fmt_dims(&shape.dims())
                    ),
                ));
            }
        }

        rows.push(Row {
            name: name.as_ref().map(Ident::to_string).unwrap_or_default(),
            kind: describe(op),
            output: shape.dims(),
            params,
            non_trainable,
            macs,
            receptive_field: field.map(|f| f.r),
        });
        placed.push(Placed {
            field: name,
            layer: layer_plan,
        });
    }

    // Rule: the network's declared output shape is its actual one.
    let output = shape.dims();
    if let Some(declared) = &net.output {
        let expected = dims_values(declared)?;
        if expected != output {
            return Err(error(
                declared.span(),
                format!(
                    "declared output {} differs from the actual {}",
                    fmt_dims(&expected),
                    fmt_dims(&output)
                ),
            ));
        }
    }

    let total = |f: fn(&Row) -> usize| rows.iter().map(f).try_fold(0usize, usize::checked_add);
    let (Some(params), Some(non_trainable), Some(macs)) = (
        total(|r| r.params),
        total(|r| r.non_trainable),
        total(|r| r.macs),
    ) else {
        return Err(error(
            net.ident.span(),
            "the parameter or multiply-add count overflows usize",
        ));
    };

    let (fields, steps) = fuse(placed);
    Ok(NetPlan {
        attrs: &net.attrs,
        vis: &net.vis,
        ident: &net.ident,
        input,
        input_span: net.input.span(),
        output,
        fields,
        steps,
        rows,
        params,
        non_trainable,
        macs,
        mode,
    })
}

fn does_not_fit(
    op: &Op,
    input: (usize, usize),
    kernel: (usize, usize),
    pad: (usize, usize),
    dilation: Option<(usize, usize)>,
) -> syn::Error {
    let mut message = format!(
        "kernel {} does not fit input {}x{} (padding {}",
        fmt_pair(kernel),
        input.0,
        input.1,
        fmt_pair(pad),
    );
    if let Some(d) = dilation {
        let _ = write!(message, ", dilation {}", fmt_pair(d));
        if d != (1, 1) {
            let spans = (d.0 * (kernel.0 - 1) + 1, d.1 * (kernel.1 - 1) + 1);
            let _ = write!(message, ": the kernel spans {}", fmt_pair(spans));
        }
    }
    message.push(')');
    syn::Error::new_spanned(op, message)
}

fn product(layer: &ast::Layer, factors: &[usize]) -> syn::Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            let Kind::Op(op) = &layer.kind;
            syn::Error::new_spanned(op, "sizes overflow usize")
        })
}

/// Splits the placed layers into the struct's fields and the forward steps, fusing each
/// `conv2d [relu|sigmoid|tanh] [max_pool2d|avg_pool2d]` run into one step.
fn fuse(placed: Vec<Placed>) -> (Vec<Field>, Vec<Step>) {
    let mut fields = Vec::new();
    let mut steps = Vec::new();
    let mut rest = placed.into_iter().enumerate().peekable();
    while let Some((row, Placed { field, layer })) = rest.next() {
        let step = match (layer, field) {
            (Placing::Conv(conv), Some(field)) => {
                fields.push(Field {
                    ident: field.clone(),
                    layer: FieldLayer::Conv(conv),
                    row,
                });
                let act = rest
                    .next_if(|(_, next)| {
                        matches!(
                            next.layer,
                            Placing::Unit(Unit::Act(Act::ReLU | Act::Sigmoid | Act::Tanh))
                        )
                    })
                    .and_then(|(row, next)| match unit_field(&mut fields, row, next) {
                        Unit::Act(act) => Some(act),
                        _ => None,
                    });
                let pool = rest
                    .next_if(|(_, next)| matches!(next.layer, Placing::Unit(Unit::Pool(_))))
                    .and_then(|(row, next)| match unit_field(&mut fields, row, next) {
                        Unit::Pool(pool) => Some(pool),
                        _ => None,
                    });
                // Rule: the first layer does not compute its input's gradient.
                Step::Conv {
                    field,
                    act,
                    pool,
                    input_grad: !steps.is_empty(),
                }
            }
            (Placing::Conv(_), None) => unreachable!("every conv2d has a field"),
            (Placing::Linear(linear), Some(field)) => {
                fields.push(Field {
                    ident: field.clone(),
                    layer: FieldLayer::Linear(linear),
                    row,
                });
                Step::Field(field)
            }
            (Placing::Linear(_), None) => unreachable!("every linear has a field"),
            (Placing::BatchNorm(channels), Some(field)) => {
                fields.push(Field {
                    ident: field.clone(),
                    layer: FieldLayer::BatchNorm { channels },
                    row,
                });
                Step::BatchNorm(field)
            }
            (Placing::BatchNorm(_), None) => unreachable!("every batch_norm2d has a field"),
            (Placing::Dropout(p), field) => {
                if let Some(field) = &field {
                    fields.push(Field {
                        ident: field.clone(),
                        layer: FieldLayer::Dropout(p),
                        row,
                    });
                }
                Step::Dropout { field, p }
            }
            (Placing::Unit(unit), Some(field)) => {
                fields.push(Field {
                    ident: field.clone(),
                    layer: FieldLayer::Unit(unit),
                    row,
                });
                Step::Field(field)
            }
            (Placing::Unit(unit), None) => Step::Unit(unit),
        };
        steps.push(step);
    }
    (fields, steps)
}

/// A stateless layer fused into a conv: it still gets its field when it was named.
fn unit_field(fields: &mut Vec<Field>, row: usize, placed: Placed) -> Unit {
    let Placing::Unit(unit) = placed.layer else {
        unreachable!("fusion takes stateless layers")
    };
    if let Some(ident) = placed.field {
        fields.push(Field {
            ident,
            layer: FieldLayer::Unit(unit.clone()),
            row,
        });
    }
    unit
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// `[16, 5, 5]`
pub fn fmt_dims(dims: &[usize]) -> String {
    let inner: Vec<_> = dims.iter().map(usize::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// `5` for a square window, `3x5` (height x width) otherwise.
fn fmt_pair((h, w): (usize, usize)) -> String {
    if h == w {
        h.to_string()
    } else {
        format!("{h}x{w}")
    }
}

/// The layer as written, normalised: `conv2d(1 => 6, kernel=5, padding=(1, 2))`.
fn describe(op: &Op) -> String {
    let mut out = op.ident.to_string();
    if op.args.as_ref().is_some_and(|args| !args.list.is_empty()) {
        let args: Vec<_> = op
            .args()
            .map(|arg| match arg {
                Arg::Named { key, value, .. } => format!("{key}={}", describe_value(value)),
                Arg::Positional {
                    from: Some((from, _)),
                    value,
                } => {
                    format!("{} => {}", describe_value(from), describe_value(value))
                }
                Arg::Positional { from: None, value } => describe_value(value),
            })
            .collect();
        let _ = write!(out, "({})", args.join(", "));
    }
    out
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::Int(lit) => lit.base10_digits().to_string(),
        Value::Float(lit) => lit.base10_digits().to_string(),
        Value::Bool(lit) => lit.value.to_string(),
        Value::Ident(ident) => ident.to_string(),
        Value::Pair { h, w, .. } => format!("({}, {})", h.base10_digits(), w.base10_digits()),
    }
}

#[cfg(test)]
mod tests;
