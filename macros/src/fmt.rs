//! Numbers as messages and docs write them: a leaf module, used by `check` (errors, the
//! summary's rows) and `expand` (docs) alike, so that neither imports the other.

/// `[16, 5, 5]`
pub fn fmt_dims(dims: &[usize]) -> String {
    let inner: Vec<_> = dims.iter().map(usize::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// `5` for a square window, `3x5` (height x width) otherwise.
pub fn fmt_pair((h, w): (usize, usize)) -> String {
    if h == w {
        h.to_string()
    } else {
        format!("{h}x{w}")
    }
}

/// `61706` -> `61,706`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && digits.len().saturating_sub(i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
