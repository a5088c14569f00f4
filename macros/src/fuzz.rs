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

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Less than the 8 MiB of rustc's main thread, where proc macros run, to leave a margin.
const STACK: usize = 4 << 20;

/// Runs the front end on `src` on a thread with [`STACK`] bytes of stack: `Ok` with the code,
/// `Err` with the error messages; a panic is `Err` with `"panic: ..."` first.
fn run(src: &str) -> Result<String, Vec<String>> {
    run_on(src, STACK)
}

/// [`run`] on a thread with `stack` bytes of stack.
fn run_on(src: &str, stack: usize) -> Result<String, Vec<String>> {
    let src = src.to_string();
    std::thread::Builder::new()
        .stack_size(stack)
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
        (
            (0..6)
                .map(|i| format!("struct N{i}: [1, 8, 8] {{ repeat(1000) {{ relu, relu, relu, relu, relu, relu, relu, relu }} }}"))
                .collect::<Vec<_>>()
                .join(" "),
            "this invocation's networks expand to more than 50000 layers",
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
/// table of its windows), a repeat at the largest count, nesting at the deepest, brackets and
/// expressions at theirs; and on a eighth of the stack rustc gives (1 MiB: the margin for a
/// macro built without optimisation, whose frames are larger than this test's).
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
        net(&format!(
            "flatten, linear({}1{})",
            "(".repeat(61),
            ")".repeat(61)
        )),
        net(
            &format!("{}relu{}", "{".repeat(31), "}".repeat(31)).replace(
                "relu",
                &format!("conv2d({}1{}, kernel = 1)", "(".repeat(30), ")".repeat(30)),
            ),
        ),
    ] {
        let start = Instant::now();
        let result = run_on(&src, 1 << 20);
        let took = start.elapsed();
        assert!(result.is_ok(), "{src:.200}: {result:?}");
        assert!(took < Duration::from_secs(10), "took {took:?}: {src:.200}");
    }
}

// ---------------------------------------------------------------------------------------------
// The fuzzer

/// xorshift64*: a seeded generator, so that a failure can be replayed with `CNN_FUZZ_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Numbers at the edges of what the macro computes with.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "7",
    "65536",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "170141183460469231731687303715884105727",
    "1e400",
    "0.0",
    "1.5",
    "0.5",
    "1e-400",
];

/// Words of the grammar, and names that clash with generated ones.
const WORDS: &[&str] = &[
    "conv2d",
    "conv_transpose2d",
    "linear",
    "flatten",
    "batch_norm2d",
    "batch_norm1d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "global_avg_pool2d",
    "leaky_relu",
    "dropout",
    "relu",
    "repeat",
    "residual",
    "shortcut",
    "concat",
    "sum",
    "scale",
    "if",
    "else",
    "identity",
    "block",
    "struct",
    "pub",
    "C",
    "H",
    "W",
    "E",
    "D",
    "same",
    "valid",
    "true",
    "false",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
    "output_padding",
    "_0",
    "_1",
    "__marker",
    "N",
    "NInput",
];

const PUNCT: &[&str] = &[
    "+", "-", "*", "/", "==", "<", "&&", "||", "=>", "->", ":", ",", "=", ".", "!",
];

/// Every `cnn! { ... }` body in the crate's tests, examples and sources: the valid networks
/// (and the ui cases' invalid ones) that the mutations start from.
fn seeds() -> Vec<Vec<String>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["tests", "tests/ui", "examples", "src", "src/nn"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    let mut seeds = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(tokens) = text.parse::<TokenStream>() else {
            continue;
        };
        find_invocations(tokens, &mut seeds);
    }
    seeds
}

/// The bodies of `cnn! { ... }` in `tokens`, at any depth, flattened to token texts.
fn find_invocations(tokens: TokenStream, seeds: &mut Vec<Vec<String>>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        if let TokenTree::Group(group) = tree {
            let before = |n: usize| i.checked_sub(n).map(|j| &trees[j]);
            let is_call = matches!(
                (before(2), before(1)),
                (Some(TokenTree::Ident(name)), Some(TokenTree::Punct(bang)))
                    if name == "cnn" && bang.as_char() == '!'
            );
            if is_call && group.delimiter() == Delimiter::Brace {
                let mut flat = Vec::new();
                flatten(group.stream(), &mut flat);
                seeds.push(flat);
            } else {
                find_invocations(group.stream(), seeds);
            }
        }
    }
}

fn flatten(tokens: TokenStream, out: &mut Vec<String>) {
    // Whether the last token was a punctuation joined to the next (`=` of `=>`).
    let mut joint = false;
    for tree in tokens {
        if let (TokenTree::Punct(p), true) = (&tree, joint) {
            if let Some(last) = out.last_mut() {
                last.push(p.as_char());
            }
            joint = p.spacing() == proc_macro2::Spacing::Joint;
            continue;
        }
        joint = matches!(&tree, TokenTree::Punct(p) if p.spacing() == proc_macro2::Spacing::Joint);
        match tree {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push(open.into());
                flatten(group.stream(), out);
                out.push(close.into());
            }
            TokenTree::Punct(p) => out.push(p.as_char().to_string()),
            other => out.push(other.to_string()),
        }
    }
}

fn is_bracket(token: &str) -> bool {
    matches!(token, "{" | "}" | "(" | ")" | "[" | "]")
}

/// Whether `tokens` closes every bracket it opens, and no other.
fn balanced(tokens: &[String]) -> bool {
    let mut open = Vec::new();
    for t in tokens {
        match t.as_str() {
            "{" | "(" | "[" => open.push(t.as_str()),
            "}" | ")" | "]" => {
                let matching = match t.as_str() {
                    "}" => "{",
                    ")" => "(",
                    _ => "[",
                };
                if open.pop() != Some(matching) {
                    return false;
                }
            }
            _ => {}
        }
    }
    open.is_empty()
}

/// One to four random edits of `tokens`.
fn mutate(rng: &mut Rng, tokens: &mut Vec<String>, seeds: &[Vec<String>]) {
    let edits = if rng.below(2) == 0 {
        1
    } else {
        1 + rng.below(4)
    };
    for _ in 0..edits {
        let len = tokens.len().max(1);
        let at = rng.below(len).min(tokens.len());
        match rng.below(10) {
            // (Brackets are kept balanced: an unbalanced input does not even lex.)
            0 if at < tokens.len() && !is_bracket(&tokens[at]) => {
                tokens.remove(at);
            }
            1 if at < tokens.len() && !is_bracket(&tokens[at]) => {
                let copy = tokens[at].clone();
                tokens.insert(at, copy);
            }
            2 | 3 => {
                // The next literal from `at` replaced (else one inserted).
                let number = rng.pick(NUMBERS).to_string();
                let next = (at..tokens.len())
                    .find(|&i| tokens[i].starts_with(|c: char| c.is_ascii_digit()));
                match next {
                    Some(i) => tokens[i] = number,
                    None => tokens.insert(at, number),
                }
            }
            4 => {
                let word = rng.pick(WORDS).to_string();
                if at < tokens.len() && !is_bracket(&tokens[at]) {
                    tokens[at] = word;
                } else {
                    tokens.push(word);
                }
            }
            5 => tokens.insert(at, rng.pick(PUNCT).to_string()),
            6 => {
                // Deep nesting around a stretch: groups, or parentheses.
                let depth = 1 + rng.below(80);
                let mut end = (at + rng.below(8)).min(tokens.len());
                if !balanced(&tokens[at..end]) {
                    end = at;
                }
                let (open, close) = if rng.below(2) == 0 {
                    ("{", "}")
                } else {
                    ("(", ")")
                };
                for _ in 0..depth {
                    tokens.insert(end, close.into());
                }
                for _ in 0..depth {
                    tokens.insert(at, open.into());
                }
            }
            7 => {
                // A repeat around a stretch.
                let mut end = (at + rng.below(8)).min(tokens.len());
                if !balanced(&tokens[at..end]) {
                    end = at;
                }
                tokens.insert(end, "}".into());
                let head = ["repeat", "(", *rng.pick(NUMBERS), ")", "{"];
                for (i, t) in head.iter().enumerate() {
                    tokens.insert(at + i, t.to_string());
                }
            }
            8 => {
                // A long expression.
                let terms = 1 + rng.below(100);
                for _ in 0..terms {
                    tokens.insert(at, rng.pick(&["+", "*", "-", "/"]).to_string());
                    tokens.insert(at, rng.pick(NUMBERS).to_string());
                }
            }
            _ => {
                // A stretch of another seed.
                let other = rng.pick(seeds);
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let to = (from + 1 + rng.below(20)).min(other.len());
                    let stretch = &other[from..to];
                    if !balanced(stretch) {
                        continue;
                    }
                    for (i, t) in stretch.iter().enumerate() {
                        tokens.insert(at + i, t.clone());
                    }
                }
            }
        }
    }
}

/// Random mutations of every `cnn!` input in the crate, for a few seconds: none panics, none
/// takes long, and some still expand (else the mutations would test nothing but the parser).
#[test]
fn fuzz() {
    let seconds: u64 = std::env::var("CNN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("CNN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    let seeds = seeds();
    assert!(seeds.len() >= 50, "only {} seeds found", seeds.len());
    // Most cases start from a valid network, so that mutations reach the checker's later rules.
    let valid: Vec<Vec<String>> = seeds
        .iter()
        .filter(|s| run(&s.join(" ")).is_ok())
        .cloned()
        .collect();
    assert!(valid.len() >= 20, "only {} valid seeds", valid.len());
    let mut rng = Rng(seed.max(1));
    let start = Instant::now();
    let (mut cases, mut expanded, mut slowest) = (0usize, 0usize, Duration::ZERO);
    let mut crashes = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        let from = if rng.below(4) == 0 { &seeds } else { &valid };
        let mut tokens = rng.pick(from).clone();
        mutate(&mut rng, &mut tokens, &seeds);
        let src = tokens.join(" ");
        let began = Instant::now();
        let result = run(&src);
        let took = began.elapsed();
        slowest = slowest.max(took);
        cases += 1;
        match result {
            Ok(_) => expanded += 1,
            Err(errors) => {
                if std::env::var("CNN_FUZZ_SHOW").is_ok() {
                    println!("ERR {:.50}", errors.first().cloned().unwrap_or_default());
                }
                if errors.first().is_some_and(|e| e.starts_with("panic: ")) {
                    crashes.push(format!("{errors:?}\n{src}"));
                }
            }
        }
        assert!(
            took < Duration::from_secs(5),
            "took {took:?} (seed {seed}):\n{src}"
        );
    }
    println!("fuzz: {cases} cases, {expanded} expanded, slowest {slowest:?} (seed {seed})");
    assert!(
        crashes.is_empty(),
        "{} panics (seed {seed}), the first:\n{}",
        crashes.len(),
        crashes.join("\n\n")
    );
    assert!(cases >= 20, "only {cases} cases ran");
    assert!(expanded > 0, "no mutated input expanded in {cases} cases");
}
