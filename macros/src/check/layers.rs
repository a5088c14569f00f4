//! Layers: the one keyword table, each layer's arguments, and each layer's shape rule.
//!
//! Adding a layer: a row in [`LAYERS`], a `LayerSpec` variant read in [`spec`], its shape rule
//! in [`place`], and its type in `expand`.

use std::fmt::Write as _;

use super::args::{Args, EvalArg, Num, Pair, float, pair, probability};
use super::{Flow, Shape, error, fmt_dims, fmt_pair};
use crate::ast::Op;
use crate::ir::{Act, Conv, ConvTranspose, Linear, Mode, Pool, PoolKind, Unit};
use crate::size;

/// Every layer keyword, in the order the "unknown layer" error lists them.
pub const LAYERS: &[&str] = &[
    "conv2d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "global_avg_pool2d",
    "global_max_pool2d",
    "adaptive_avg_pool2d",
    "flatten",
    "linear",
    "batch_norm2d",
    "batch_norm1d",
    "dropout",
    "relu",
    "relu6",
    "leaky_relu",
    "sigmoid",
    "silu",
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

/// The activations that take no argument.
const ACTIVATIONS: &[(&str, Act)] = &[
    ("relu", Act::ReLU),
    ("relu6", Act::ReLU6),
    ("sigmoid", Act::Sigmoid),
    ("silu", Act::SiLU),
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

/// A layer with its arguments read and checked on their own (no shapes yet).
pub enum LayerSpec {
    Conv(ConvSpec),
    ConvTranspose(ConvTransposeSpec),
    Pool(PoolKind, PoolSpec),
    GlobalPool(PoolKind),
    AdaptiveAvg(Pair),
    Flatten,
    Linear(LinearSpec),
    /// `batch_norm2d([C])` (`image`) or `batch_norm1d([N])`.
    BatchNorm {
        channels: Option<Num>,
        image: bool,
    },
    Dropout(f64),
    Act(Act),
}

impl LayerSpec {
    /// Whether the layer holds tensors, and so is a field even when unnamed.
    pub fn has_state(&self) -> bool {
        matches!(
            self,
            LayerSpec::Conv(_)
                | LayerSpec::ConvTranspose(_)
                | LayerSpec::Linear(_)
                | LayerSpec::BatchNorm { .. }
        )
    }
}

pub enum Padding {
    Same,
    Explicit(Pair),
}

pub struct ConvSpec {
    in_c: Option<Num>,
    out_c: usize,
    kernel: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair,
    groups: Num,
    bias: bool,
}

pub struct ConvTransposeSpec {
    in_c: Option<Num>,
    out_c: usize,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    output_padding: Pair,
    dilation: Pair,
    groups: Num,
    bias: bool,
}

pub struct PoolSpec {
    kernel: Pair,
    stride: Pair,
    padding: Pair,
}

pub struct LinearSpec {
    in_f: Option<Num>,
    out_f: usize,
    bias: bool,
}

/// Whether `name` is a layer keyword.
pub fn is_layer(name: &str) -> bool {
    LAYERS.contains(&name)
}

/// Reads a layer's arguments. `name` is one of [`LAYERS`].
pub fn spec(op: &Op, args: &[EvalArg]) -> syn::Result<LayerSpec> {
    let name = op.ident.to_string();
    Ok(match name.as_str() {
        "conv2d" => LayerSpec::Conv(conv_spec(op, args)?),
        "conv_transpose2d" => LayerSpec::ConvTranspose(conv_transpose_spec(op, args)?),
        "max_pool2d" => LayerSpec::Pool(PoolKind::Max, pool_spec(op, args)?),
        "avg_pool2d" => LayerSpec::Pool(PoolKind::Avg, pool_spec(op, args)?),
        "global_avg_pool2d" => {
            Args::read(op, args, &[], 0).finish()?;
            LayerSpec::GlobalPool(PoolKind::Avg)
        }
        "global_max_pool2d" => {
            Args::read(op, args, &[], 0).finish()?;
            LayerSpec::GlobalPool(PoolKind::Max)
        }
        "adaptive_avg_pool2d" => {
            let mut a = Args::read(op, args, &[], 1);
            let size = match a.positional(false) {
                Some(value) => a.errors.ok(pair(value, "the output size")),
                None => {
                    a.errors.push(syn::Error::new_spanned(
                        op,
                        "missing the output size, as in `adaptive_avg_pool2d(7)` or `adaptive_avg_pool2d((6, 6))`",
                    ));
                    None
                }
            };
            if let Some(size) = &size {
                a.at_least_one("the output size", size);
            }
            a.finish()?;
            LayerSpec::AdaptiveAvg(size.ok_or_else(|| unread(op))?)
        }
        "linear" => LayerSpec::Linear(linear_spec(op, args)?),
        "flatten" => {
            Args::read(op, args, &[], 0).finish()?;
            LayerSpec::Flatten
        }
        "batch_norm2d" | "batch_norm1d" => {
            let what = if name == "batch_norm2d" {
                "channels"
            } else {
                "features"
            };
            let mut a = Args::read(op, args, &[], 1);
            let channels = a.optional_count(what);
            a.finish()?;
            LayerSpec::BatchNorm {
                channels,
                image: name == "batch_norm2d",
            }
        }
        "dropout" => {
            let mut a = Args::read(op, args, &[], 1);
            let p = a.positional(false).map(probability).transpose();
            let p = a.errors.ok(p).flatten().unwrap_or(0.5);
            a.finish()?;
            LayerSpec::Dropout(p)
        }
        "leaky_relu" => {
            let mut a = Args::read(op, args, &[], 1);
            let slope = a
                .positional(false)
                .map(|v| float(v, "the slope"))
                .transpose();
            let slope = a.errors.ok(slope).flatten().unwrap_or(0.01);
            a.finish()?;
            LayerSpec::Act(Act::LeakyReLU(slope))
        }
        _ => {
            let (_, act) = ACTIVATIONS
                .iter()
                .find(|(keyword, _)| *keyword == name)
                .ok_or_else(|| error(op.ident.span(), format!("unknown layer `{name}`")))?;
            Args::read(op, args, &[], 0).finish()?;
            LayerSpec::Act(*act)
        }
    })
}

fn conv_spec(op: &Op, args: &[EvalArg]) -> syn::Result<ConvSpec> {
    let mut a = Args::read(
        op,
        args,
        &["kernel", "stride", "padding", "dilation", "groups", "bias"],
        1,
    );
    let (in_c, out_c) = a.channels("out-channels", "conv2d(OUT, kernel = K)");
    let kernel = a
        .required("kernel", "conv2d(OUT, kernel = K)")
        .map(|v| pair(v, "kernel"));
    let kernel = a.errors.ok(kernel.transpose()).flatten();
    let stride = a.pair_or("stride", 1);
    let dilation = a.pair_or("dilation", 1);
    let padding = match a.named("padding") {
        None => Some(Padding::Explicit(Pair {
            h: 0,
            w: 0,
            span: op.ident.span(),
        })),
        Some(value) => match &value.val {
            super::expr::Val::Word(word) if word == "same" => Some(Padding::Same),
            super::expr::Val::Word(word) if word == "valid" => Some(Padding::Explicit(Pair {
                h: 0,
                w: 0,
                span: value.span,
            })),
            super::expr::Val::Int(_) | super::expr::Val::Pair(..) => {
                a.errors.ok(pair(value, "padding")).map(Padding::Explicit)
            }
            _ => {
                a.errors.push(error(
                    value.span,
                    "expected an integer, a pair `(h, w)`, `same` or `valid` for `padding`",
                ));
                None
            }
        },
    };
    let groups = a.groups();
    let bias = a.bool_or("bias", true);
    a.conv_at_least_one([kernel, stride, dilation], groups, out_c);
    a.finish()?;
    // (Each `None` had its error, so after `finish` all are `Some`.)
    let (
        Some(out_c),
        Some(kernel),
        Some(stride),
        Some(padding),
        Some(dilation),
        Some(groups),
        Some(bias),
    ) = (out_c, kernel, stride, padding, dilation, groups, bias)
    else {
        return Err(unread(op));
    };
    Ok(ConvSpec {
        in_c,
        out_c: out_c.value,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        bias,
    })
}

fn conv_transpose_spec(op: &Op, args: &[EvalArg]) -> syn::Result<ConvTransposeSpec> {
    const USAGE: &str = "conv_transpose2d(OUT, kernel = K)";
    let mut a = Args::read(
        op,
        args,
        &[
            "kernel",
            "stride",
            "padding",
            "output_padding",
            "dilation",
            "groups",
            "bias",
        ],
        1,
    );
    let (in_c, out_c) = a.channels("out-channels", USAGE);
    let kernel = a.required("kernel", USAGE).map(|v| pair(v, "kernel"));
    let kernel = a.errors.ok(kernel.transpose()).flatten();
    let stride = a.pair_or("stride", 1);
    let padding = a.pair_or("padding", 0);
    let output_padding = a.pair_or("output_padding", 0);
    let dilation = a.pair_or("dilation", 1);
    let groups = a.groups();
    let bias = a.bool_or("bias", true);
    a.conv_at_least_one([kernel, stride, dilation], groups, out_c);
    // Rule (PyTorch's): along each axis the output padding is smaller than the stride or the
    // dilation; beyond that its rows would lie past every kernel tap.
    if let (Some(op), Some(s), Some(d)) = (output_padding, stride, dilation) {
        let fits = |op: usize, s: usize, d: usize| op < s || op < d;
        if !fits(op.h, s.h, d.h) || !fits(op.w, s.w, d.w) {
            a.errors.push(error(
                op.span,
                format!(
                    "output_padding {} must be smaller than the stride {} or the dilation {}",
                    fmt_pair((op.h, op.w)),
                    fmt_pair((s.h, s.w)),
                    fmt_pair((d.h, d.w)),
                ),
            ));
        }
    }
    a.finish()?;
    let (
        Some(out_c),
        Some(kernel),
        Some(stride),
        Some(padding),
        Some(output_padding),
        Some(dilation),
        Some(groups),
        Some(bias),
    ) = (
        out_c,
        kernel,
        stride,
        padding,
        output_padding,
        dilation,
        groups,
        bias,
    )
    else {
        return Err(unread(op));
    };
    Ok(ConvTransposeSpec {
        in_c,
        out_c: out_c.value,
        kernel,
        stride,
        padding,
        output_padding,
        dilation,
        groups,
        bias,
    })
}

fn pool_spec(op: &Op, args: &[EvalArg]) -> syn::Result<PoolSpec> {
    let mut a = Args::read(op, args, &["kernel", "stride", "padding"], 1);
    let layer = op.ident.to_string();
    let kernel = match a.positional(false) {
        // PyTorch's spelling, `MaxPool2d(2)`: point at the keyword instead.
        Some(value) => {
            let message = format!(
                "{layer} takes no positional arguments; write `kernel = {}`",
                value.val
            );
            a.errors.push(error(value.span, message));
            None
        }
        None => a
            .required("kernel", &format!("{layer}(kernel = K)"))
            .map(|v| pair(v, "kernel")),
    };
    let kernel = a.errors.ok(kernel.transpose()).flatten();
    // PyTorch's default: the stride is the kernel.
    let stride = match (a.named("stride"), kernel) {
        (Some(value), _) => a.errors.ok(pair(value, "stride")),
        (None, kernel) => kernel,
    };
    let padding = a.pair_or("padding", 0);
    for (what, pair) in [("kernel", &kernel), ("stride", &stride)] {
        if let Some(pair) = pair {
            a.at_least_one(what, pair);
        }
    }
    // Rule (PyTorch's): pooling pads at most half the kernel, so that every window holds at
    // least one element of the input.
    if let (Some(kernel), Some(padding)) = (kernel, padding) {
        if padding.h > kernel.h / 2 || padding.w > kernel.w / 2 {
            a.errors.push(error(
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
    a.finish()?;
    let (Some(kernel), Some(stride), Some(padding)) = (kernel, stride, padding) else {
        return Err(unread(op));
    };
    Ok(PoolSpec {
        kernel,
        stride,
        padding,
    })
}

fn linear_spec(op: &Op, args: &[EvalArg]) -> syn::Result<LinearSpec> {
    let mut a = Args::read(op, args, &["bias"], 1);
    let (in_f, out_f) = a.channels("out-features", "linear(OUT)");
    let bias = a.bool_or("bias", true);
    if let Some(Num { value: 0, span }) = out_f {
        a.errors
            .push(error(span, "out-features must be at least 1, not 0"));
    }
    a.finish()?;
    let (Some(out_f), Some(bias)) = (out_f, bias) else {
        return Err(unread(op));
    };
    Ok(LinearSpec {
        in_f,
        out_f: out_f.value,
        bias,
    })
}

// ---------------------------------------------------------------------------------------------
// Shape rules

/// A layer placed in the flow: what it is with every size known, and what it costs.
pub enum Placing {
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    Linear(Linear),
    BatchNorm { channels: usize, image: bool },
    Unit(Unit),
    Dropout(f64),
}

pub struct Placed {
    pub placing: Placing,
    pub params: usize,
    pub non_trainable: usize,
    pub macs: usize,
}

/// Works out the layer's output from `flow` (updated in place: shape, receptive field, what
/// made the count, mode). `label` names the layer in later "made by" messages, `text` (the
/// layer as written, its expressions worked out) in errors about its sizes.
pub fn place(
    op: &Op,
    spec: &LayerSpec,
    flow: &mut Flow,
    shape: Shape,
    label: &str,
    text: &str,
) -> syn::Result<Placed> {
    let keyword = op.ident.to_string();
    let span = syn::spanned::Spanned::span(op);
    let params_of = format!("the parameter count of `{text}`");
    let macs_of = format!("the multiply-add count of `{text}`");
    let weight_of = format!("the weight of `{text}`");
    let needs_image = |shape: &Shape| match *shape {
        Shape::Image { c, h, w } => Ok((c, h, w)),
        // Rule: convolution, pooling and 2-d batch norm work on images, so not after `flatten`.
        Shape::Flat(n) => Err(syn::Error::new_spanned(
            op,
            format!("{keyword} needs an image input [C, H, W], but its input is flat: [{n}]"),
        )),
    };
    let mut params = 0;
    let mut non_trainable = 0;
    let mut macs = 0;
    let (next, placing) = match spec {
        LayerSpec::Conv(conv) => {
            let (c, h, w) = needs_image(&shape)?;
            channels_fit(conv.in_c, c, conv.out_c, conv.groups, &flow.made_by)?;
            let (k, s, d) = (conv.kernel, conv.stride, conv.dilation);
            let (pad, pad_end) = match conv.padding {
                Padding::Same => {
                    let (Some((top, bottom)), Some((left, right))) = (
                        super::same_padding(h, k.h, s.h, d.h),
                        super::same_padding(w, k.w, s.w, d.w),
                    ) else {
                        return Err(syn::Error::new_spanned(
                            op,
                            format!(
                                "`padding = same` overflows for input {h}x{w}: kernel {}, \
                                 stride {}, dilation {}",
                                fmt_pair((k.h, k.w)),
                                fmt_pair((s.h, s.w)),
                                fmt_pair((d.h, d.w))
                            ),
                        ));
                    };
                    ((top, left), (bottom, right))
                }
                Padding::Explicit(p) => ((p.h, p.w), (p.h, p.w)),
            };
            // Rule: the dilated kernel fits the padded input (else the output is empty).
            let (Some(oh), Some(ow)) = (
                super::conv_out(h, k.h, s.h, pad.0, pad_end.0, d.h),
                super::conv_out(w, k.w, s.w, pad.1, pad_end.1, d.w),
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
            // weight: (OUT, IN / G, KH, KW)
            let per_group = size::per_group(c, conv.groups);
            let weight = size::elements(&weight_of, span, &[conv.out_c, per_group, k.h, k.w])?;
            let bias = if conv.bias { conv.out_c } else { 0 };
            params = size::sum(&params_of, span, &[weight, bias])?;
            macs = size::product(&macs_of, span, &[conv.out_c, oh, ow, per_group, k.h, k.w])?;
            flow.through(span, conv.kernel, conv.dilation, conv.stride)?;
            flow.made_by = label.to_string();
            (
                Shape::Image {
                    c: conv.out_c,
                    h: oh,
                    w: ow,
                },
                Placing::Conv(conv),
            )
        }
        LayerSpec::ConvTranspose(t) => {
            let (c, h, w) = needs_image(&shape)?;
            channels_fit(t.in_c, c, t.out_c, t.groups, &flow.made_by)?;
            let (k, s, p, op_, d) = (t.kernel, t.stride, t.padding, t.output_padding, t.dilation);
            // Rule: the padding leaves some output (the spec checked the other ways the
            // formula can fail).
            let (Some(oh), Some(ow)) = (
                super::conv_transpose_out(h, k.h, s.h, p.h, op_.h, d.h),
                super::conv_transpose_out(w, k.w, s.w, p.w, op_.w, d.w),
            ) else {
                let (Some(full_h), Some(full_w)) = (
                    super::conv_transpose_full(h, k.h, s.h, op_.h, d.h),
                    super::conv_transpose_full(w, k.w, s.w, op_.w, d.w),
                ) else {
                    return Err(syn::Error::new_spanned(
                        op,
                        format!(
                            "the output of `{text}` overflows: (n - 1)*stride + dilation*(kernel - 1) \
                             + output_padding + 1 on input {h}x{w} is more than usize holds"
                        ),
                    ));
                };
                let twice = |p: usize| {
                    p.checked_mul(2)
                        .map_or_else(|| format!("2 x {p}"), |p| p.to_string())
                };
                let off = if p.h == p.w {
                    twice(p.h)
                } else {
                    format!("{}x{}", twice(p.h), twice(p.w))
                };
                return Err(error(
                    p.span,
                    format!(
                        "padding {} leaves no output: input {h}x{w} gives {}x{} before padding \
                         (kernel {}, stride {}, dilation {}, output_padding {}), and padding takes off {}",
                        fmt_pair((p.h, p.w)),
                        full_h,
                        full_w,
                        fmt_pair((k.h, k.w)),
                        fmt_pair((s.h, s.w)),
                        fmt_pair((d.h, d.w)),
                        fmt_pair((op_.h, op_.w)),
                        off,
                    ),
                ));
            };
            let t = ConvTranspose {
                in_c: c,
                out_c: t.out_c,
                kernel: (k.h, k.w),
                input: (h, w),
                output: (oh, ow),
                stride: (s.h, s.w),
                pad: (p.h, p.w),
                output_pad: (op_.h, op_.w),
                dilation: (d.h, d.w),
                groups: t.groups.value,
                bias: t.bias,
            };
            // Every input pixel scatters into OUT / G channels through every kernel tap:
            // PyTorch's weight (IN, OUT / G, KH, KW) once per input pixel.
            // weight: (IN, OUT / G, KH, KW)
            let per_group = size::per_group(t.out_c, t.groups);
            let weight = size::elements(&weight_of, span, &[c, per_group, k.h, k.w])?;
            let bias = if t.bias { t.out_c } else { 0 };
            params = size::sum(&params_of, span, &[weight, bias])?;
            macs = size::product(&macs_of, span, &[c, per_group, k.h, k.w, h, w])?;
            // Receptive field: with stride 1 a transposed conv is a conv (kernel flipped,
            // padding d*(k-1) - p), so the conv rule holds exactly. With a larger stride its
            // output units are 1/s input pixels apart, and the extent that one unit sees
            // depends on where it falls between input pixels; no single integer is right,
            // so the column shows `-` from there on (as after `flatten`).
            if t.stride == (1, 1) {
                flow.through(span, t.kernel, t.dilation, (1, 1))?;
            } else {
                flow.field = None;
            }
            flow.made_by = label.to_string();
            (
                Shape::Image {
                    c: t.out_c,
                    h: oh,
                    w: ow,
                },
                Placing::ConvTranspose(t),
            )
        }
        LayerSpec::Pool(kind, pool) => {
            let (c, h, w) = needs_image(&shape)?;
            let (k, s, p) = (pool.kernel, pool.stride, pool.padding);
            let (Some(oh), Some(ow)) = (
                super::conv_out(h, k.h, s.h, p.h, p.h, 1),
                super::conv_out(w, k.w, s.w, p.w, p.w, 1),
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
            flow.through(span, pool.kernel, (1, 1), pool.stride)?;
            (
                Shape::Image { c, h: oh, w: ow },
                Placing::Unit(Unit::Pool(pool)),
            )
        }
        LayerSpec::GlobalPool(kind) => {
            let (c, h, w) = needs_image(&shape)?;
            // Every output sees the whole image.
            flow.through(span, (h, w), (1, 1), (h, w))?;
            (Shape::Flat(c), Placing::Unit(Unit::GlobalPool(*kind)))
        }
        LayerSpec::AdaptiveAvg(size) => {
            let (c, h, w) = needs_image(&shape)?;
            // Rule: every output cell averages at least one input pixel (PyTorch allows more
            // cells than pixels by repeating pixels; that upsamples, and is left out).
            if size.h > h || size.w > w {
                return Err(error(
                    size.span,
                    format!(
                        "output size {} is larger than the input {h}x{w}; adaptive_avg_pool2d \
                         shrinks an image (use conv_transpose2d to grow one)",
                        fmt_pair((size.h, size.w))
                    ),
                ));
            }
            // PyTorch's windows: rows floor(i*H/OH) .. ceil((i+1)*H/OH); the largest, worked
            // out without a table of them (`size::adaptive_window`).
            let window = (
                size::adaptive_window(h, size.h),
                size::adaptive_window(w, size.w),
            );
            let stride = (size::per_group(h, size.h), size::per_group(w, size.w));
            flow.through(span, window, (1, 1), stride)?;
            (
                Shape::Image {
                    c,
                    h: size.h,
                    w: size.w,
                },
                Placing::Unit(Unit::AdaptiveAvg {
                    input: (h, w),
                    output: (size.h, size.w),
                }),
            )
        }
        LayerSpec::Flatten => {
            let (c, h, w) = needs_image(&shape)?;
            let n = size::elements(format_args!("the output of `{text}`"), span, &[c, h, w])?;
            flow.made_by = format!("flatten: {c}x{h}x{w} = {n}");
            flow.field = None;
            (Shape::Flat(n), Placing::Unit(Unit::Flatten(n)))
        }
        LayerSpec::Linear(linear) => {
            // Rule: `linear` works on vectors; images are flattened first.
            let Shape::Flat(n) = shape else {
                let hint = match shape {
                    Shape::Image { h: 1, w: 1, .. } => {
                        "; add `flatten` (or use global_avg_pool2d) before it"
                    }
                    _ => "; add `flatten` before it",
                };
                return Err(syn::Error::new_spanned(
                    op,
                    format!(
                        "linear needs a flat input, not {}{hint}",
                        fmt_dims(&shape.dims())
                    ),
                ));
            };
            // Rule: an explicit in-feature count is the actual one.
            if let Some(in_f) = linear.in_f.filter(|in_f| in_f.value != n) {
                return Err(error(
                    in_f.span,
                    format!(
                        "in-features {} differ from the actual {n} (made by {})",
                        in_f.value, flow.made_by
                    ),
                ));
            }
            // weight: (OUT, IN)
            let weight = size::elements(&weight_of, span, &[linear.out_f, n])?;
            let bias = if linear.bias { linear.out_f } else { 0 };
            params = size::sum(&params_of, span, &[weight, bias])?;
            macs = weight;
            flow.made_by = label.to_string();
            (
                Shape::Flat(linear.out_f),
                Placing::Linear(Linear {
                    in_f: n,
                    out_f: linear.out_f,
                    bias: linear.bias,
                }),
            )
        }
        LayerSpec::BatchNorm { channels, image } => {
            let c = match (&shape, image) {
                (Shape::Image { c, .. }, true) | (Shape::Flat(c), false) => *c,
                (Shape::Flat(_), true) => needs_image(&shape)?.0,
                (Shape::Image { .. }, false) => {
                    // Rule: batch_norm1d normalises features, after `linear`.
                    return Err(syn::Error::new_spanned(
                        op,
                        format!(
                            "batch_norm1d needs a flat input [N], not {}; use batch_norm2d on images",
                            fmt_dims(&shape.dims())
                        ),
                    ));
                }
            };
            let what = if *image { "channels" } else { "features" };
            if let Some(channels) = channels.filter(|channels| channels.value != c) {
                return Err(error(
                    channels.span,
                    format!(
                        "{what} {} differ from the actual {c} (made by {})",
                        channels.value, flow.made_by
                    ),
                ));
            }
            // Scale and bias train; the running mean and variance do not.
            params = size::product(&params_of, span, &[2, c])?;
            non_trainable = params;
            flow.mode = flow.mode.max(Mode::BatchNorm);
            (
                shape.clone(),
                Placing::BatchNorm {
                    channels: c,
                    image: *image,
                },
            )
        }
        LayerSpec::Dropout(p) => {
            flow.mode = flow.mode.max(Mode::Dropout);
            (shape.clone(), Placing::Dropout(*p))
        }
        LayerSpec::Act(act) => (shape.clone(), Placing::Unit(Unit::Act(*act))),
    };
    // Rule: the layer's output fits in a tensor.
    size::elements(
        format_args!("the output {} of `{text}`", fmt_dims(&next.dims())),
        span,
        &next.dims(),
    )?;
    flow.shape = Some(next);
    Ok(Placed {
        placing,
        params,
        non_trainable,
        macs,
    })
}

/// The error for arguments that were not all read although none was reported (which `Args`
/// rules out: every argument it leaves `None` has its error).
fn unread(op: &Op) -> syn::Error {
    syn::Error::new_spanned(
        op,
        format!("the arguments of {} could not be read", op.ident),
    )
}

/// Rule: an explicit in-channel count is the actual one, and groups divide both channel counts.
fn channels_fit(
    explicit: Option<Num>,
    in_c: usize,
    out_c: usize,
    groups: Num,
    made_by: &str,
) -> syn::Result<()> {
    if let Some(explicit) = explicit.filter(|n| n.value != in_c) {
        return Err(error(
            explicit.span,
            format!(
                "in-channels {} differ from the actual {in_c} (made by {made_by})",
                explicit.value
            ),
        ));
    }
    for (what, n) in [("in-channels", in_c), ("out-channels", out_c)] {
        if n.checked_rem(groups.value) != Some(0) {
            return Err(error(
                groups.span,
                format!("groups {} does not divide {what} {n}", groups.value),
            ));
        }
    }
    Ok(())
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
            match (size::dilated(kernel.0, d.0), size::dilated(kernel.1, d.1)) {
                (Some(h), Some(w)) => {
                    let _ = write!(message, ": the kernel spans {}", fmt_pair((h, w)));
                }
                _ => message.push_str(": the dilated kernel spans more than usize holds"),
            }
        }
    }
    message.push(')');
    syn::Error::new_spanned(op, message)
}

/// The closest of `names` to `name`, when it is close enough to be a typo. (Names longer than
/// any layer or block by far get no suggestion: the distance takes their lengths' product.)
pub fn closest<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.len() / 3).max(1);
    if name.len() > 256 {
        return None;
    }
    names
        .into_iter()
        .filter(|candidate| candidate.len().abs_diff(name.len()) <= limit)
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, ignoring case: one row of the table at a time.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        // `diag`, `up` and `left`: the cells above-left, above and left of the one computed.
        let mut diag = i;
        let mut left = i.saturating_add(1);
        let mut next = Vec::with_capacity(row.len());
        next.push(left);
        for (cb, &up) in b.iter().zip(row.iter().skip(1)) {
            let cell = diag
                .saturating_add(usize::from(ca != cb))
                .min(up.saturating_add(1))
                .min(left.saturating_add(1));
            next.push(cell);
            (diag, left) = (up, cell);
        }
        row = next;
    }
    row.last().copied().unwrap_or(0)
}
