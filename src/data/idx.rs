//! The IDX file format of MNIST and Fashion-MNIST, raw or gzipped.
//!
//! An IDX file is a 4-byte magic number, one big-endian `u32` size per dimension, then the
//! payload in row-major order:
//!
//! ```text
//! offset  bytes  meaning
//! 0       2      0x00 0x00
//! 2       1      data type: 0x08 unsigned byte (the only one MNIST uses, and the only one read)
//! 3       1      number of dimensions, d
//! 4       4*d    the sizes, big-endian u32 each
//! 4+4d    ...    the payload: product of the sizes, one byte each for 0x08
//! ```

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::DataError;

/// The first two bytes of every gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The only IDX data type read: unsigned byte.
const UBYTE: u8 = 0x08;

/// Reserve at most this much up front, so that a header claiming a huge payload cannot make
/// us allocate it before the data proves to be there. The real Fashion-MNIST training images
/// (47 MB) fit.
const MAX_RESERVE: usize = 64 << 20;

/// An IDX file's contents: its sizes and its row-major payload of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// The size of each dimension, outermost first: `[60000, 28, 28]` for the training images.
    pub dims: Vec<usize>,
    /// The payload, row-major; its length is the product of `dims`.
    pub data: Vec<u8>,
}

impl Idx {
    /// The sizes as the messages print them: `60000x28x28`.
    pub fn shape(&self) -> String {
        shape(&self.dims)
    }
}

/// Reads an IDX file of unsigned bytes, gunzipping it first if it starts with the gzip magic
/// bytes `1f 8b` (whatever its name). A gzip file of several members (as `cat a.gz b.gz`,
/// `pigz` and some recompressors make) is read whole, as `gunzip` reads it.
///
/// Every check failure is an error naming `path`: a missing file, a stream that is not gzip
/// or not IDX, a data type other than `0x08`, and a payload shorter or longer than the header's
/// sizes say. It never panics on bad input.
pub fn read_idx(path: &Path) -> Result<Idx, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = read_full(&mut file, &mut magic).map_err(|e| DataError::io(path, e))?;
    // Put the peeked bytes back in front of the rest of the file.
    let stream = Cursor::new(magic[..n].to_vec()).chain(file);
    if magic[..n] == GZIP_MAGIC {
        parse(path, MultiGzDecoder::new(BufReader::new(stream)), true)
    } else {
        parse(path, BufReader::new(stream), false)
    }
}

/// Parses an IDX stream; `gzip` only changes how read errors are reported.
fn parse(path: &Path, mut r: impl Read, gzip: bool) -> Result<Idx, DataError> {
    // A decoder reports corrupt or cut-off gzip data as an io error; it is a format problem
    // with the file, not a failure of the disk.
    let read_err = |e: io::Error| {
        let bad_data = matches!(
            e.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
        );
        if gzip && bad_data {
            DataError::format(path, format!("corrupt or truncated gzip data: {e}"))
        } else {
            DataError::io(path, e)
        }
    };

    let mut head = [0u8; 4];
    let n = read_full(&mut r, &mut head).map_err(read_err)?;
    if n < 4 {
        return Err(DataError::format(
            path,
            format!("truncated: the IDX header needs 4 bytes, found {n}"),
        ));
    }
    if head[..2] != [0, 0] {
        return Err(DataError::format(
            path,
            format!(
                "not an IDX file: starts with {:02x} {:02x} {:02x} {:02x}, expected 00 00 then a type byte and a dimension count",
                head[0], head[1], head[2], head[3]
            ),
        ));
    }
    let dtype = head[2];
    if dtype != UBYTE {
        return Err(DataError::format(
            path,
            format!(
                "unsupported IDX data type 0x{dtype:02x} ({}); only 0x08 (unsigned byte) is read",
                dtype_name(dtype)
            ),
        ));
    }
    let ndims = usize::from(head[3]);
    if ndims == 0 {
        return Err(DataError::format(path, "IDX header has 0 dimensions"));
    }

    let mut sizes = vec![0u8; 4 * ndims];
    let n = read_full(&mut r, &mut sizes).map_err(read_err)?;
    if n < sizes.len() {
        return Err(DataError::format(
            path,
            format!(
                "truncated: the IDX header needs {} bytes for {ndims} dimensions, found {}",
                4 + sizes.len(),
                4 + n
            ),
        ));
    }
    let dims: Vec<usize> = sizes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let Some(expected) = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        return Err(DataError::format(
            path,
            format!("header sizes {} overflow the address space", shape(&dims)),
        ));
    };

    let mut data = Vec::with_capacity(expected.min(MAX_RESERVE));
    (&mut r)
        .take(expected as u64)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() < expected {
        return Err(DataError::format(
            path,
            format!(
                "truncated: header says {} = {expected} bytes, found {}",
                shape(&dims),
                data.len()
            ),
        ));
    }
    // Count what follows instead of reading it, so trailing junk costs no memory.
    let extra = io::copy(&mut r, &mut io::sink()).map_err(read_err)?;
    if extra > 0 {
        return Err(DataError::format(
            path,
            format!(
                "too long: header says {} = {expected} bytes, found {}",
                shape(&dims),
                expected as u64 + extra
            ),
        ));
    }
    Ok(Idx { dims, data })
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// `60000x28x28`.
pub(crate) fn shape(dims: &[usize]) -> String {
    dims.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// The IDX type codes, so that a rejected file says what it holds.
fn dtype_name(dtype: u8) -> &'static str {
    match dtype {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0b => "i16",
        0x0c => "i32",
        0x0d => "f32",
        0x0e => "f64",
        _ => "not an IDX type",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    /// An IDX file of unsigned bytes with the given sizes and payload, as the format lays it
    /// out; the payload is not checked against the sizes, so tests can write bad files.
    pub(crate) fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, UBYTE, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// The error's message, asserting that it names the file.
    fn message(path: &Path, err: DataError) -> String {
        let msg = crate::error_chain(&err);
        assert!(
            msg.contains(&path.display().to_string()),
            "{msg:?} does not name {}",
            path.display()
        );
        msg
    }

    #[test]
    fn reads_raw_and_gzip_alike() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let raw = write(dir.path(), "a-idx2-ubyte", &bytes);
        let gz = write(dir.path(), "a-idx2-ubyte.gz", &gzip(&bytes));
        let want = Idx {
            dims: vec![2, 3],
            data: vec![1, 2, 3, 4, 5, 6],
        };
        assert_eq!(read_idx(&raw).unwrap(), want);
        assert_eq!(read_idx(&gz).unwrap(), want);
        assert_eq!(want.shape(), "2x3");
    }

    #[test]
    fn reads_every_member_of_a_multi_member_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        // Two members, split inside the header and inside the payload.
        for cut in [3, 10, 13] {
            let mut two = gzip(&bytes[..cut]);
            two.extend(gzip(&bytes[cut..]));
            let path = write(dir.path(), "two.gz", &two);
            assert_eq!(
                read_idx(&path).unwrap().data,
                [1, 2, 3, 4, 5, 6],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn detects_gzip_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(&[3], &[7, 8, 9]);
        let gz_named_raw = write(dir.path(), "labels", &gzip(&bytes));
        let raw_named_gz = write(dir.path(), "labels.gz", &bytes);
        assert_eq!(read_idx(&gz_named_raw).unwrap().data, [7, 8, 9]);
        assert_eq!(read_idx(&raw_named_gz).unwrap().data, [7, 8, 9]);
    }

    #[test]
    fn missing_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope-idx1-ubyte");
        let err = read_idx(&path).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        let msg = message(&path, err);
        assert!(
            msg.ends_with(": No such file or directory (os error 2)"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_magic() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "x", b"PK\x03\x04 not idx");
        let msg = message(&path, read_idx(&path).unwrap_err());
        assert!(msg.ends_with("not an IDX file: starts with 50 4b 03 04, expected 00 00 then a type byte and a dimension count"), "{msg}");
    }

    #[test]
    fn wrong_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = idx_bytes(&[1], &[0, 0, 0, 0]);
        bytes[2] = 0x0d;
        let path = write(dir.path(), "floats.gz", &gzip(&bytes));
        let msg = message(&path, read_idx(&path).unwrap_err());
        assert!(
            msg.ends_with(
                "unsupported IDX data type 0x0d (f32); only 0x08 (unsigned byte) is read"
            ),
            "{msg}"
        );
    }

    #[test]
    fn truncated_payload_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(&[3, 2, 2], &[9; 10]);
        for (name, contents) in [("t", bytes.clone()), ("t.gz", gzip(&bytes))] {
            let path = write(dir.path(), name, &contents);
            let msg = message(&path, read_idx(&path).unwrap_err());
            assert!(
                msg.ends_with("truncated: header says 3x2x2 = 12 bytes, found 10"),
                "{msg}"
            );
        }
    }

    #[test]
    fn too_long_payload() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "long", &idx_bytes(&[2], &[1, 2, 3]));
        let msg = message(&path, read_idx(&path).unwrap_err());
        assert!(
            msg.ends_with("too long: header says 2 = 2 bytes, found 3"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_header() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty", b"");
        let msg = message(&empty, read_idx(&empty).unwrap_err());
        assert!(
            msg.ends_with("truncated: the IDX header needs 4 bytes, found 0"),
            "{msg}"
        );

        let short = write(dir.path(), "short", &idx_bytes(&[5, 5, 5], &[])[..10]);
        let msg = message(&short, read_idx(&short).unwrap_err());
        assert!(
            msg.ends_with("truncated: the IDX header needs 16 bytes for 3 dimensions, found 10"),
            "{msg}"
        );
    }

    #[test]
    fn zero_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "scalar", &idx_bytes(&[], &[1]));
        let msg = message(&path, read_idx(&path).unwrap_err());
        assert!(msg.ends_with("IDX header has 0 dimensions"), "{msg}");
    }

    #[test]
    fn huge_header_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let huge = write(dir.path(), "huge", &idx_bytes(&[u32::MAX; 3], &[1]));
        let msg = message(&huge, read_idx(&huge).unwrap_err());
        // 64-bit: the product overflows usize; the message says so.
        assert!(msg.contains("overflow"), "{msg}");

        let big = write(dir.path(), "big", &idx_bytes(&[u32::MAX, 2], &[1]));
        let msg = message(&big, read_idx(&big).unwrap_err());
        assert!(
            msg.ends_with("truncated: header says 4294967295x2 = 8589934590 bytes, found 1"),
            "{msg}"
        );
    }

    #[test]
    fn corrupt_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let good = gzip(&idx_bytes(&[4], &[1, 2, 3, 4]));
        // Cut inside the deflate stream: the decoder, not the IDX check, notices.
        let path = write(dir.path(), "cut.gz", &good[..good.len() / 2]);
        let err = read_idx(&path).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        let msg = message(&path, err);
        assert!(msg.contains("gzip") || msg.contains("truncated"), "{msg}");

        let mut garbled = good.clone();
        garbled[3] = 0xff; // reserved flag bits: not a valid gzip header
        let path = write(dir.path(), "garbled.gz", &garbled);
        let msg = message(&path, read_idx(&path).unwrap_err());
        assert!(msg.contains("corrupt or truncated gzip data"), "{msg}");
    }
}
