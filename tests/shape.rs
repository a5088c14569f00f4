//! The library's size formulas (`cnn::shape`) against the tables the macro's unit tests read
//! too (`tests/shape_cases.in` for convolution and pooling, `tests/conv_transpose_cases.in` for
//! transposed convolution): each formula lives in both places, and both must agree with them.

/// The cases of a table: `(line, the numbers before "->", the number after it)`, skipping
/// blank lines and `#` comments.
fn cases(table: &str) -> Vec<(String, Vec<usize>, usize)> {
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .unwrap_or_else(|e| panic!("`{v}`: {e}"))
    };
    table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (args, out) = line
                .split_once("->")
                .unwrap_or_else(|| panic!("`{line}`: no `->`"));
            (
                line.to_string(),
                args.split_whitespace().map(parse).collect(),
                parse(out),
            )
        })
        .collect()
}

#[test]
fn library_formula_matches_the_shared_table() {
    let cases = cases(include_str!("shape_cases.in"));
    assert!(cases.len() >= 20, "only {} cases in the table", cases.len());
    for (line, args, out) in cases {
        let [n, k, s, p, d] = args[..] else {
            panic!("`{line}`: want `n k s p d -> out`")
        };
        assert_eq!(cnn::shape::conv_out(n, k, s, p, p, d), out, "{line}");
        if d == 1 && 2 * p <= k && out > 0 {
            assert_eq!(cnn::shape::pool_out(n, k, s, p), out, "{line}");
        }
    }
}

#[test]
fn library_transposed_formula_matches_the_shared_table() {
    let cases = cases(include_str!("conv_transpose_cases.in"));
    assert!(cases.len() >= 15, "only {} cases in the table", cases.len());
    for (line, args, out) in cases {
        let [n, k, s, p, op, d] = args[..] else {
            panic!("`{line}`: want `n k s p op d -> out`")
        };
        assert_eq!(
            cnn::shape::conv_transpose_out(n, k, s, p, op, d),
            out,
            "{line}"
        );
    }
}
