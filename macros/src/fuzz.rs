//! The front end (bracket depth, parse, check, plan, expand) run as an ordinary function on
//! hostile inputs: it returns a spanned error or code, and never panics, overflows its stack,
//! hangs or runs out of memory.
//!
//! - [`regressions`]: the inputs of issue #21 (and what the fuzzer found), each with the error
//!   it gives now.
//! - [`fuzz`]: a seeded, time-bounded random search: token mutations of the valid networks in
//!   `tests/ui/`, the examples and the tests, extreme numbers spliced in, deep nesting and long
//!   expressions, each run under `catch_unwind` on a thread with less stack than rustc gives a
//!   proc macro. `CNN_FUZZ_SECONDS` and `CNN_FUZZ_SEED` change its time (2 s) and seed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use proc_macro2::TokenStream;

/// Less than the 8 MiB of rustc's main thread, where proc macros run, to leave a margin.
const STACK: usize = 4 << 20;

/// Runs the front end on `src` on a thread with [`STACK`] bytes of stack: `Ok` with the code,
/// `Err` with the error messages; a panic is `Err` with `"panic: ..."` first.
fn run(src: &str) -> Result<String, Vec<String>> {
    let src = src.to_string();
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let tokens: TokenStream = match src.parse() {
                Ok(tokens) => tokens,
                Err(e) => return Err(vec![format!("lex: {e}")]),
            };
            match catch_unwind(AssertUnwindSafe(|| crate::front_end(tokens))) {
                Ok(Ok(code)) => Ok(code.to_string()),
                Ok(Err(e)) => Err(e.into_iter().map(|e| e.to_string()).collect()),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(vec![format!("panic: {message}")])
                }
            }
        })
        .expect("spawns")
        .join()
        .expect("the thread returns")
}

/// The first error of `src`, which must fail, within `limit`.
fn first_error(src: &str) -> String {
    let start = Instant::now();
    let result = run(src);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}: {src:.200}");
    match result {
        Ok(_) => panic!("expected an error from {src:.300}"),
        Err(errors) => errors.into_iter().next().unwrap_or_default(),
    }
}

fn net(layers: &str) -> String {
    format!("struct N: [1, 28, 28] {{ {layers} }}")
}

/// Issue #21's inputs: each is now a spanned error naming what went wrong (or, for the valid
/// ones, code), and fast.
#[test]
fn regressions() {
    let cases: Vec<(String, &str)> = vec![
        // Unchecked arithmetic.
        (
            "struct N: [9223372036854775808, 1, 1] { batch_norm2d }".into(),
            "the input image [9223372036854775808, 1, 1] has 9223372036854775808 elements, more than a tensor can hold",
        ),
        (
            net("flatten, linear(18446744073709551615)"),
            "the weight of `linear(18446744073709551615)` has",
        ),
        (
            net("conv2d(1, kernel = 1, stride = 4294967296), conv2d(1, kernel = 1, stride = 4294967296)"),
            "the receptive field overflows here",
        ),
        (net("leaky_relu(0.0 / 0.0)"), "`0.0 / 0.0` is NaN, not a finite number"),
        (net("leaky_relu(1e400)"), "`1e400` is inf, not a finite number"),
        (
            net("conv2d(1, kernel = 3, dilation = 18446744073709551615)"),
            "kernel 3 does not fit input 28x28 (padding 0, dilation 18446744073709551615: the dilated kernel spans more than usize holds)",
        ),
        (
            net("conv2d(1, kernel = 3, dilation = 9223372036854775808, padding = same)"),
            "`padding = same` overflows for input 28x28",
        ),
        (
            net("conv2d(1, kernel = 18446744073709551615, padding = 18446744073709551615)"),
            "kernel 18446744073709551615 does not fit input 28x28",
        ),
        (
            net("conv_transpose2d(1, kernel = 18446744073709551615, stride = 2)"),
            "the output of `conv_transpose2d(1, kernel=18446744073709551615, stride=2)` overflows",
        ),
        (
            net("conv_transpose2d(1, kernel = 3, padding = 18446744073709551615)"),
            "padding 18446744073709551615 leaves no output: input 28x28 gives 30x30 before padding (kernel 3, stride 1, dilation 1, output_padding 0), and padding takes off 2 x 18446744073709551615",
        ),
        (
            net("linear(170141183460469231731687303715884105727 + 1)"),
            "170141183460469231731687303715884105727 + 1 overflows",
        ),
        (
            net("linear(18446744073709551616)"),
            "number out of range",
        ),
        (
            "struct N: [1, 1000000000, 1] { flatten, repeat(20) { linear(1000000000) } }".into(),
            "the parameter count of `repeat(20)` overflows",
        ),
        (
            "struct N: [1, 1000000000, 1] { flatten, l: linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000), linear(1000000000) }".into(),
            "the parameter count of `N` overflows",
        ),
        (
            "struct N: [1000000000, 1000000000, 1] { concat { identity, identity } }".into(),
            "the output [2000000000, 1000000000, 1] of `concat` has",
        ),
        // Deep nesting, long expressions.
        (
            net(&format!("{}relu{}", "{".repeat(1000), "}".repeat(1000))),
            "brackets nested more than 64 deep",
        ),
        (
            net(&format!("{}relu{}", "{".repeat(130), "}".repeat(130))),
            "brackets nested more than 64 deep",
        ),
        (
            net(&format!("linear({}1{})", "(".repeat(2000), ")".repeat(2000))),
            "brackets nested more than 64 deep",
        ),
        (
            net(&format!("flatten, linear({}1)", "1 + ".repeat(2000))),
            "this expression has more than 64 operators and parentheses",
        ),
        (
            net(&format!("{}relu{}", "{".repeat(40), "}".repeat(40))),
            "nested more than 32 levels deep",
        ),
        // Limits on work.
        (
            net("repeat(100000) { relu }"),
            "repeat count 100000 is more than 1000",
        ),
        (
            net("repeat(18446744073709551615) { relu }"),
            "repeat count 18446744073709551615 is more than 1000",
        ),
        (
            net("repeat(1000) { relu, relu, relu, relu, relu, relu, relu, relu, relu, relu }"),
            "`N` expands to more than 10000 layers",
        ),
        (
            net("repeat(1000) { repeat(1000) { } }"),
            "`N` expands to more than 10000 layers",
        ),
        (
            {
                let mut src = String::new();
                for i in 0..20 {
                    src += &format!("block B{i}() {{ B{0}, B{0} }}\n", i + 1);
                }
                src += "block B20() { relu }\n";
                src + &net("B0")
            },
            "`N` expands to more than 10000 layers",
        ),
        (
            {
                let mut src = String::new();
                for i in 0..200 {
                    src += &format!("block B{i}() {{ B{} }}\n", i + 1);
                }
                src += "block B200() { relu }\n";
                src + &net("B0")
            },
            "nested more than 32 levels deep",
        ),
        // Names the macro reports itself.
        (net("_0: relu, conv2d(1, kernel = 1)"), "layer name `_0` is reserved"),
        (net("__marker: relu"), "layer name `__marker` is reserved"),
        (
            format!("{} {}", net("relu"), net("relu")),
            "network `N` is defined twice in this invocation",
        ),
        (
            format!("{} struct NInput: [1, 2, 2] {{}}", net("relu")),
            "a network cannot be named `NInput`: `cnn!` generates the trait `NInput` for the network `N`",
        ),
        (
            format!("block B(a = a) {{ conv2d(a, kernel = 1) }} {}", net("B")),
            "`a` is not defined yet: a default can use only the parameters before it",
        ),
        (
            format!("block B(c) {{ conv2d(d, kernel = 1) }} {}", net("B(1)")),
            "`d` is not defined here; the block's parameters are `c`",
        ),
        (
            net("if big { relu }"),
            "`big` is not defined here; outside blocks the only names are `C`, `H`, `W`",
        ),
    ];
    let mut failures = Vec::new();
    for (src, expected) in &cases {
        let got = first_error(src);
        if !got.starts_with(expected) {
            failures.push(format!(
                "{src:.120}\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Valid inputs at the limits are accepted, and fast: an adaptive pool over a billion rows (no
/// table of its windows), a repeat at the largest count, nesting at the deepest.
#[test]
fn at_the_limits() {
    for src in [
        "struct N: [1, 1000000000, 1] { adaptive_avg_pool2d((999999999, 1)) }".to_string(),
        "struct N: [1, 1000000000, 1] { adaptive_avg_pool2d((1, 1)) }".to_string(),
        net("repeat(1000) { relu, relu, relu, relu, relu, relu, relu, relu }"),
        net(&format!("{}relu{}", "{".repeat(31), "}".repeat(31))),
        {
            let mut src = String::new();
            for i in 0..31 {
                src += &format!("block B{i}() {{ B{} }}\n", i + 1);
            }
            src += "block B31() { relu }\n";
            src + &net("B0")
        },
        net(&format!("flatten, linear({}1)", "1 + ".repeat(63))),
    ] {
        let start = Instant::now();
        let result = run(&src);
        let took = start.elapsed();
        assert!(result.is_ok(), "{src:.200}: {result:?}");
        assert!(took < Duration::from_secs(10), "took {took:?}: {src:.200}");
    }
}
