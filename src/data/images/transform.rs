//! torchvision's transforms on 8-bit images, composable, written as text (so that a
//! checkpoint can carry the ones its validation used) and seeded per epoch and image.
//!
//! Every step but `normalize` works on the 8-bit [`Image`], as torchvision's transforms work on
//! the PIL image before `ToTensor`; [`Transforms::to_tensor`] then scales to `[0, 1]` and
//! normalises in `f32` as `ToTensor` and `Normalize` do. The deterministic steps equal
//! torchvision's bit for bit (`tests/goldens/transforms.py` made the goldens); the random ones
//! draw their parameters as torchvision's `get_params` do, from a generator that
//! [`image_rng`] seeds from the run's seed, the epoch and the image's index, so an epoch's
//! augmentations are the same on every run and in every thread order.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::Image;
use super::decode::pil_l;
use crate::data::{Filter, resize_u8};

/// A size for [`Transform::Resize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The shorter side becomes this, the aspect kept (torchvision's `Resize(int)`).
    Shorter(usize),
    /// Exactly `(height, width)` (torchvision's `Resize((h, w))`).
    Exact(usize, usize),
}

/// How [`Transform::Pad`] and [`Transform::RandomCrop`] fill the border (torchvision's
/// `padding_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// Every new value is this one (torchvision's `fill`, default 0).
    Constant(u8),
    /// The nearest edge pixel repeated.
    Edge,
    /// Mirrored without repeating the edge pixel (`[3 2 | 1 2 3 | 2 1]`).
    Reflect,
    /// Mirrored with the edge pixel repeated (`[2 1 | 1 2 3 | 3 2]`).
    Symmetric,
}

/// One step of a [`Transforms`] pipeline; each names its torchvision equivalent.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// `transforms.Resize(size, interpolation)`, antialiased as Pillow resizes.
    Resize {
        /// The size to reach.
        size: Size,
        /// Bilinear (torchvision's default) or bicubic.
        filter: Filter,
    },
    /// `transforms.CenterCrop((height, width))`, padding with 0 where the image is smaller.
    CenterCrop {
        /// Rows kept.
        height: usize,
        /// Columns kept.
        width: usize,
    },
    /// `transforms.Pad((left, top, right, bottom), fill, padding_mode)`.
    Pad {
        /// Columns added on the left.
        left: usize,
        /// Rows added on top.
        top: usize,
        /// Columns added on the right.
        right: usize,
        /// Rows added below.
        bottom: usize,
        /// What the new pixels hold.
        mode: PadMode,
    },
    /// `transforms.RandomCrop((height, width), padding, pad_if_needed=True, fill,
    /// padding_mode)`: pad every side by `padding`, then (and wherever the image is still
    /// smaller than the crop) keep a window at a uniformly drawn place.
    RandomCrop {
        /// Rows kept.
        height: usize,
        /// Columns kept.
        width: usize,
        /// Added on every side first.
        padding: usize,
        /// What the padding holds.
        mode: PadMode,
    },
    /// `transforms.RandomResizedCrop((height, width), scale, ratio, interpolation)`: a window
    /// of a random area (a fraction in `scale` of the image's) and aspect ratio (log-uniform
    /// in `ratio`), resized to `height x width`.
    RandomResizedCrop {
        /// Rows of the result.
        height: usize,
        /// Columns of the result.
        width: usize,
        /// The window's area as a fraction of the image's, `(min, max)`; torchvision's
        /// default `(0.08, 1.0)`.
        scale: (f64, f64),
        /// The window's width over its height, `(min, max)`; default `(3/4, 4/3)`.
        ratio: (f64, f64),
        /// The resize's filter.
        filter: Filter,
    },
    /// `transforms.RandomHorizontalFlip(p)`: mirrored left to right with probability `p`.
    RandomHorizontalFlip {
        /// The probability of a flip.
        p: f64,
    },
    /// `transforms.RandomRotation(degrees)`: turned by an angle drawn uniformly from
    /// `[-degrees, degrees]` (anticlockwise when positive), about the centre, nearest pixel,
    /// the corners filled with 0.
    RandomRotation {
        /// The largest angle, in degrees.
        degrees: f64,
    },
    /// `transforms.ColorJitter(brightness, contrast, saturation)`: each factor drawn from
    /// `[max(0, 1 - x), 1 + x]` and applied in a random order, as Pillow's `ImageEnhance`
    /// applies them. Saturation leaves grey images as they are.
    ColorJitter {
        /// How far brightness may move.
        brightness: f64,
        /// How far contrast may move.
        contrast: f64,
        /// How far saturation may move.
        saturation: f64,
    },
    /// `transforms.Grayscale(channels)`: Pillow's `L` (see [`super::Colour`]), repeated to 3
    /// channels when `channels` is 3.
    Grayscale {
        /// 1 or 3.
        channels: usize,
    },
    /// `transforms.Normalize(mean, std)` after `ToTensor`: `(v / 255 - mean) / std` per
    /// channel, in `f32`. One value each applies to every channel. Only as the last step.
    Normalize {
        /// Per channel, or one for all.
        mean: Vec<f32>,
        /// Per channel, or one for all; none may be 0.
        std: Vec<f32>,
    },
}

/// A pipeline that cannot work: its text does not parse, or a step's values are out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransformError(String);

/// A pipeline of [`Transform`]s, applied in order; written as text, steps separated by `;`:
///
/// ```
/// use cnn::data::images::Transforms;
///
/// let t: Transforms = "resize(32); center_crop(28, 28); normalize(0.5, 0.5)".parse()?;
/// // Display writes every value out, and parses back to the same pipeline.
/// assert_eq!(
///     t.to_string(),
///     "resize(32, bilinear); center_crop(28, 28); normalize(0.5, 0.5)"
/// );
/// assert_eq!(t.to_string().parse::<Transforms>()?, t);
/// # Ok::<(), cnn::data::images::TransformError>(())
/// ```
///
/// The steps: `resize(S)` (shorter side) or `resize(H, W)`, either with `bicubic` or
/// `bilinear` last; `center_crop(S)` or `center_crop(H, W)`; `pad(P)`, `pad(LR, TB)` or
/// `pad(L, T, R, B)`, with `fill=N`, `edge`, `reflect` or `symmetric` last;
/// `random_crop(S)` or `random_crop(H, W)`, with `padding=P` and a pad mode;
/// `random_resized_crop(S)` or `(H, W)`, with `scale=MIN:MAX`, `ratio=MIN:MAX` and a filter;
/// `random_horizontal_flip` or `random_horizontal_flip(P)`; `random_rotation(DEGREES)`;
/// `color_jitter(BRIGHTNESS, CONTRAST, SATURATION)`; `grayscale` or `grayscale(3)`;
/// `normalize(MEAN.., STD..)` (one or three means, then as many deviations).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transforms {
    steps: Vec<Transform>,
}

impl Transforms {
    /// A pipeline of `steps`, checked: sizes above 0, probabilities from 0 to 1, ranges with
    /// `min <= max`, no deviation of 0, `normalize` only last.
    ///
    /// # Errors
    /// [`TransformError`] naming the step and the rule it breaks.
    pub fn new(steps: Vec<Transform>) -> Result<Self, TransformError> {
        for (i, step) in steps.iter().enumerate() {
            check(step, i + 1 == steps.len())
                .map_err(|why| TransformError(format!("{step}: {why}")))?;
        }
        Ok(Transforms { steps })
    }

    /// The steps.
    pub fn steps(&self) -> &[Transform] {
        &self.steps
    }

    /// Whether any step draws random numbers (so that epochs differ).
    pub fn is_random(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                Transform::RandomCrop { .. }
                    | Transform::RandomResizedCrop { .. }
                    | Transform::RandomHorizontalFlip { .. }
                    | Transform::RandomRotation { .. }
                    | Transform::ColorJitter { .. }
            )
        })
    }

    /// Every step but `normalize`, in order, drawing from `rng` where a step is random.
    pub fn apply(&self, mut img: Image, rng: &mut impl Rng) -> Image {
        for step in &self.steps {
            img = apply(step, img, rng);
        }
        img
    }

    /// `img` as `ToTensor` makes it, then `Normalize` if the pipeline ends with it: `f32`
    /// values `(channels, height, width)` appended to `out`.
    pub fn to_tensor(&self, img: &Image, out: &mut Vec<f32>) {
        let (c, plane) = (img.channels, img.width * img.height);
        let norm = match self.steps.last() {
            Some(Transform::Normalize { mean, std }) => Some((mean, std)),
            _ => None,
        };
        out.reserve(c * plane);
        for ch in 0..c {
            let pick = |v: &Vec<f32>| v.get(ch).or(v.first()).copied().unwrap_or(0.0);
            let (m, s) = norm.map_or((0.0, 1.0), |(m, s)| (pick(m), pick(s)));
            out.extend(img.data[ch..].iter().step_by(c).take(plane).map(|&v| {
                let v = f32::from(v) / 255.0;
                if norm.is_some() { (v - m) / s } else { v }
            }));
        }
    }

    /// Why an image of `channels` channels cannot go through `normalize`, if it cannot (its
    /// mean and deviation give neither one value nor one per channel).
    pub fn check_channels(&self, channels: usize) -> Result<(), TransformError> {
        match self.steps.last() {
            Some(step @ Transform::Normalize { mean, .. })
                if mean.len() != 1 && mean.len() != channels =>
            {
                Err(TransformError(format!(
                    "{step}: {} means for {channels} channels (give one, or one per channel)",
                    mean.len()
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The generator of image `index`'s random steps in epoch `epoch` of a run seeded with `seed`:
/// independent of which thread draws it or when, so augmentations are reproducible.
pub fn image_rng(seed: u64, epoch: usize, index: usize) -> StdRng {
    let mix = |x: u64| {
        // splitmix64's finaliser: nearby inputs give unrelated outputs
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    StdRng::seed_from_u64(mix(seed ^ mix(epoch as u64 ^ mix(index as u64))))
}

/// The rule `step` breaks, if any; `last` says whether it ends the pipeline.
fn check(step: &Transform, last: bool) -> Result<(), String> {
    let positive = |v: usize, what: &str| match v {
        0 => Err(format!("{what} must be at least 1")),
        _ => Ok(()),
    };
    let range = |(lo, hi): (f64, f64), what: &str| match lo.is_finite()
        && hi.is_finite()
        && 0.0 < lo
        && lo <= hi
    {
        true => Ok(()),
        false => Err(format!("{what} must be finite, above 0 and min <= max")),
    };
    match step {
        Transform::Resize {
            size: Size::Shorter(s),
            ..
        } => positive(*s, "the size"),
        Transform::Resize {
            size: Size::Exact(h, w),
            ..
        }
        | Transform::CenterCrop {
            height: h,
            width: w,
        }
        | Transform::RandomCrop {
            height: h,
            width: w,
            ..
        } => positive(*h, "the height").and(positive(*w, "the width")),
        Transform::RandomResizedCrop {
            height,
            width,
            scale,
            ratio,
            ..
        } => {
            positive(*height, "the height")?;
            positive(*width, "the width")?;
            range(*scale, "scale")?;
            range(*ratio, "ratio")
        }
        Transform::RandomHorizontalFlip { p } if !(0.0..=1.0).contains(p) => {
            Err("p must be from 0 to 1".into())
        }
        Transform::RandomRotation { degrees } if !(degrees.is_finite() && *degrees >= 0.0) => {
            Err("degrees must be finite and not below 0".into())
        }
        Transform::ColorJitter {
            brightness,
            contrast,
            saturation,
        } if ![brightness, contrast, saturation]
            .iter()
            .all(|v| v.is_finite() && **v >= 0.0) =>
        {
            Err("each factor must be finite and not below 0".into())
        }
        Transform::Grayscale { channels } if *channels != 1 && *channels != 3 => {
            Err("channels must be 1 or 3".into())
        }
        Transform::Normalize { .. } if !last => {
            Err("normalize must be the last step (it works on the tensor)".into())
        }
        Transform::Normalize { mean, std } if mean.len() != std.len() || mean.is_empty() => {
            Err("give as many deviations as means".into())
        }
        Transform::Normalize { mean, std }
            if !mean.iter().chain(std).all(|v| v.is_finite()) || std.contains(&0.0) =>
        {
            Err("means and deviations must be finite, and no deviation 0".into())
        }
        _ => Ok(()),
    }
}

/// One step on `img`.
fn apply(step: &Transform, img: Image, rng: &mut impl Rng) -> Image {
    match *step {
        Transform::Resize { size, filter } => {
            let (h, w) = match size {
                Size::Exact(h, w) => (h, w),
                Size::Shorter(s) => shorter_side(img.height, img.width, s),
            };
            resize(&img, h, w, filter)
        }
        Transform::CenterCrop { height, width } => center_crop(img, height, width),
        Transform::Pad {
            left,
            top,
            right,
            bottom,
            mode,
        } => pad(&img, [left, top, right, bottom], mode),
        Transform::RandomCrop {
            height,
            width,
            padding,
            mode,
        } => {
            let mut img = match padding {
                0 => img,
                p => pad(&img, [p; 4], mode),
            };
            // pad_if_needed: torchvision pads the width, then the height, on both sides
            if img.width < width {
                let d = width - img.width;
                img = pad(&img, [d, 0, d, 0], mode);
            }
            if img.height < height {
                let d = height - img.height;
                img = pad(&img, [0, d, 0, d], mode);
            }
            let top = rng.gen_range(0..=img.height - height);
            let left = rng.gen_range(0..=img.width - width);
            crop(&img, top as isize, left as isize, height, width)
        }
        Transform::RandomResizedCrop {
            height,
            width,
            scale,
            ratio,
            filter,
        } => {
            let (top, left, h, w) = resized_crop_window(img.height, img.width, scale, ratio, rng);
            resize(
                &crop(&img, top as isize, left as isize, h, w),
                height,
                width,
                filter,
            )
        }
        Transform::RandomHorizontalFlip { p } => match rng.gen_bool(p) {
            true => hflip(&img),
            false => img,
        },
        Transform::RandomRotation { degrees } => {
            let angle = if degrees > 0.0 {
                rng.gen_range(-degrees..=degrees)
            } else {
                0.0
            };
            rotate(&img, angle)
        }
        Transform::ColorJitter {
            brightness,
            contrast,
            saturation,
        } => {
            let factor = |x: f64, rng: &mut dyn rand::RngCore| {
                (x > 0.0).then(|| rng.gen_range((1.0 - x).max(0.0)..=1.0 + x))
            };
            let factors = [
                factor(brightness, rng),
                factor(contrast, rng),
                factor(saturation, rng),
            ];
            let mut order = [0, 1, 2];
            order.shuffle(rng);
            let mut img = img;
            for k in order {
                if let Some(f) = factors[k] {
                    img = match k {
                        0 => adjust_brightness(&img, f),
                        1 => adjust_contrast(&img, f),
                        _ => adjust_saturation(&img, f),
                    };
                }
            }
            img
        }
        Transform::Grayscale { channels } => grayscale(&img, channels),
        Transform::Normalize { .. } => img,
    }
}

/// torchvision's `_compute_resized_output_size` for `Resize(int)`: the shorter side becomes
/// `size`, the longer `int(size * long / short)`.
fn shorter_side(h: usize, w: usize, size: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (size as f64 * long as f64 / short.max(1) as f64) as usize;
    if w <= h {
        (new_long, size)
    } else {
        (size, new_long)
    }
}

/// `img` resized to `h x w` with `filter` (Pillow's `Image.resize`).
pub fn resize(img: &Image, h: usize, w: usize, filter: Filter) -> Image {
    Image {
        width: w,
        height: h,
        channels: img.channels,
        data: resize_u8(
            &img.data,
            (img.height, img.width, img.channels),
            (h, w),
            filter,
        ),
    }
}

/// The `h x w` window of `img` whose top left pixel is `(top, left)`, zero where it lies
/// outside the image (Pillow's `Image.crop`).
pub fn crop(img: &Image, top: isize, left: isize, h: usize, w: usize) -> Image {
    let c = img.channels;
    let mut data = vec![0u8; h * w * c];
    for r in 0..h {
        let y = top + r as isize;
        if y < 0 || y >= img.height as isize {
            continue;
        }
        for col in 0..w {
            let x = left + col as isize;
            if x < 0 || x >= img.width as isize {
                continue;
            }
            let from = (y as usize * img.width + x as usize) * c;
            data[(r * w + col) * c..][..c].copy_from_slice(&img.data[from..from + c]);
        }
    }
    Image {
        width: w,
        height: h,
        channels: c,
        data,
    }
}

/// torchvision's `F.center_crop`: padded with 0 (split as it splits it) where the crop is
/// larger, then the window whose offsets are `round((size - crop) / 2)`, halves to even as
/// Python's `round` does.
pub fn center_crop(img: Image, h: usize, w: usize) -> Image {
    let img = if h > img.height || w > img.width {
        let (dw, dh) = (w.saturating_sub(img.width), h.saturating_sub(img.height));
        pad(
            &img,
            [dw / 2, dh / 2, dw.div_ceil(2), dh.div_ceil(2)],
            PadMode::Constant(0),
        )
    } else {
        img
    };
    let top = ((img.height - h) as f64 / 2.0).round_ties_even() as isize;
    let left = ((img.width - w) as f64 / 2.0).round_ties_even() as isize;
    crop(&img, top, left, h, w)
}

/// `img` with `[left, top, right, bottom]` added as `mode` says (torchvision's `F.pad`).
pub fn pad(img: &Image, [left, top, right, bottom]: [usize; 4], mode: PadMode) -> Image {
    let (h, w, c) = (img.height, img.width, img.channels);
    let (oh, ow) = (h + top + bottom, w + left + right);
    // Index into 0..n for position i (which may lie outside it), as numpy's pad modes map it.
    let source = |i: isize, n: usize| -> Option<usize> {
        let n = n as isize;
        let mut i = i;
        match mode {
            PadMode::Constant(_) => return (0..n).contains(&i).then_some(i as usize),
            PadMode::Edge => i = i.clamp(0, n - 1),
            PadMode::Reflect if n == 1 => i = 0,
            PadMode::Reflect => {
                while !(0..n).contains(&i) {
                    i = if i < 0 { -i } else { 2 * (n - 1) - i };
                }
            }
            PadMode::Symmetric => {
                while !(0..n).contains(&i) {
                    i = if i < 0 { -i - 1 } else { 2 * n - 1 - i };
                }
            }
        }
        Some(i as usize)
    };
    let fill = match mode {
        PadMode::Constant(v) => v,
        _ => 0,
    };
    let mut data = vec![fill; oh * ow * c];
    for r in 0..oh {
        let Some(y) = source(r as isize - top as isize, h) else {
            continue;
        };
        for col in 0..ow {
            let Some(x) = source(col as isize - left as isize, w) else {
                continue;
            };
            let from = (y * w + x) * c;
            data[(r * ow + col) * c..][..c].copy_from_slice(&img.data[from..from + c]);
        }
    }
    Image {
        width: ow,
        height: oh,
        channels: c,
        data,
    }
}

/// `img` mirrored left to right.
pub fn hflip(img: &Image) -> Image {
    let c = img.channels;
    let mut data = Vec::with_capacity(img.data.len());
    for row in img.data.chunks(img.width * c) {
        for px in row.chunks(c).rev() {
            data.extend_from_slice(px);
        }
    }
    Image { data, ..*img }
}

/// torchvision's `Grayscale(channels)`: Pillow's `L` of a colour image, repeated to `channels`.
pub fn grayscale(img: &Image, channels: usize) -> Image {
    let grey: Vec<u8> = match img.channels {
        3 => img.data.chunks_exact(3).map(pil_l).collect(),
        _ => img.data.clone(),
    };
    Image {
        width: img.width,
        height: img.height,
        channels,
        data: match channels {
            3 => grey.iter().flat_map(|&v| [v; 3]).collect(),
            _ => grey,
        },
    }
}

/// torchvision's `RandomResizedCrop.get_params`: `(top, left, height, width)` of the window.
fn resized_crop_window(
    height: usize,
    width: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f64;
    let (lo, hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(lo..=hi).exp();
        let w = (target * aspect).sqrt().round_ties_even() as usize;
        let h = (target / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            return (top, left, h, w);
        }
    }
    // Fallback: the whole image, cut to the nearest allowed ratio, centred.
    let in_ratio = width as f64 / height as f64;
    let (h, w) = if in_ratio < ratio.0 {
        ((width as f64 / ratio.0).round_ties_even() as usize, width)
    } else if in_ratio > ratio.1 {
        (height, (height as f64 * ratio.1).round_ties_even() as usize)
    } else {
        (height, width)
    };
    let (h, w) = (h.clamp(1, height), w.clamp(1, width));
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// `img` turned `angle` degrees anticlockwise about its centre, nearest pixel, corners 0
/// (Pillow's `Image.rotate(angle)`, which samples at pixel centres through the inverse map).
pub fn rotate(img: &Image, angle: f64) -> Image {
    let (h, w, c) = (img.height, img.width, img.channels);
    let t = -angle.to_radians();
    let (cos, sin) = (t.cos(), t.sin());
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let mut data = vec![0u8; img.data.len()];
    for r in 0..h {
        for col in 0..w {
            let (x, y) = (col as f64 + 0.5 - cx, r as f64 + 0.5 - cy);
            let (sx, sy) = (cos * x + sin * y + cx, -sin * x + cos * y + cy);
            if sx < 0.0 || sy < 0.0 {
                continue;
            }
            let (sx, sy) = (sx as usize, sy as usize);
            if sx < w && sy < h {
                let from = (sy * w + sx) * c;
                data[(r * w + col) * c..][..c].copy_from_slice(&img.data[from..from + c]);
            }
        }
    }
    Image { data, ..*img }
}

/// Pillow's `Image.blend(degenerate, img, factor)` (`Blend.c`): `d + factor * (v - d)` in
/// `f32`, truncated to 8 bits, clamped when `factor` is outside `[0, 1]`.
fn blend(img: &Image, degenerate: impl Fn(usize) -> u8, factor: f64) -> Image {
    let a = factor as f32;
    let data = img
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let d = i32::from(degenerate(i));
            let t = d as f32 + a * (i32::from(v) - d) as f32;
            if (0.0..=1.0).contains(&a) {
                t as u8
            } else {
                t.clamp(0.0, 255.0) as u8
            }
        })
        .collect();
    Image { data, ..*img }
}

/// torchvision's `F.adjust_brightness` (Pillow's `ImageEnhance.Brightness`): blended with
/// black.
pub fn adjust_brightness(img: &Image, factor: f64) -> Image {
    blend(img, |_| 0, factor)
}

/// torchvision's `F.adjust_contrast` (Pillow's `ImageEnhance.Contrast`): blended with the
/// image's mean grey level, rounded.
pub fn adjust_contrast(img: &Image, factor: f64) -> Image {
    let grey = grayscale(img, 1);
    let mean = grey.data.iter().map(|&v| f64::from(v)).sum::<f64>() / grey.data.len().max(1) as f64;
    let mean = (mean + 0.5) as u8;
    blend(img, |_| mean, factor)
}

/// torchvision's `F.adjust_saturation` (Pillow's `ImageEnhance.Color`): blended with the
/// image's grey version; a grey image is left as it is.
pub fn adjust_saturation(img: &Image, factor: f64) -> Image {
    if img.channels != 3 {
        return img.clone();
    }
    let grey = grayscale(img, 1);
    blend(img, |i| grey.data[i / 3], factor)
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filter::Bilinear => "bilinear",
            Filter::Bicubic => "bicubic",
        })
    }
}

impl fmt::Display for PadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PadMode::Constant(v) => write!(f, "fill={v}"),
            PadMode::Edge => f.write_str("edge"),
            PadMode::Reflect => f.write_str("reflect"),
            PadMode::Symmetric => f.write_str("symmetric"),
        }
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(", ");
        match self {
            Transform::Resize {
                size: Size::Shorter(s),
                filter,
            } => write!(f, "resize({s}, {filter})"),
            Transform::Resize {
                size: Size::Exact(h, w),
                filter,
            } => {
                write!(f, "resize({h}, {w}, {filter})")
            }
            Transform::CenterCrop { height, width } => write!(f, "center_crop({height}, {width})"),
            Transform::Pad {
                left,
                top,
                right,
                bottom,
                mode,
            } => {
                write!(f, "pad({left}, {top}, {right}, {bottom}, {mode})")
            }
            Transform::RandomCrop {
                height,
                width,
                padding,
                mode,
            } => {
                write!(
                    f,
                    "random_crop({height}, {width}, padding={padding}, {mode})"
                )
            }
            Transform::RandomResizedCrop {
                height,
                width,
                scale,
                ratio,
                filter,
            } => write!(
                f,
                "random_resized_crop({height}, {width}, scale={}:{}, ratio={}:{}, {filter})",
                scale.0, scale.1, ratio.0, ratio.1
            ),
            Transform::RandomHorizontalFlip { p } => write!(f, "random_horizontal_flip({p})"),
            Transform::RandomRotation { degrees } => write!(f, "random_rotation({degrees})"),
            Transform::ColorJitter {
                brightness,
                contrast,
                saturation,
            } => {
                write!(f, "color_jitter({brightness}, {contrast}, {saturation})")
            }
            Transform::Grayscale { channels } => write!(f, "grayscale({channels})"),
            Transform::Normalize { mean, std } => {
                write!(f, "normalize({}, {})", list(mean), list(std))
            }
        }
    }
}

impl fmt::Display for Transforms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

impl FromStr for Transforms {
    type Err = TransformError;

    fn from_str(s: &str) -> Result<Self, TransformError> {
        let steps = s
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| parse_step(t).map_err(|why| TransformError(format!("`{t}`: {why}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Transforms::new(steps)
    }
}

/// One step's text: `name` or `name(arg, ...)`.
fn parse_step(text: &str) -> Result<Transform, String> {
    let (name, args) = match text.split_once('(') {
        Some((name, rest)) => {
            let args = rest.strip_suffix(')').ok_or("expected `)` at the end")?;
            (
                name.trim(),
                args.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .collect(),
            )
        }
        None => (text, Vec::new()),
    };
    // numbers first, then `key=value` options and words, in any order
    let mut nums = Vec::new();
    let mut opts: Vec<(&str, &str)> = Vec::new();
    let mut words = Vec::new();
    for a in &args {
        if let Some((k, v)) = a.split_once('=') {
            opts.push((k.trim(), v.trim()));
        } else if let Ok(v) = a.parse::<f64>() {
            nums.push(v);
        } else {
            words.push(*a);
        }
    }
    let count = |v: f64| -> Result<usize, String> {
        match v >= 0.0 && v.fract() == 0.0 && v <= 1e9 {
            true => Ok(v as usize),
            false => Err(format!("{v} is not a whole number")),
        }
    };
    let opt = |key: &str| opts.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let num = |s: &str| {
        s.parse::<f64>()
            .map_err(|_| format!("`{s}` is not a number"))
    };
    let span = |key: &str, default: (f64, f64)| -> Result<(f64, f64), String> {
        match opt(key) {
            None => Ok(default),
            Some(v) => {
                let (a, b) = v.split_once(':').ok_or(format!("{key} takes MIN:MAX"))?;
                Ok((num(a)?, num(b)?))
            }
        }
    };
    let filter = || -> Result<Filter, String> {
        match words.as_slice() {
            [] | ["bilinear"] => Ok(Filter::Bilinear),
            ["bicubic"] => Ok(Filter::Bicubic),
            w => Err(format!(
                "unknown filter `{}` (bilinear or bicubic)",
                w.join(" ")
            )),
        }
    };
    let mode = || -> Result<PadMode, String> {
        let fill = opt("fill").map(num).transpose()?;
        match (words.as_slice(), fill) {
            ([] | ["constant"], fill) => {
                let v = fill.unwrap_or(0.0);
                match (0.0..=255.0).contains(&v) && v.fract() == 0.0 {
                    true => Ok(PadMode::Constant(v as u8)),
                    false => Err(format!("fill={v} is not a value from 0 to 255")),
                }
            }
            (["edge"], None) => Ok(PadMode::Edge),
            (["reflect"], None) => Ok(PadMode::Reflect),
            (["symmetric"], None) => Ok(PadMode::Symmetric),
            (w, _) => Err(format!(
                "unknown padding `{}` (fill=N, edge, reflect or symmetric)",
                w.join(" ")
            )),
        }
    };
    let hw = |nums: &[f64]| -> Result<(usize, usize), String> {
        match nums {
            [s] => Ok((count(*s)?, count(*s)?)),
            [h, w] => Ok((count(*h)?, count(*w)?)),
            _ => Err("give a size S or a height and width H, W".into()),
        }
    };
    let known = |keys: &[&str]| -> Result<(), String> {
        match opts.iter().find(|(k, _)| !keys.contains(k)) {
            Some((k, _)) => Err(format!("unknown option `{k}`")),
            None => Ok(()),
        }
    };
    let no_words = || match words.as_slice() {
        [] => Ok(()),
        w => Err(format!("unexpected `{}`", w.join(" "))),
    };
    Ok(match name {
        "resize" => {
            known(&[])?;
            let size = match nums.as_slice() {
                [s] => Size::Shorter(count(*s)?),
                [h, w] => Size::Exact(count(*h)?, count(*w)?),
                _ => return Err("give a size S or a height and width H, W".into()),
            };
            Transform::Resize {
                size,
                filter: filter()?,
            }
        }
        "center_crop" => {
            known(&[])?;
            no_words()?;
            let (height, width) = hw(&nums)?;
            Transform::CenterCrop { height, width }
        }
        "pad" => {
            known(&["fill"])?;
            let p: Vec<usize> = nums.iter().map(|&v| count(v)).collect::<Result<_, _>>()?;
            let [left, top, right, bottom] = match p.as_slice() {
                [a] => [*a; 4],
                [lr, tb] => [*lr, *tb, *lr, *tb],
                [l, t, r, b] => [*l, *t, *r, *b],
                _ => return Err("give 1, 2 or 4 paddings".into()),
            };
            Transform::Pad {
                left,
                top,
                right,
                bottom,
                mode: mode()?,
            }
        }
        "random_crop" => {
            known(&["padding", "fill"])?;
            let (height, width) = hw(&nums)?;
            let padding = opt("padding")
                .map(num)
                .transpose()?
                .map(count)
                .transpose()?;
            Transform::RandomCrop {
                height,
                width,
                padding: padding.unwrap_or(0),
                mode: mode()?,
            }
        }
        "random_resized_crop" => {
            known(&["scale", "ratio"])?;
            let (height, width) = hw(&nums)?;
            Transform::RandomResizedCrop {
                height,
                width,
                scale: span("scale", (0.08, 1.0))?,
                ratio: span("ratio", (3.0 / 4.0, 4.0 / 3.0))?,
                filter: filter()?,
            }
        }
        "random_horizontal_flip" => {
            known(&[])?;
            no_words()?;
            match nums.as_slice() {
                [] => Transform::RandomHorizontalFlip { p: 0.5 },
                [p] => Transform::RandomHorizontalFlip { p: *p },
                _ => return Err("give at most one probability".into()),
            }
        }
        "random_rotation" => {
            known(&[])?;
            no_words()?;
            match nums.as_slice() {
                [d] => Transform::RandomRotation { degrees: *d },
                _ => return Err("give the largest angle in degrees".into()),
            }
        }
        "color_jitter" => {
            known(&[])?;
            no_words()?;
            match nums.as_slice() {
                [b, c, s] => Transform::ColorJitter {
                    brightness: *b,
                    contrast: *c,
                    saturation: *s,
                },
                _ => return Err("give brightness, contrast and saturation".into()),
            }
        }
        "grayscale" => {
            known(&[])?;
            no_words()?;
            match nums.as_slice() {
                [] => Transform::Grayscale { channels: 1 },
                [c] => Transform::Grayscale {
                    channels: count(*c)?,
                },
                _ => return Err("give at most the number of channels".into()),
            }
        }
        "normalize" => {
            known(&[])?;
            no_words()?;
            if nums.len() % 2 != 0 || nums.is_empty() {
                return Err("give the means, then as many deviations".into());
            }
            let (mean, std) = nums.split_at(nums.len() / 2);
            let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect();
            Transform::Normalize {
                mean: f(mean),
                std: f(std),
            }
        }
        other => {
            return Err(format!(
                "unknown transform `{other}` (resize, center_crop, pad, random_crop, \
                 random_resized_crop, random_horizontal_flip, random_rotation, color_jitter, \
                 grayscale, normalize)"
            ));
        }
    })
}
