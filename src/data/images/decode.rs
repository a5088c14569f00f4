//! One image file to 8-bit pixels with the network's number of channels.

use std::io::Cursor;
use std::path::Path;

use image::io::{Limits, Reader};
use image::{DynamicImage, ImageError};

use super::{Image, exif};
use crate::data::DataError;

/// Pillow's `Image.MAX_IMAGE_PIXELS` (`1024 * 1024 * 1024 // 4 // 3`, about 89 megapixels):
/// the largest image [`decode`] opens by default. Pillow warns above it and refuses twice it;
/// a training image that large is a mistake or a decompression bomb (a few kilobytes of PNG
/// that inflate to gigabytes), so here it is refused.
pub const DEFAULT_MAX_PIXELS: u64 = 1024 * 1024 * 1024 / 4 / 3;

/// What to do with an image whose colours differ from the network's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colour {
    /// Convert as torchvision's `ImageFolder` and `Grayscale` do: colour to grey with
    /// Pillow's `L` formula (`(19595 R + 38470 G + 7471 B + 2^15) >> 16`, ITU-R 601-2), grey to
    /// colour by repeating it, alpha dropped (Pillow's `convert("RGB")` drops it too, without
    /// compositing on a background).
    #[default]
    Convert,
    /// Refuse, naming the file: for a data set that must already be what the network takes.
    Refuse,
}

/// How [`decode`] reads files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The largest `width * height` opened; larger images are refused before they are
    /// decoded. Default [`DEFAULT_MAX_PIXELS`].
    pub max_pixels: u64,
    /// Turn and flip each image as its EXIF orientation tag says (what a phone's photo needs to
    /// stand upright). Default true. torchvision does not (`PIL.Image.open` leaves the tag
    /// unapplied unless `ImageOps.exif_transpose` is called), so set it to false to see
    /// exactly the pixels a torchvision pipeline sees.
    pub orientation: bool,
    /// Converting or refusing other colours. Default [`Colour::Convert`].
    pub colour: Colour,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: DEFAULT_MAX_PIXELS,
            orientation: true,
            colour: Colour::Convert,
        }
    }
}

/// Reads the image at `path` as 8-bit pixels with `channels` channels (1: grey, 3: RGB).
///
/// JPEG, PNG, WebP, BMP, GIF (its first frame), TIFF and PNM are read, by their contents, not
/// their names. 16-bit images are scaled to 8 bits (`round(v / 257)`, where Pillow's
/// `convert("RGB")` of a 16-bit PNG would clip everything above 255); palette images are
/// expanded through their palette.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read (missing, permissions); otherwise
/// [`DataError::Format`] naming the file and the problem: not a regular file, empty (0
/// bytes), not an image, larger than `max_pixels`, corrupt or truncated, or (with
/// [`Colour::Refuse`]) other colours than `channels`. Never panics on bad input.
pub fn decode(path: &Path, channels: usize, opts: &DecodeOptions) -> Result<Image, DataError> {
    let bad = |what: String| DataError::format(path, what);
    if channels != 1 && channels != 3 {
        return Err(bad(format!(
            "cannot make {channels} channels from an image (1, grey, or 3, RGB)"
        )));
    }
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(bad("empty file (0 bytes)".into()));
    }
    let reader = || {
        Reader::new(Cursor::new(&bytes[..]))
            .with_guessed_format()
            .expect("reading from memory cannot fail")
    };
    let Some(format) = reader().format() else {
        return Err(bad(NOT_AN_IMAGE.into()));
    };
    let format_name = format!("{format:?}").to_uppercase();
    // Headers first: a decompression bomb is refused before anything is allocated for it.
    let (w, h) = reader()
        .into_dimensions()
        .map_err(|e| bad(describe(&format_name, &e)))?;
    check_size(path, w, h, opts.max_pixels)?;
    let pixels = u64::from(w) * u64::from(h);
    let mut reader = reader();
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // 16-bit RGBA is the widest a supported format decodes to: 8 bytes a pixel, and a frame
    // of working space for the decoders that keep one.
    limits.max_alloc = Some(pixels.saturating_mul(16).max(1 << 20));
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| bad(describe(&format_name, &e)))?;
    let grey = !decoded.color().has_color();
    if opts.colour == Colour::Refuse && grey != (channels == 1) {
        let (is, takes) = match grey {
            true => ("grey", "colour (3 channels)"),
            false => ("colour", "grey (1 channel)"),
        };
        return Err(bad(format!(
            "is {is} and the network takes {takes}; convert the data set, or use \
             Colour::Convert"
        )));
    }
    let img = to_channels(decoded, channels);
    Ok(match opts.orientation {
        true => exif::orient(img, exif::orientation(&bytes).unwrap_or(1)),
        false => img,
    })
}

/// `img` as 8-bit grey (`channels` 1) or RGB (3), converted as [`Colour::Convert`] says.
fn to_channels(img: DynamicImage, channels: usize) -> Image {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let grey = !img.color().has_color();
    let data = match (channels, grey) {
        (1, true) => img.into_luma8().into_raw(),
        (1, false) => img.into_rgb8().chunks_exact(3).map(pil_l).collect(),
        _ => img.into_rgb8().into_raw(),
    };
    Image {
        width,
        height,
        channels,
        data,
    }
}

/// Pillow's RGB to `L` (`Convert.c`, `L24`): ITU-R 601-2 luma in 16-bit fixed point, rounded.
pub(crate) fn pil_l(rgb: &[u8]) -> u8 {
    let [r, g, b] = [rgb[0], rgb[1], rgb[2]].map(u32::from);
    ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
}

/// Reads only `path`'s header: its size, checked against `max_pixels`, with the errors of
/// [`decode`] for files that are missing, unreadable, empty, not images or too large.
pub(crate) fn probe(path: &Path, max_pixels: u64) -> Result<(u32, u32), DataError> {
    let bad = |what: String| DataError::format(path, what);
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() == 0 {
        return Err(bad("empty file (0 bytes)".into()));
    }
    // By contents only: `Reader::open` would take a format from the name, and call a text
    // file named `.jpg` a corrupt JPEG.
    let reader = std::fs::File::open(path)
        .and_then(|f| Reader::new(std::io::BufReader::new(f)).with_guessed_format())
        .map_err(|e| DataError::io(path, e))?;
    let Some(format) = reader.format() else {
        return Err(bad(NOT_AN_IMAGE.into()));
    };
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| bad(describe(&format!("{format:?}").to_uppercase(), &e)))?;
    check_size(path, w, h, max_pixels)?;
    Ok((w, h))
}

/// [`decode`]'s and [`probe`]'s message for a file of no known format.
const NOT_AN_IMAGE: &str = "not an image (no JPEG, PNG, WebP, BMP, GIF, TIFF or PNM signature)";

/// Refuses an image of `w x h` pixels when that is none, or more than `max_pixels`.
fn check_size(path: &Path, w: u32, h: u32, max_pixels: u64) -> Result<(), DataError> {
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(DataError::format(
            path,
            format!(
                "{w}x{h} = {pixels} pixels is more than the {max_pixels} allowed (a \
                 decompression bomb? raise DecodeOptions::max_pixels if the image is genuine)"
            ),
        ));
    }
    if pixels == 0 {
        return Err(DataError::format(
            path,
            format!("{w}x{h}: the image holds no pixels"),
        ));
    }
    Ok(())
}

/// `image`'s error in words that say what the user can do.
fn describe(format: &str, e: &ImageError) -> String {
    match e {
        ImageError::Decoding(e) => format!("corrupt or truncated {format}: {e}"),
        ImageError::Limits(e) => format!("too large to decode safely: {e}"),
        ImageError::Unsupported(e) => format!("unsupported {format}: {e}"),
        ImageError::IoError(e) => format!("truncated {format}: {e}"),
        e => format!("cannot decode {format}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, ImageFormat, Luma, Rgb, Rgba};

    fn write(dir: &Path, name: &str, img: DynamicImage, format: ImageFormat) -> std::path::PathBuf {
        let path = dir.join(name);
        img.save_with_format(&path, format).unwrap();
        path
    }

    fn rgb() -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(5, 3, |x, y| {
            Rgb([(x * 50) as u8, (y * 100) as u8, 200])
        }))
    }

    #[test]
    fn pil_l_matches_pillow() {
        // Pillow 13.0.0: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0))
        for (rgb, l) in [
            ([255, 255, 255], 255),
            ([255, 0, 0], 76),
            ([0, 255, 0], 150),
            ([0, 0, 255], 29),
            ([10, 20, 30], 18),
            ([128, 64, 200], 99),
        ] {
            assert_eq!(pil_l(&rgb), l, "{rgb:?}");
        }
    }

    #[test]
    fn every_enabled_format_decodes_to_the_same_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let want = rgb().into_rgb8().into_raw();
        for (name, format) in [
            ("a.png", ImageFormat::Png),
            ("a.bmp", ImageFormat::Bmp),
            ("a.tiff", ImageFormat::Tiff),
            ("a.ppm", ImageFormat::Pnm),
            ("a.gif", ImageFormat::Gif),
        ] {
            let path = write(dir.path(), name, rgb(), format);
            let img = decode(&path, 3, &DecodeOptions::default()).unwrap();
            assert_eq!((img.width, img.height, img.channels), (5, 3, 3), "{name}");
            if format != ImageFormat::Gif {
                assert_eq!(img.data, want, "{name}");
            }
        }
        // JPEG is lossy: close, not equal.
        let path = write(dir.path(), "a.jpg", rgb(), ImageFormat::Jpeg);
        let img = decode(&path, 3, &DecodeOptions::default()).unwrap();
        let worst = img
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(worst < Some(40), "{worst:?}");
    }

    #[test]
    fn sixteen_bit_alpha_grey_and_colour_conversions() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DecodeOptions::default();
        // 16-bit grey: scaled, not clipped
        let g16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(2, 1, |x, _| {
            Luma([if x == 0 { 65535 } else { 257 * 100 }])
        }));
        let path = write(dir.path(), "g16.png", g16, ImageFormat::Png);
        assert_eq!(decode(&path, 1, &opts).unwrap().data, [255, 100]);
        assert_eq!(
            decode(&path, 3, &opts).unwrap().data,
            [255, 255, 255, 100, 100, 100]
        );
        // RGBA: alpha dropped; to grey with Pillow's formula
        let rgba =
            DynamicImage::ImageRgba8(ImageBuffer::from_fn(1, 1, |_, _| Rgba([128, 64, 200, 7])));
        let path = write(dir.path(), "rgba.png", rgba, ImageFormat::Png);
        assert_eq!(decode(&path, 3, &opts).unwrap().data, [128, 64, 200]);
        assert_eq!(decode(&path, 1, &opts).unwrap().data, [99]);
        // Refused where asked, naming the file
        let strict = DecodeOptions {
            colour: Colour::Refuse,
            ..opts
        };
        let msg = decode(&path, 1, &strict).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: is colour and the network takes grey (1 channel); convert the data set, \
                 or use Colour::Convert",
                path.display()
            )
        );
    }

    #[test]
    fn bad_files_are_named_with_their_problem() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DecodeOptions::default();
        let fails = |path: &Path| {
            let err = decode(path, 3, &opts).unwrap_err();
            crate::error_chain(&err)
        };
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            fails(&empty),
            format!("{}: empty file (0 bytes)", empty.display())
        );

        let text = dir.path().join("notes.png");
        std::fs::write(&text, b"not a picture at all").unwrap();
        assert!(fails(&text).ends_with(
            "notes.png: not an image (no JPEG, PNG, WebP, BMP, GIF, TIFF or PNM signature)"
        ));

        for (name, format) in [("t.png", ImageFormat::Png), ("t.jpg", ImageFormat::Jpeg)] {
            let whole = write(dir.path(), name, rgb(), format);
            let bytes = std::fs::read(&whole).unwrap();
            std::fs::write(&whole, &bytes[..bytes.len() / 2]).unwrap();
            let msg = fails(&whole);
            assert!(
                msg.starts_with(&format!("{}: ", whole.display()))
                    && (msg.contains("corrupt or truncated") || msg.contains("truncated")),
                "{msg}"
            );
        }

        let folder = dir.path().join("folder.png");
        std::fs::create_dir(&folder).unwrap();
        assert!(fails(&folder).ends_with("folder.png: not a regular file"));

        let missing = dir.path().join("missing.png");
        assert!(fails(&missing).contains("No such file or directory"));
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        // 10000 x 10000 black pixels compress to a few hundred kilobytes of PNG.
        let big = DynamicImage::ImageLuma8(ImageBuffer::new(10_000, 10_000));
        let path = write(dir.path(), "bomb.png", big, ImageFormat::Png);
        assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
        let opts = DecodeOptions {
            max_pixels: 50_000_000,
            ..Default::default()
        };
        let msg = decode(&path, 1, &opts).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: 10000x10000 = 100000000 pixels is more than the 50000000 allowed (a \
                 decompression bomb? raise DecodeOptions::max_pixels if the image is genuine)",
                path.display()
            )
        );
    }

    #[test]
    fn exif_orientation_is_applied_unless_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "o.png", rgb(), ImageFormat::Png);
        // insert an eXIf chunk (orientation 6: a quarter turn clockwise) after IHDR
        let bytes = std::fs::read(&path).unwrap();
        let tiff = exif::tests::tiff(false, 0x0112, 6);
        let mut chunk = (tiff.len() as u32).to_be_bytes().to_vec();
        chunk.extend(b"eXIf");
        chunk.extend(&tiff);
        let crc = crc32(&chunk[4..]);
        chunk.extend(crc.to_be_bytes());
        let ihdr_end = 8 + 4 + 4 + 13 + 4;
        let mut tagged = bytes[..ihdr_end].to_vec();
        tagged.extend(chunk);
        tagged.extend(&bytes[ihdr_end..]);
        std::fs::write(&path, tagged).unwrap();

        let upright = decode(&path, 3, &DecodeOptions::default()).unwrap();
        assert_eq!((upright.width, upright.height), (3, 5));
        let raw = DecodeOptions {
            orientation: false,
            ..Default::default()
        };
        assert_eq!(decode(&path, 3, &raw).unwrap().width, 5);
    }

    /// PNG's CRC-32 (the chunk's type and data).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
