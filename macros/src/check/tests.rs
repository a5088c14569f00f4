//! The checker on its own: the size arithmetic against the shared table, the plans it makes
//! (fields, fusion, totals), and the text of every error.

use super::*;
use crate::ast::Input;
use crate::ir::*;

fn plan_of(src: &str, f: impl FnOnce(&NetPlan)) {
    let input: Input = syn::parse_str(src).expect("parses");
    let plan = net(&input).unwrap_or_else(|e| panic!("checks: {e}"));
    f(&plan.nets[0]);
}

/// Every error message of a failing invocation, in order.
fn errors(src: &str) -> Vec<String> {
    let input: Input = match syn::parse_str(src) {
        Ok(input) => input,
        Err(e) => return e.into_iter().map(|e| e.to_string()).collect(),
    };
    match net(&input) {
        Ok(_) => panic!("expected an error from {src}"),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

fn error(src: &str) -> String {
    let all = errors(src);
    assert_eq!(all.len(), 1, "one error expected: {all:?}");
    all.into_iter().next().unwrap()
}

fn stack(layers: &str) -> String {
    format!("struct N: [1, 28, 28] {{ {layers} }}")
}

const LENET: &str = "
    pub struct LeNet: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }";

// ---------------------------------------------------------------------------------------------
// Arithmetic

/// The table the library's `shape::conv_out` is tested against too.
#[test]
fn conv_out_matches_the_shared_table() {
    let table = include_str!("../../../tests/shape_cases.in");
    let mut cases = 0;
    for line in table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (args, out) = line.split_once("->").expect("`n k s p d -> out`");
        let args: Vec<usize> = args
            .split_whitespace()
            .map(|a| a.parse().expect("a number"))
            .collect();
        let out: usize = out.trim().parse().expect("a number");
        let [n, k, s, p, d] = args[..] else {
            panic!("five numbers before `->`: {line}")
        };
        assert_eq!(conv_out(n, k, s, p, p, d).unwrap_or(0), out, "{line}");
        cases += 1;
    }
    assert!(cases >= 20, "only {cases} cases read");
}

/// The table the library's `shape::conv_transpose_out` is tested against too.
#[test]
fn conv_transpose_out_matches_the_shared_table() {
    let table = include_str!("../../../tests/conv_transpose_cases.in");
    let mut cases = 0;
    for line in table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (args, out) = line.split_once("->").expect("`n k s p op d -> out`");
        let args: Vec<usize> = args
            .split_whitespace()
            .map(|a| a.parse().expect("a number"))
            .collect();
        let out: usize = out.trim().parse().expect("a number");
        let [n, k, s, p, op, d] = args[..] else {
            panic!("six numbers before `->`: {line}")
        };
        assert_eq!(
            conv_transpose_out(n, k, s, p, op, d).unwrap_or(0),
            out,
            "{line}"
        );
        cases += 1;
    }
    assert!(cases >= 15, "only {cases} cases read");
}

/// `padding = same` gives `ceil(n / s)`, with the odd pixel at the end.
#[test]
fn same_padding_gives_ceil() {
    for n in 1..20 {
        for k in 1..8 {
            for s in 1..5 {
                for d in 1..4 {
                    let (begin, end) = same_padding(n, k, s, d).expect("fits");
                    assert!(
                        begin == end || begin + 1 == end,
                        "n {n} k {k} s {s} d {d}: {begin} {end}"
                    );
                    assert_eq!(
                        conv_out(n, k, s, begin, end, d),
                        Some(n.div_ceil(s)),
                        "n {n} k {k} s {s} d {d}"
                    );
                }
            }
        }
    }
    // TensorFlow's example: 5 pixels, kernel 2, stride 1 -> 1 pixel of padding, at the end.
    assert_eq!(same_padding(5, 2, 1, 1), Some((0, 1)));
    assert_eq!(same_padding(28, 5, 1, 1), Some((2, 2)));
}

// ---------------------------------------------------------------------------------------------
// Plans

#[test]
fn lenet_plan() {
    plan_of(LENET, |net| {
        assert_eq!(net.input, [1, 28, 28]);
        assert_eq!(net.output, [10]);
        assert_eq!(net.params, 61_706);
        assert_eq!(net.non_trainable, 0);
        assert_eq!(net.macs, 117_600 + 240_000 + 48_000 + 10_080 + 840);
        assert_eq!(net.mode, Mode::Same);
        let names: Vec<_> = net.fields.iter().map(|f| f.ident.to_string()).collect();
        assert_eq!(names, ["_0", "_3", "_7", "_9", "_11"]);
        let FieldTy::Layer(FieldLayer::Conv(conv)) = &net.fields[1].ty else {
            panic!("conv2 is a conv")
        };
        assert_eq!(
            *conv,
            Conv {
                in_c: 6,
                out_c: 16,
                kernel: (5, 5),
                input: (14, 14),
                output: (10, 10),
                stride: (1, 1),
                pad: (0, 0),
                pad_end: (0, 0),
                dilation: (1, 1),
                groups: 1,
                bias: true,
            }
        );
        let kinds: Vec<_> = net.rows.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds[..3],
            [
                "conv2d(6, kernel=5, padding=2)",
                "sigmoid",
                "avg_pool2d(kernel=2, stride=2)"
            ]
        );
        let rf: Vec<_> = net.rows.iter().map(|r| r.receptive_field).collect();
        assert_eq!(
            rf[..7],
            [
                Some((5, 5)),
                Some((5, 5)),
                Some((6, 6)),
                Some((14, 14)),
                Some((14, 14)),
                Some((16, 16)),
                None
            ]
        );
    });
}

#[test]
fn conv_activation_pool_runs_are_fused() {
    plan_of(LENET, |net| {
        // conv+sigmoid+pool twice, then flatten, then linear, sigmoid, ...
        assert_eq!(net.steps.len(), 2 + 1 + 5);
        let Step::Conv {
            field,
            bn: None,
            act: Some(Act::Sigmoid),
            pool: Some(pool),
            input_grad: true,
        } = &net.steps[0]
        else {
            panic!("conv1, sigmoid and the pool are one step, computing the input's gradient")
        };
        assert!(matches!(
            net.steps[1],
            Step::Conv {
                input_grad: true,
                ..
            }
        ));
        assert_eq!(field, "_0");
        assert_eq!(
            (pool.kind, pool.input, pool.output),
            (PoolKind::Avg, (28, 28), (14, 14))
        );
    });
    // Only relu, sigmoid and tanh fuse; a pool fuses without an activation; a batch norm right
    // after the conv joins the run (folded in inference), one after the activation ends it.
    let src = stack(
        "conv2d(2, kernel = 3), gelu, max_pool2d(kernel = 2),
         conv2d(2, kernel = 3), max_pool2d(kernel = 2),
         conv2d(2, kernel = 1), batch_norm2d, relu,
         conv2d(2, kernel = 1), relu, relu,
         conv2d(2, kernel = 1), relu, batch_norm2d",
    );
    plan_of(&src, |net| {
        let shape: Vec<String> = net
            .steps
            .iter()
            .map(|step| match step {
                Step::Conv {
                    field,
                    bn,
                    act,
                    pool,
                    ..
                } => match bn {
                    Some(bn) => format!("{field}+{bn}+{act:?}+{}", pool.is_some()),
                    None => format!("{field}+{act:?}+{}", pool.is_some()),
                },
                Step::Field(field) => field.to_string(),
                Step::BatchNorm { field, relu, .. } => format!("{field}+{relu}"),
                Step::Unit(Unit::Act(act)) => format!("{act:?}"),
                Step::Unit(Unit::Pool(_)) => "pool".into(),
                Step::Unit(Unit::Flatten(_)) => "flatten".into(),
                Step::Dropout { .. } => "dropout".into(),
                _ => "construct".into(),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "_0+None+false",
                "GeLU",
                "pool",
                "_3+None+true",
                "_5+_6+Some(ReLU)+false",
                "_8+Some(ReLU)+false",
                "ReLU",
                "_11+Some(ReLU)+false",
                "_13+false"
            ]
        );
    });
}

/// The input's gradient is computed unless `#[cnn(input_grad = false)]` says otherwise, and
/// then only the first layer skips it.
#[test]
fn input_grad_option() {
    let input_grads = |net: &NetPlan| -> Vec<bool> {
        net.steps
            .iter()
            .filter_map(|step| match step {
                Step::Conv { input_grad, .. } => Some(*input_grad),
                _ => None,
            })
            .collect()
    };
    plan_of(LENET, |net| {
        assert!(net.input_grad);
        assert_eq!(input_grads(net), [true, true]);
    });
    plan_of(&format!("#[cnn(input_grad = false)] {LENET}"), |net| {
        assert!(!net.input_grad);
        assert_eq!(input_grads(net), [false, true]);
        // Read by the macro, not passed on to the struct.
        assert!(net.attrs.iter().all(|a| !a.path().is_ident("cnn")));
        assert_eq!(net.attrs.len(), 0);
    });
    // `true` is the default, written out; other attributes pass through.
    plan_of(
        &format!("/// Doc.\n#[cnn(input_grad = true)] #[allow(dead_code)] {LENET}"),
        |net| {
            assert!(net.input_grad);
            assert_eq!(input_grads(net), [true, true]);
            assert_eq!(net.attrs.len(), 2);
        },
    );
}

#[test]
fn input_grad_option_errors() {
    let net = |attr: &str, layers: &str| format!("{attr} {}", stack(layers));
    assert_eq!(
        error(&net("#[cnn(input_gradient = false)]", "relu")),
        "unknown option `input_gradient` in #[cnn(...)]; expected one of: input_grad"
    );
    assert_eq!(
        error(&net(
            "#[cnn(input_grad = false, input_grad = false)]",
            "conv2d(1, kernel = 1)"
        )),
        "duplicate option `input_grad`"
    );
    assert_eq!(
        error(&net("#[cnn(input_grad = no)]", "conv2d(1, kernel = 1)")),
        "expected `true` or `false` for `input_grad`"
    );
    assert_eq!(
        error(&net(
            "#[cnn(input_grad = false)]",
            "relu, conv2d(1, kernel = 1)"
        )),
        "`input_grad = false` needs conv2d as the first layer, the only layer that can skip its \
         input's gradient"
    );
    assert_eq!(
        error(&net(
            "#[cnn(input_grad = false)]",
            "conv_transpose2d(1, kernel = 1)"
        )),
        "`input_grad = false` needs conv2d as the first layer, the only layer that can skip its \
         input's gradient"
    );
    assert_eq!(errors(&net("#[cnn(input_grad)]", "relu")), ["expected `=`"]);
    // Independent of the layers' own mistakes: both reported.
    assert_eq!(
        errors(&net("#[cnn(speed = 2)]", "conv2d(6)")),
        [
            "unknown option `speed` in #[cnn(...)]; expected one of: input_grad",
            "missing argument `kernel`, as in `conv2d(OUT, kernel = K)`"
        ]
    );
}

/// The struct's own type parameters are `E` and `D`; every other generated one is `__`-named,
/// so only those two names are refused.
#[test]
fn network_names() {
    for name in ["E", "D"] {
        assert_eq!(
            error(&format!("struct {name}: [1, 2, 2] {{}}")),
            format!(
                "a network cannot be named `{name}`: `{name}` is a type parameter of the generated \
                 struct (`{name}<E = f32, D = Cpu>`); choose another name"
            )
        );
    }
    for name in ["B", "T", "X", "V", "E2", "D2"] {
        plan_of(&format!("struct {name}: [1, 2, 2] {{}}"), |net| {
            assert_eq!(net.ident, name)
        });
    }
}

#[test]
fn conv_transpose_plan() {
    // d2l 14.10.2: conv 16x16 -> 6x6, then the transposed conv with the same settings back.
    let src = "struct N: [10, 16, 16] -> [2, 18, 17] {
        conv2d(20, kernel = 5, padding = 2, stride = 3) -> [20, 6, 6],
        conv_transpose2d(10, kernel = 5, padding = 2, stride = 3),
        conv_transpose2d(10 => 4, kernel = (3, 1), output_padding = (0, 1), dilation = (1, 2), groups = 2, bias = false),
        up: conv_transpose2d(2, kernel = 1),
        relu,
    }";
    plan_of(src, |net| {
        let names: Vec<_> = net.fields.iter().map(|f| f.ident.to_string()).collect();
        assert_eq!(names, ["_0", "_1", "_2", "up"]);
        let FieldTy::Layer(FieldLayer::ConvTranspose(t)) = &net.fields[1].ty else {
            panic!("a transposed conv")
        };
        assert_eq!(
            *t,
            ConvTranspose {
                in_c: 20,
                out_c: 10,
                kernel: (5, 5),
                input: (6, 6),
                output: (16, 16),
                stride: (3, 3),
                pad: (2, 2),
                output_pad: (0, 0),
                dilation: (1, 1),
                groups: 1,
                bias: true,
            }
        );
        let FieldTy::Layer(FieldLayer::ConvTranspose(t)) = &net.fields[2].ty else {
            panic!("a transposed conv")
        };
        // h: 15 + 2 + 1 = 18; w: 15 + 0 + 1 + 1 = 17.
        assert_eq!((t.output, t.groups, t.bias), ((18, 17), 2, false));
        assert_eq!(net.output, [2, 18, 17]);
        assert!(matches!(&net.steps[1], Step::Field(f) if f == "_1"));
        // params: IN * OUT/G * KH * KW (+ OUT); mult-adds: IN * OUT/G * KH * KW * H * W.
        let counts: Vec<_> = net.rows.iter().map(|r| (r.params, r.macs)).collect();
        assert_eq!(
            counts,
            [
                (20 * 10 * 25 + 20, 20 * 6 * 6 * 10 * 25),
                (20 * 10 * 25 + 10, 20 * 10 * 25 * 6 * 6),
                (10 * 2 * 3, 10 * 2 * 3 * 16 * 16),
                (4 * 2 + 2, 4 * 2 * 18 * 17),
                (0, 0),
            ]
        );
        assert_eq!(
            net.rows[2].kind,
            "conv_transpose2d(10 => 4, kernel=(3, 1), output_padding=(0, 1), dilation=(1, 2), groups=2, bias=false)"
        );
        // Receptive field: `-` from the strided transposed conv on.
        let rf: Vec<_> = net.rows.iter().map(|r| r.receptive_field).collect();
        assert_eq!(rf, [Some((5, 5)), None, None, None, None]);
    });
    // With stride 1, the conv rule: a transposed conv is then a conv with the kernel flipped.
    plan_of(
        &stack(
            "conv_transpose2d(1, kernel = 3), conv_transpose2d(1, kernel = 2, dilation = 2), relu",
        ),
        |net| {
            let rf: Vec<_> = net.rows.iter().map(|r| r.receptive_field).collect();
            assert_eq!(rf, [Some((3, 3)), Some((5, 5)), Some((5, 5))]);
            assert_eq!(net.output, [1, 32, 32]);
        },
    );
}

#[test]
fn conv_transpose_errors() {
    assert_eq!(
        error("struct N: [1, 2, 2] { conv_transpose2d(1, kernel = 2, padding = 2) }"),
        "padding 2 leaves no output: input 2x2 gives 3x3 before padding (kernel 2, stride 1, \
         dilation 1, output_padding 0), and padding takes off 4"
    );
    assert_eq!(
        error("struct N: [1, 2, 3] { conv_transpose2d(1, kernel = 2, padding = (1, 2)) }"),
        "padding 1x2 leaves no output: input 2x3 gives 3x4 before padding (kernel 2, stride 1, \
         dilation 1, output_padding 0), and padding takes off 2x4"
    );
    assert_eq!(
        error(&stack(
            "conv_transpose2d(1, kernel = 3, stride = 2, output_padding = 2)"
        )),
        "output_padding 2 must be smaller than the stride 2 or the dilation 1"
    );
    assert_eq!(
        error(&stack(
            "conv_transpose2d(1, kernel = 3, output_padding = (0, 1))"
        )),
        "output_padding 0x1 must be smaller than the stride 1 or the dilation 1"
    );
    let src = "struct N: [6, 8, 8] { conv_transpose2d(6, kernel = 3, groups = 4) }";
    assert_eq!(error(src), "groups 4 does not divide in-channels 6");
    let src = "struct N: [6, 8, 8] { conv_transpose2d(4, kernel = 3, groups = 3) }";
    assert_eq!(error(src), "groups 3 does not divide out-channels 4");
    assert_eq!(
        error(&stack("conv_transpose2d(6, kernel = 0)")),
        "kernel must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack("conv_transpose2d(6, kernel = 3, stride = 0)")),
        "stride must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack("conv_transpose2d(6, kernel = 3, dilation = (0, 1))")),
        "dilation must be at least 1, not (0, 1)"
    );
    assert_eq!(
        error(&stack("conv_transpose2d(6, kernel = 3, groups = 0)")),
        "groups must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack("conv_transpose2d(0, kernel = 3)")),
        "out-channels must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack(
            "conv2d(6, kernel = 5), conv_transpose2d(3 => 1, kernel = 5)"
        )),
        "in-channels 3 differ from the actual 6 (made by conv2d `0`)"
    );
    assert_eq!(
        error(&stack("flatten, conv_transpose2d(1, kernel = 1)")),
        "conv_transpose2d needs an image input [C, H, W], but its input is flat: [784]"
    );
    assert_eq!(
        error(&stack("conv_transpose2d(1, kernel = 2, output_size = 4)")),
        "unknown argument `output_size` for conv_transpose2d; expected one of: kernel, stride, \
         padding, output_padding, dilation, groups, bias"
    );
    assert_eq!(
        error(&stack("conv_transpose2d(1, kernel = 2, padding = same)")),
        "expected an integer or a pair `(h, w)` for `padding`"
    );
    assert_eq!(
        errors(&stack("conv_transpose2d")),
        [
            "missing the out-channels, as in `conv_transpose2d(OUT, kernel = K)`",
            "missing argument `kernel`, as in `conv_transpose2d(OUT, kernel = K)`"
        ]
    );
}

#[test]
fn modes() {
    plan_of(&stack("flatten, dropout, linear(2)"), |net| {
        assert_eq!(net.mode, Mode::Dropout)
    });
    plan_of(&stack("batch_norm2d, dropout(0.1)"), |net| {
        assert_eq!(net.mode, Mode::BatchNorm);
        assert_eq!((net.params, net.non_trainable), (2, 2));
    });
}

#[test]
fn field_names_are_positions_or_names() {
    let src = stack(
        "c: conv2d(2, kernel = 1), conv2d(2, kernel = 1), p: max_pool2d(kernel = 2), relu, flatten, linear(3)",
    );
    plan_of(&src, |net| {
        let names: Vec<_> = net.fields.iter().map(|f| f.ident.to_string()).collect();
        assert_eq!(names, ["c", "_1", "p", "_5"]);
    });
}

#[test]
fn describe_normalises() {
    let src =
        stack("conv2d( 1=>2 , kernel=(3,3), padding = same, bias=false ), dropout(0.5), flatten()");
    plan_of(&src, |net| {
        let kinds: Vec<_> = net.rows.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "conv2d(1 => 2, kernel=(3, 3), padding=same, bias=false)",
                "dropout(0.5)",
                "flatten"
            ]
        );
    });
}

#[test]
fn no_layers_is_the_identity() {
    plan_of("struct Id: [3, 2, 2] -> [3, 2, 2] {}", |net| {
        assert_eq!(net.output, [3, 2, 2]);
        assert!(net.steps.is_empty() && net.fields.is_empty());
    });
}

// ---------------------------------------------------------------------------------------------
// Errors, one rule each

#[test]
fn kernel_too_large() {
    let src = stack("conv2d(6, kernel = 5), max_pool2d(kernel = 6), conv2d(1, kernel = 5)");
    assert_eq!(
        error(&src),
        "kernel 5 does not fit input 4x4 (padding 0, dilation 1)"
    );
    assert_eq!(
        error(&stack("conv2d(1, kernel = 11, dilation = 3, padding = 1)")),
        "kernel 11 does not fit input 28x28 (padding 1, dilation 3: the kernel spans 31)"
    );
    assert_eq!(
        error(&stack("avg_pool2d(kernel = (29, 2))")),
        "kernel 29x2 does not fit input 28x28 (padding 0)"
    );
}

#[test]
fn zero_arguments() {
    assert_eq!(
        error(&stack("conv2d(6, kernel = 0)")),
        "kernel must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack("conv2d(6, kernel = 3, stride = (1, 0))")),
        "stride must be at least 1, not (1, 0)"
    );
    assert_eq!(
        error(&stack("conv2d(6, kernel = 3, dilation = 0)")),
        "dilation must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack("conv2d(6, kernel = 3, groups = 0)")),
        "groups must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack("conv2d(0, kernel = 3)")),
        "out-channels must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack("flatten, linear(0)")),
        "out-features must be at least 1, not 0"
    );
    assert_eq!(
        error(&stack("max_pool2d(kernel = 2, stride = 0)")),
        "stride must be at least 1, not 0"
    );
}

#[test]
fn groups_must_divide() {
    let src = "struct N: [6, 8, 8] { conv2d(6, kernel = 3, groups = 4) }";
    assert_eq!(error(src), "groups 4 does not divide in-channels 6");
    let src = "struct N: [6, 8, 8] { conv2d(9, kernel = 3, groups = 3), conv2d(8, kernel = 3, groups = 3) }";
    assert_eq!(error(src), "groups 3 does not divide out-channels 8");
}

#[test]
fn explicit_counts_are_checked() {
    assert_eq!(
        error(&stack("conv2d(6, kernel = 5), conv2d(3 => 16, kernel = 5)")),
        "in-channels 3 differ from the actual 6 (made by conv2d `0`)"
    );
    assert_eq!(
        error(&stack("conv2d(2 => 6, kernel = 5)")),
        "in-channels 2 differ from the actual 1 (made by the network's input [1, 28, 28])"
    );
    assert_eq!(
        error(&stack(
            "conv2d(16, kernel = 5, stride = 5), flatten, linear(500 => 10)"
        )),
        "in-features 500 differ from the actual 400 (made by flatten: 16x5x5 = 400)"
    );
    assert_eq!(
        error(&stack("flatten, fc: linear(10), linear(12 => 2)")),
        "in-features 12 differ from the actual 10 (made by linear `fc`)"
    );
    assert_eq!(
        error(&stack("batch_norm2d(3)")),
        "channels 3 differ from the actual 1 (made by the network's input [1, 28, 28])"
    );
}

#[test]
fn output_shapes_are_checked() {
    assert_eq!(
        error(&stack("conv2d(6, kernel = 5) -> [6, 28, 28]")),
        "output [6, 28, 28] differs from the actual [6, 24, 24]"
    );
    assert_eq!(
        error("struct N: [1, 28, 28] -> [10] { flatten, linear(12) }"),
        "declared output [10] differs from the actual [12]"
    );
}

#[test]
fn image_layers_after_flatten() {
    assert_eq!(
        error(&stack("flatten, conv2d(6, kernel = 1)")),
        "conv2d needs an image input [C, H, W], but its input is flat: [784]"
    );
    assert_eq!(
        error(&stack("flatten, max_pool2d(kernel = 2)")),
        "max_pool2d needs an image input [C, H, W], but its input is flat: [784]"
    );
    assert_eq!(
        error(&stack("flatten, flatten")),
        "flatten needs an image input [C, H, W], but its input is flat: [784]"
    );
    assert_eq!(
        error(&stack("linear(10)")),
        "linear needs a flat input, not [1, 28, 28]; add `flatten` before it"
    );
}

#[test]
fn pool_padding_at_most_half_the_kernel() {
    assert_eq!(
        error(&stack("max_pool2d(kernel = 3, padding = 2)")),
        "padding 2 is more than half the kernel 3 (at most 1)"
    );
    assert_eq!(
        error(&stack("avg_pool2d(kernel = (2, 4), padding = (1, 3))")),
        "padding 1x3 is more than half the kernel 2x4 (at most 1x2)"
    );
}

#[test]
fn unknown_duplicated_and_missing() {
    assert_eq!(
        error(&stack("conv3d(6, kernel = 5)")),
        "unknown layer or block `conv3d`; did you mean `conv2d`?"
    );
    assert!(error(&stack("dense(6)")).starts_with(
        "unknown layer `dense`; expected one of: conv2d, conv_transpose2d, max_pool2d,"
    ));
    assert_eq!(
        error(&stack("conv2d(6, kernel = 5, strides = 2)")),
        "unknown argument `strides` for conv2d; expected one of: kernel, stride, padding, dilation, groups, bias"
    );
    assert_eq!(
        error(&stack("relu(inplace = true)")),
        "unknown argument `inplace` for relu; relu takes no named arguments"
    );
    assert_eq!(
        error(&stack("conv2d(6, kernel = 5, kernel = 3)")),
        "duplicate argument `kernel`"
    );
    assert_eq!(
        error(&stack("conv2d(6)")),
        "missing argument `kernel`, as in `conv2d(OUT, kernel = K)`"
    );
    assert_eq!(
        error(&stack("conv2d(kernel = 5)")),
        "missing the out-channels, as in `conv2d(OUT, kernel = K)`"
    );
    assert_eq!(
        errors(&stack("conv2d")),
        [
            "missing the out-channels, as in `conv2d(OUT, kernel = K)`",
            "missing argument `kernel`, as in `conv2d(OUT, kernel = K)`"
        ]
    );
    assert_eq!(
        error(&stack("flatten, linear")),
        "missing the out-features, as in `linear(OUT)`"
    );
    assert_eq!(
        error(&stack("max_pool2d(2)")),
        "max_pool2d takes no positional arguments; write `kernel = 2`"
    );
    assert_eq!(
        error(&stack("flatten(2)")),
        "flatten takes no positional arguments"
    );
    assert_eq!(
        error(&stack("flatten, linear(10, 20)")),
        "linear takes one positional argument"
    );
    assert_eq!(
        error(&stack("dropout(1 => 0.5)")),
        "dropout takes no `IN =>` count"
    );
}

#[test]
fn argument_values() {
    assert_eq!(
        error(&stack("conv2d(6, kernel = same)")),
        "expected an integer or a pair `(h, w)` for `kernel`"
    );
    assert_eq!(
        error(&stack("conv2d(6, kernel = 3, padding = full)")),
        "`full` is not defined here; outside blocks the only names are `C`, `H`, `W`, the shape \
         flowing in"
    );
    assert_eq!(
        error(&stack("conv2d(6, kernel = 3, bias = 1)")),
        "expected `true` or `false` for `bias`"
    );
    assert_eq!(
        error(&stack("conv2d(6.0, kernel = 3)")),
        "expected an integer for out-channels"
    );
    assert_eq!(
        error(&stack("dropout(1.5)")),
        "dropout probability must be in [0, 1), not 1.5"
    );
    assert_eq!(
        error(&stack("max_pool2d(kernel = 2, padding = same)")),
        "expected an integer or a pair `(h, w)` for `padding`"
    );
}

#[test]
fn input_shape() {
    assert_eq!(
        error("struct N: [28, 28] {}"),
        "the input must be one image [C, H, W], not [28, 28]"
    );
    assert_eq!(
        error("struct N: [1, 0, 28] {}"),
        "input dimensions must be at least 1, not [1, 0, 28]"
    );
}

#[test]
fn names_are_unique() {
    assert_eq!(
        error(&stack("a: relu, a: relu")),
        "layer name `a` is used twice"
    );
    assert_eq!(
        error(&stack(
            "c: conv2d(1, kernel = 1), relu, c: { conv2d(1, kernel = 1) }"
        )),
        "layer name `c` is used twice"
    );
}

/// Independent mistakes are reported together; a shape error stops the walk.
#[test]
fn errors_are_combined() {
    let all = errors(&stack(
        "conv2d(6, kernel = 5, strides = 2), pool(2), flatten, linear(10, bias = 1)",
    ));
    assert_eq!(
        all,
        [
            "unknown argument `strides` for conv2d; expected one of: kernel, stride, padding, dilation, groups, bias",
            &format!(
                "unknown layer `pool`; expected one of: {}",
                LAYERS.join(", ")
            ),
            "expected `true` or `false` for `bias`",
        ]
    );
    let all = errors(&format!(
        "{} {}",
        stack("conv2d(0, kernel = 1)"),
        "struct M: [1, 2, 2] { linear(2) }"
    ));
    assert_eq!(all.len(), 2, "{all:?}");
    let all = errors(&stack("linear(10), conv2d(1 => 2, kernel = 50)"));
    assert_eq!(
        all,
        ["linear needs a flat input, not [1, 28, 28]; add `flatten` before it"]
    );
}

#[test]
fn syntax_errors() {
    assert_eq!(errors("struct N [1, 2, 2] {}"), ["expected `:`"]);
    assert_eq!(
        errors(&stack("conv2d(6, kernel = [3])")),
        [
            "expected one of: integer literal, floating point literal, boolean literal, identifier, parentheses"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Blocks

/// Field names and checkpoint keys of every scope: PyTorch's `nn.Sequential` numbering
/// everywhere, names where given; an unnamed group nests, an unnamed repeat splices its copies
/// in, constructs are transparent.
#[test]
fn scopes_and_their_names() {
    let src = "
        block Unit(c) { conv2d(c, kernel = 1), relu, batch_norm2d }
        struct N: [2, 4, 4] {
            conv2d(2, kernel = 1),
            Unit(3),
            stem: { conv2d(3, kernel = 1), relu, Unit(3) },
            repeat(2) { Unit(3) },
            rep: repeat(2) { conv2d(3, kernel = 1), relu },
            residual { conv2d(3, kernel = 3, padding = 1) } shortcut { conv2d(3, kernel = 1) },
            { conv2d(3, kernel = 1), relu },
        }";
    plan_of(src, |net| {
        let names: Vec<_> = net.fields.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(names, ["0", "1", "stem", "3", "4", "rep", "6", "7", "8"]);
        let scope_of = |fields: &[Field], key: &str| {
            let f = fields.iter().find(|f| f.key == key).unwrap();
            let FieldTy::Scope(i) = f.ty else {
                panic!("{key} is a scope")
            };
            &net.scopes[i]
        };
        let scope = |key: &str| scope_of(&net.fields, key);
        let keys = |scope: &Scope| {
            scope
                .fields
                .iter()
                .map(|f| f.key.clone())
                .collect::<Vec<_>>()
        };
        // In every scope every entry takes a position, stateless ones too.
        assert_eq!(keys(scope("1")), ["0", "2"]);
        assert_eq!(keys(scope("stem")), ["0", "2"]);
        assert_eq!(keys(scope("rep")), ["0", "1"]);
        assert_eq!(keys(scope("8")), ["0"]);
        // The calls of `Unit(3)` on [3, 4, 4] share one struct (in `stem` and both spliced
        // copies of the repeat); the call on [2, 4, 4] has its own.
        let in_stem = scope_of(&scope("stem").fields, "2").ident.to_string();
        assert_eq!(in_stem, scope("3").ident.to_string());
        assert_eq!(in_stem, scope("4").ident.to_string());
        assert_ne!(in_stem, scope("1").ident.to_string());
        // Paths reach fields from the network.
        let rows: Vec<_> = net
            .rows
            .iter()
            .filter(|r| !r.path.is_empty())
            .map(|r| (r.depth, r.path.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (0, "0"),
                (0, "1"),
                (1, "1.0"),
                (1, "1.2"),
                (0, "stem"),
                (1, "stem.0"),
                (1, "stem.2"),
                (2, "stem.2.0"),
                (2, "stem.2.2"),
                (2, "3"),
                (3, "3.0"),
                (3, "3.2"),
                (2, "4"),
                (3, "4.0"),
                (3, "4.2"),
                (0, "rep"),
                (1, "rep.0"),
                (2, "rep.0.0"),
                (1, "rep.1"),
                (2, "rep.1.0"),
                (1, "6"),
                (2, "7"),
                (0, "8"),
                (1, "8.0"),
            ]
        );
        // Totals: each construct's row holds its contents'; the network's are its top rows'.
        // Unit(3) on 2 channels: conv 2*3 + 3, batch norm 2*3; on 3 channels: 3*3 + 3 + 6.
        let (unit_on_2, unit) = (2 * 3 + 3 + 6, 3 * 3 + 3 + 6);
        assert_eq!(net.rows[1].params, unit_on_2);
        assert_eq!(
            net.params,
            (2 * 2 + 2) + unit_on_2 + (3 * 3 + 3 + unit) + 2 * unit + 2 * 12 + (81 + 3 + 12) + 12
        );
    });
}

#[test]
fn expressions() {
    let src = "
        block B(a, b = a * 2 + 2, pair = (3, 5), on = a >= 4 && b != 9) {
            conv2d(b - a / 2, kernel = pair, padding = (pair.0 / 2, pair.1 / 2)),
            if on { conv2d(C + H + W, kernel = 1) } else { conv2d(1, kernel = 1) },
        }
        struct N: [2, 6, 6] { B(4), B(4, b = 9) }";
    plan_of(src, |net| {
        let outs: Vec<_> = net
            .rows
            .iter()
            .filter(|r| r.kind.starts_with("conv2d"))
            .map(|r| (r.kind.as_str(), r.output.clone()))
            .collect();
        assert_eq!(
            outs,
            [
                // b = 10, b - a / 2 = 8; C + H + W of the block's input [2, 6, 6]
                ("conv2d(8, kernel=(3, 5), padding=(1, 2))", vec![8, 6, 6]),
                ("conv2d(14, kernel=1)", vec![14, 6, 6]),
                // b = 9 given: 9 - 2 = 7, and `on` is false
                ("conv2d(7, kernel=(3, 5), padding=(1, 2))", vec![7, 6, 6]),
                ("conv2d(1, kernel=1)", vec![1, 6, 6]),
            ]
        );
    });
    // At network level `C`, `H`, `W` are the shape flowing into each entry.
    plan_of(
        &stack("conv2d(4, kernel = 1), conv2d(C * 2, kernel = 1), flatten, linear(C / 2)"),
        |net| {
            assert_eq!(net.output, [8 * 28 * 28 / 2]);
        },
    );
    assert_eq!(
        error(&stack("flatten, linear(H)")),
        "`H` is not defined here: the input is flat, [784]"
    );
    assert_eq!(
        error(&stack("conv2d(2 < 3, kernel = 1)")),
        "expected an integer for out-channels"
    );
    assert_eq!(
        error(&stack("conv2d(true + 1, kernel = 1)")),
        "`+` cannot take `true` and the integer 1"
    );
    assert_eq!(
        errors(&stack("conv2d(1 < 2 < 3, kernel = 1)")),
        ["comparisons do not chain; add parentheses"]
    );
}

/// A residual whose body changes the shape suggests the shortcut that would fit, also for
/// odd sizes and rectangular strides.
#[test]
fn residual_suggests_a_shortcut() {
    let e = error(
        "struct N: [3, 25, 24] { residual { conv2d(6, kernel = 3, padding = 1, stride = (2, 3)) } }",
    );
    assert!(
        e.ends_with("add `shortcut { conv2d(6, kernel = 1, stride = (2, 3)) }`"),
        "{e}"
    );
    let e = error("struct N: [3, 8, 8] { residual { conv2d(6, kernel = 3, padding = 1) } }");
    assert!(
        e.ends_with("add `shortcut { conv2d(6, kernel = 1) }`"),
        "{e}"
    );
    // Flat: no convolution fits; no suggestion.
    let e = error("struct N: [3, 2, 2] { flatten, residual { linear(4) } }");
    assert!(e.ends_with("so they must agree"), "{e}");
}

/// A `residual` or `sum` followed by `relu` applies it in the addition, also when the
/// construct ends a block and the ReLU follows the call (and only then).
#[test]
fn residual_then_relu_is_one_step() {
    let relus = |net: &NetPlan| -> Vec<bool> {
        net.steps
            .iter()
            .filter_map(|s| match s {
                Step::Residual { relu, .. } | Step::Sum { relu, .. } => Some(*relu),
                _ => None,
            })
            .collect()
    };
    let src = "
        block R() { residual { conv2d(2, kernel = 1) }, relu }
        block S() { sum { identity, conv2d(2, kernel = 1) } }
        struct N: [2, 4, 4] { R(), S(), relu, S(), residual { conv2d(2, kernel = 1) }, sigmoid }";
    plan_of(src, |net| {
        assert_eq!(relus(net), [true, true, false, false]);
        assert_eq!(
            net.steps.len(),
            4 + 1,
            "the sigmoid stays a step: {}",
            net.steps.len()
        );
    });
}

/// After `scale` the units are as far apart as before it (the gate's global pool does not
/// stride the image), so a later convolution grows the field by its kernel only.
#[test]
fn receptive_field_through_scale() {
    let src = "struct Se: [4, 8, 8] {
        conv2d(4, kernel = 3, padding = 1),
        scale { global_avg_pool2d, linear(4), sigmoid },
        conv2d(4, kernel = 3, padding = 1),
    }";
    plan_of(src, |net| {
        let last = net.rows.last().unwrap();
        // The gate sees 8x8 (the global pool over an image whose units see 3x3, spaced 1:
        // 3 + 7 = 10); the conv adds 2.
        assert_eq!(last.receptive_field, Some((12, 12)));
    });
}

/// A check's errors dropped unread would be lost silently: in debug builds that is a panic, so
/// that any path of the macro that forgets them fails its tests.
#[test]
#[should_panic(expected = "dropped without being read")]
fn errors_dropped_unread_are_a_bug() {
    let mut errors = Errors::default();
    errors.push(syn::Error::new(proc_macro2::Span::call_site(), "lost"));
}

/// Read ones are not.
#[test]
fn errors_read_are_fine() {
    let mut errors = Errors::default();
    errors.push(syn::Error::new(proc_macro2::Span::call_site(), "kept"));
    let mut outer = Errors::default();
    outer.absorb(errors);
    assert_eq!(outer.finish(()).unwrap_err().to_string(), "kept");
    assert!(Errors::default().into_error().is_none());
}
