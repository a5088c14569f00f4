//! The library's size formulas (`cnn::shape`) against the table the macro's unit tests read too
//! (`tests/shape_cases.in`): the formula lives in both places, and both must agree with it.

#[test]
fn library_formula_matches_the_shared_table() {
    let table = include_str!("shape_cases.in");
    let mut checked = 0;
    for (line_no, line) in table.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (args, out) = line.split_once("->").unwrap_or_else(|| panic!("line {}: no `->`", line_no + 1));
        let n: Vec<usize> = args.split_whitespace().map(|v| v.parse().unwrap()).collect();
        let [n, k, s, p, d] = n[..] else { panic!("line {}: want `n k s p d -> out`", line_no + 1) };
        let out: usize = out.trim().parse().unwrap();
        assert_eq!(cnn::shape::conv_out(n, k, s, p, p, d), out, "line {}: {line}", line_no + 1);
        if d == 1 && 2 * p <= k && out > 0 {
            assert_eq!(cnn::shape::pool_out(n, k, s, p), out, "line {}: {line}", line_no + 1);
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cases in the table");
}
