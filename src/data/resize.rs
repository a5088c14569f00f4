//! Antialiased bilinear and bicubic resizing of 8-bit images, bit for bit as Pillow does it, and
//! so as torchvision's `Resize(96)` resizes a Fashion-MNIST image: d2l's `load_data_fashion_mnist(batch_size, resize=96)` puts
//! `transforms.Resize` before `ToTensor`, so it runs on the 8-bit PIL image, and PIL resamples
//! it in two passes (rows, then columns) with fixed-point weights and an 8-bit image in between
//! (Pillow's `libImaging/Resample.c`). Rounding at each step is part of the result, so this
//! follows that code step by step; `tests/goldens/resize.py` made the goldens it is checked
//! against with Pillow itself.

use super::Dataset;

/// Pillow's fixed-point precision for 8-bit images (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A resampling filter, as Pillow defines it (`libImaging/Resample.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// `Image.BILINEAR` (a triangle of support 1): torchvision's default for `Resize`.
    #[default]
    Bilinear,
    /// `Image.BICUBIC` (Keys' cubic with `a = -0.5`, support 2).
    Bicubic,
}

impl Filter {
    /// The filter's support: how far from its centre it reaches, in input pixels at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    /// The filter's value at `x`.
    fn at(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear if x < 1.0 => 1.0 - x,
            Filter::Bicubic if x < 1.0 => ((-0.5 + 2.0) * x - (-0.5 + 3.0)) * x * x + 1.0,
            Filter::Bicubic if x < 2.0 => (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5,
            _ => 0.0,
        }
    }
}

/// For each output position along an axis of `input` pixels resized to `output`: the first
/// input pixel it reads and its fixed-point weights (Pillow's `precompute_coeffs`, then
/// `normalize_coeffs_8bpc`). When shrinking, the filter widens by the scale (antialiasing).
fn weights(filter: Filter, input: usize, output: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates towards zero; PIL then clamps to the image.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| filter.at((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let v = w * f64::from(1u32 << PRECISION_BITS);
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// A fixed-point sum back to 8 bits, rounded (the sum starts at one half), clamped.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `img` (`rows x cols` 8-bit pixels, row-major) resized to `out_rows x out_cols` as PIL's
/// `Image.resize((out_cols, out_rows), Image.BILINEAR)` resizes an `L` image.
pub fn resize_bilinear_u8(
    img: &[u8],
    (rows, cols): (usize, usize),
    (out_rows, out_cols): (usize, usize),
) -> Vec<u8> {
    resize_u8(img, (rows, cols, 1), (out_rows, out_cols), Filter::Bilinear)
}

/// `img` (`rows x cols` pixels of `channels` interleaved 8-bit values) resized to `out_rows x
/// out_cols` as PIL's `Image.resize((out_cols, out_rows), filter)` resizes an `L` or `RGB`
/// image: every channel alike, in two passes (rows, then columns) with an 8-bit image between.
///
/// # Panics
/// If `img` does not hold `rows * cols * channels` values.
pub fn resize_u8(
    img: &[u8],
    (rows, cols, channels): (usize, usize, usize),
    (out_rows, out_cols): (usize, usize),
    filter: Filter,
) -> Vec<u8> {
    let c = channels;
    assert_eq!(
        img.len(),
        rows * cols * c,
        "the image is not {rows}x{cols}x{c}"
    );
    let half = 1i64 << (PRECISION_BITS - 1);
    // Rows first, into an 8-bit image `rows x out_cols` (PIL keeps only the rows the second
    // pass reads; the others would be computed and dropped: the same values).
    let horizontal = weights(filter, cols, out_cols);
    let mut temp = vec![0u8; rows * out_cols * c];
    for y in 0..rows {
        let src = &img[y * cols * c..(y + 1) * cols * c];
        for (xx, (xmin, w)) in horizontal.iter().enumerate() {
            for ch in 0..c {
                let sum = w.iter().enumerate().fold(half, |s, (k, &w)| {
                    s + i64::from(src[(xmin + k) * c + ch]) * i64::from(w)
                });
                temp[(y * out_cols + xx) * c + ch] = clip8(sum);
            }
        }
    }
    let vertical = weights(filter, rows, out_rows);
    let mut out = vec![0u8; out_rows * out_cols * c];
    let row = out_cols * c;
    for (yy, (ymin, w)) in vertical.iter().enumerate() {
        for x in 0..row {
            let sum = w.iter().enumerate().fold(half, |s, (k, &w)| {
                s + i64::from(temp[(ymin + k) * row + x]) * i64::from(w)
            });
            out[yy * row + x] = clip8(sum);
        }
    }
    out
}

impl Dataset {
    /// Every image resized to `rows x cols` as torchvision's `transforms.Resize((rows, cols))`
    /// (bilinear) resizes a Fashion-MNIST PIL image, then scaled to `[0, 1]` as `ToTensor`
    /// does: d2l's `load_data_fashion_mnist(.., resize=96)` is `resized(96, 96)`. Pixels are
    /// read as the 8-bit values they were (`round(v * 255)`), since PIL works on those.
    ///
    /// A Fashion-MNIST training set at 96x96 takes 2.2 GB as `f32`.
    pub fn resized(&self, rows: usize, cols: usize) -> Dataset {
        use rayon::prelude::*;
        let (from, n) = ((self.rows, self.cols), self.pixels().max(1));
        let images = self
            .images
            .par_chunks(n)
            .flat_map_iter(|img| {
                let bytes: Vec<u8> = img
                    .iter()
                    .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                    .collect();
                resize_bilinear_u8(&bytes, from, (rows, cols))
                    .into_iter()
                    .map(|p| f32::from(p) / 255.0)
            })
            .collect();
        Dataset {
            images,
            labels: self.labels.clone(),
            rows,
            cols,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden files of `tests/goldens/resize.py` (Pillow): a 28x28 test pattern and what
    /// `Image.resize` makes of it at each listed size.
    fn golden(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/goldens/resize")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn matches_pillow_bit_for_bit() {
        let src = golden("pattern-28x28.u8");
        for (rows, cols) in [(96, 96), (56, 56), (33, 47), (14, 14), (28, 28)] {
            let want = golden(&format!("pattern-{rows}x{cols}.u8"));
            let got = resize_bilinear_u8(&src, (28, 28), (rows, cols));
            let wrong = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(got.len(), want.len());
            assert_eq!(
                wrong, 0,
                "{rows}x{cols}: {wrong} pixels differ from Pillow's"
            );
        }
    }

    #[test]
    fn dataset_resize_keeps_labels_and_scales_to_unit() {
        let src = golden("pattern-28x28.u8");
        let set = Dataset {
            images: src
                .iter()
                .chain(&src)
                .map(|&p| f32::from(p) / 255.0)
                .collect(),
            labels: vec![3, 7],
            rows: 28,
            cols: 28,
        };
        let big = set.resized(96, 96);
        assert_eq!((big.len(), big.rows, big.cols), (2, 96, 96));
        assert_eq!(big.labels, [3, 7]);
        let want: Vec<f32> = golden("pattern-96x96.u8")
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect();
        assert_eq!(big.image(0), &want[..]);
        assert_eq!(big.image(1), &want[..]);
    }
}
