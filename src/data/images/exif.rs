//! The EXIF orientation tag (0x0112) of a JPEG, PNG or WebP file, and the turn or flip it asks
//! for.
//!
//! Hand-written rather than a crate: `image` 0.24 reads no metadata (0.25.4 added
//! `ImageDecoder::orientation`, but plotters pins 0.24, so moving would build two `image`s),
//! and the one tag needs only the container's framing and the first TIFF directory: about
//! eighty lines, each bounds-checked so that a malformed block is ignored, never a panic.

use super::Image;

/// The orientation (1 to 8) that `bytes`' EXIF block records, if it has one that reads.
pub(crate) fn orientation(bytes: &[u8]) -> Option<u16> {
    let tiff = if bytes.starts_with(&[0xFF, 0xD8]) {
        jpeg_exif(bytes)?
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png_exif(bytes)?
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        webp_exif(bytes)?
    } else {
        return None;
    };
    tiff_orientation(tiff.strip_prefix(b"Exif\0\0").unwrap_or(tiff))
}

/// A JPEG's APP1 `Exif` segment (after its `Exif\0\0` header), looked for up to the scan.
fn jpeg_exif(b: &[u8]) -> Option<&[u8]> {
    let mut at = 2;
    while at + 4 <= b.len() && b[at] == 0xFF {
        let marker = b[at + 1];
        // Start of scan or end of image: metadata comes before them.
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
        let segment = b.get(at + 4..at + 2 + len)?;
        if marker == 0xE1 && segment.starts_with(b"Exif\0\0") {
            return Some(segment);
        }
        at += 2 + len;
    }
    None
}

/// A PNG's `eXIf` chunk.
fn png_exif(b: &[u8]) -> Option<&[u8]> {
    let mut at = 8;
    while at + 8 <= b.len() {
        let len = u32::from_be_bytes(b[at..at + 4].try_into().ok()?) as usize;
        let data = b.get(at + 8..(at + 8).checked_add(len)?)?;
        if &b[at + 4..at + 8] == b"eXIf" {
            return Some(data);
        }
        at += 12 + len; // length, type, data, CRC
    }
    None
}

/// A WebP's `EXIF` chunk.
fn webp_exif(b: &[u8]) -> Option<&[u8]> {
    let mut at = 12;
    while at + 8 <= b.len() {
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().ok()?) as usize;
        let data = b.get(at + 8..(at + 8).checked_add(len)?)?;
        if &b[at..at + 4] == b"EXIF" {
            return Some(data);
        }
        at += 8 + len + (len & 1); // chunks are padded to an even length
    }
    None
}

/// Tag 0x0112 of a TIFF block's first directory, when it is a SHORT from 1 to 8.
fn tiff_orientation(t: &[u8]) -> Option<u16> {
    let big = match t.get(..4)? {
        b"MM\0\x2a" => true,
        b"II\x2a\0" => false,
        _ => return None,
    };
    let u16_at = |i: usize| {
        let b: [u8; 2] = t.get(i..i + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let b: [u8; 4] = t.get(4..8)?.try_into().ok()?;
    let ifd = if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    } as usize;
    let count = usize::from(u16_at(ifd)?);
    (0..count).find_map(|k| {
        let entry = ifd + 2 + 12 * k;
        // tag, type 3 (SHORT), value in the entry's first two value bytes
        (u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3)
            .then(|| u16_at(entry + 8))
            .flatten()
            .filter(|v| (1..=8).contains(v))
    })
}

/// `img` turned and flipped as EXIF orientation `code` asks, as Pillow's
/// `ImageOps.exif_transpose` does it (2: mirror, 3: half turn, 4: flip, 5: transpose, 6: a
/// quarter turn clockwise, 7: transverse, 8: a quarter turn anticlockwise); 1 and unknown
/// codes leave it as it is.
pub(crate) fn orient(img: Image, code: u16) -> Image {
    let (h, w, c) = (img.height, img.width, img.channels);
    if !(2..=8).contains(&code) {
        return img;
    }
    let swap = code >= 5;
    let (oh, ow) = if swap { (w, h) } else { (h, w) };
    let mut data = Vec::with_capacity(img.data.len());
    for r in 0..oh {
        for col in 0..ow {
            // the input pixel that lands at (r, col)
            let (y, x) = match code {
                2 => (r, w - 1 - col),
                3 => (h - 1 - r, w - 1 - col),
                4 => (h - 1 - r, col),
                5 => (col, r),
                6 => (h - 1 - col, r),
                7 => (h - 1 - col, w - 1 - r),
                _ => (col, w - 1 - r), // 8
            };
            let at = (y * w + x) * c;
            data.extend_from_slice(&img.data[at..at + c]);
        }
    }
    Image {
        width: ow,
        height: oh,
        channels: c,
        data,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A TIFF block (`II` or `MM`) whose first directory holds one SHORT tag.
    pub(crate) fn tiff(big: bool, tag: u16, value: u16) -> Vec<u8> {
        let w16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut t = if big { b"MM".to_vec() } else { b"II".to_vec() };
        t.extend(w16(42));
        t.extend(w32(8));
        t.extend(w16(1));
        t.extend(w16(tag));
        t.extend(w16(3));
        t.extend(w32(1));
        t.extend(w16(value));
        t.extend([0, 0, 0, 0, 0, 0]);
        t
    }

    #[test]
    fn reads_the_tag_from_each_container_and_byte_order() {
        for big in [false, true] {
            let mut exif = b"Exif\0\0".to_vec();
            exif.extend(tiff(big, 0x0112, 6));
            // JPEG: SOI, an APP0, then APP1 with the block, then SOS
            let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xE1];
            jpeg.extend(((exif.len() + 2) as u16).to_be_bytes());
            jpeg.extend(&exif);
            jpeg.extend([0xFF, 0xDA, 0, 2]);
            assert_eq!(orientation(&jpeg), Some(6));

            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            png.extend(0u32.to_be_bytes());
            png.extend(b"IHDR\0\0\0\0");
            png.extend((exif.len() as u32 - 6).to_be_bytes());
            png.extend(b"eXIf");
            png.extend(&exif[6..]);
            png.extend([0; 4]);
            assert_eq!(orientation(&png), Some(6));

            let mut webp = b"RIFF\0\0\0\0WEBPVP8 ".to_vec();
            webp.extend(1u32.to_le_bytes());
            webp.extend([0, 0]); // one byte and its padding
            webp.extend(b"EXIF");
            webp.extend((exif.len() as u32).to_le_bytes());
            webp.extend(&exif);
            assert_eq!(orientation(&webp), Some(6));
        }
    }

    #[test]
    fn malformed_or_missing_blocks_give_none() {
        assert_eq!(orientation(b""), None);
        assert_eq!(orientation(&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF]), None);
        assert_eq!(tiff_orientation(&tiff(false, 0x0112, 9)), None);
        assert_eq!(tiff_orientation(&tiff(true, 0x0100, 3)), None);
        let mut cut = tiff(false, 0x0112, 3);
        cut.truncate(14);
        assert_eq!(tiff_orientation(&cut), None);
        // a directory offset far past the end
        let mut far = tiff(true, 0x0112, 3);
        far[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(tiff_orientation(&far), None);
    }

    #[test]
    fn each_code_turns_a_2x3_image_as_pillow_does() {
        // 2 rows x 3 columns, one channel:
        // 1 2 3
        // 4 5 6
        let img = Image {
            width: 3,
            height: 2,
            channels: 1,
            data: vec![1, 2, 3, 4, 5, 6],
        };
        let rows = |i: Image| {
            i.data
                .chunks(i.width)
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        };
        // Pillow 13.0.0: ImageOps.exif_transpose of this image saved as PNG tagged with each code.
        let want: [&[&[u8]]; 8] = [
            &[&[1, 2, 3], &[4, 5, 6]],
            &[&[3, 2, 1], &[6, 5, 4]],
            &[&[6, 5, 4], &[3, 2, 1]],
            &[&[4, 5, 6], &[1, 2, 3]],
            &[&[1, 4], &[2, 5], &[3, 6]],
            &[&[4, 1], &[5, 2], &[6, 3]],
            &[&[6, 3], &[5, 2], &[4, 1]],
            &[&[3, 6], &[2, 5], &[1, 4]],
        ];
        for (code, want) in (1..=8).zip(want) {
            assert_eq!(rows(orient(img.clone(), code)), want, "code {code}");
        }
    }
}
