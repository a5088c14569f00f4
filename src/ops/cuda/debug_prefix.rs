//! Reading a tensor's device pointer and length from the start of its `Debug` text: the part
//! of the CUDA bridge (`bridge.rs`, whose docs say why) that needs no device, so that it is
//! compiled, and tested, on the CPU too.

use std::fmt::Write;

/// The start of a flat tensor's `Debug` text up to its buffer's pointer and length, the
/// digits cut out: the versions pinned in `Cargo.toml` print exactly this.
pub(crate) const EXPECTED: &str = "Tensor { id: UniqueId(#), data: CachableCudaSlice { data: CudaSlice { \
                        cu_device_ptr: #, len: #, device";

/// A `fmt::Write` that keeps the first bytes written and stops the formatter once it has seen
/// `, device` (or has kept `CAP` bytes without seeing it), so that the device's own long
/// `Debug` text is never produced.
pub(crate) struct Prefix {
    buf: [u8; Prefix::CAP],
    len: usize,
}

impl Prefix {
    const CAP: usize = 256;

    pub(crate) fn new() -> Self {
        Prefix {
            buf: [0; Self::CAP],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, and cutting at CAP may split a character only
        // past the ASCII prefix that matters: keep the valid part.
        match std::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or_default(),
        }
    }
}

impl Write for Prefix {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let take = s.len().min(Self::CAP - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if self.len == Self::CAP || self.as_str().contains(", device") {
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}

/// `(pointer, length)` from a `Debug` prefix shaped like [`EXPECTED`], or `None` for any other
/// text (every literal part must match; each `#` is one or more decimal digits).
pub(crate) fn parse(text: &str) -> Option<(u64, usize)> {
    let mut numbers = Vec::with_capacity(3);
    let mut rest = text;
    let mut parts = EXPECTED.split('#').peekable();
    while let Some(literal) = parts.next() {
        rest = rest.strip_prefix(literal)?;
        if parts.peek().is_none() {
            break;
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        numbers.push(rest[..digits].parse::<u64>().ok()?);
        rest = &rest[digits..];
    }
    match numbers[..] {
        [_id, ptr, len] if ptr != 0 => Some((ptr, usize::try_from(len).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix_of(text: &str) -> String {
        let mut w = Prefix::new();
        // Written in pieces, as a formatter does.
        for piece in text.split_inclusive(' ') {
            if w.write_str(piece).is_err() {
                break;
            }
        }
        w.as_str().to_string()
    }

    /// What dfdx 0.13.0 and cudarc 0.9.15 print, from their derives (field order:
    /// `Tensor { id, data, .. }`, `CachableCudaSlice { data, cache }`, `CudaSlice {
    /// cu_device_ptr, len, device, host_buf }`).
    const REAL: &str = "Tensor { id: UniqueId(42), data: CachableCudaSlice { data: CudaSlice { \
                        cu_device_ptr: 139849020620800, len: 150528, device: CudaDevice { \
                        cu_device: 0, cu_primary_ctx: 0x55d0 } } } }";

    #[test]
    fn reads_pointer_and_length() {
        assert_eq!(
            parse(&prefix_of(REAL)),
            Some((139_849_020_620_800, 150_528))
        );
    }

    #[test]
    fn stops_at_the_device() {
        let p = prefix_of(REAL);
        assert!(p.contains(", device"), "{p}");
        assert!(!p.contains("CudaDevice"), "{p}");
    }

    #[test]
    fn refuses_anything_else() {
        for text in [
            // a field renamed, reordered, missing, or a number that is not one
            REAL.replace("cu_device_ptr", "ptr"),
            REAL.replace("len: 150528, ", ""),
            REAL.replace("CachableCudaSlice { data: ", ""),
            REAL.replace("UniqueId(42)", "UniqueId(x)"),
            REAL.replace("139849020620800", "0x7f"),
            // a null pointer
            REAL.replace("139849020620800", "0"),
            String::new(),
        ] {
            assert_eq!(parse(&prefix_of(&text)), None, "{text}");
        }
    }
}
