//! The image transforms: the deterministic ones against torchvision's goldens, the random ones
//! for their seeding and distribution, and the pipelines refused with the rule they break.

use std::path::{Path, PathBuf};

use cnn::data::images::transform::{adjust_brightness, adjust_contrast, adjust_saturation};
use cnn::data::images::{Image, Transforms, image_rng};

fn goldens() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/transforms")
}

fn read(name: &str) -> Vec<u8> {
    let path = goldens().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The two source images of `tests/goldens/transforms.py`.
fn source(name: &str) -> Image {
    let (file, height, width, channels) = match name {
        "rgb" => ("rgb-23x31x3.u8", 23, 31, 3),
        _ => ("grey-17x12x1.u8", 17, 12, 1),
    };
    Image {
        width,
        height,
        channels,
        data: read(file),
    }
}

/// Every case of `tests/goldens/transforms/manifest.txt` (made by torchvision; its first line
/// names the versions): the crate's pipeline on the same source gives the same bytes, or, after
/// `ToTensor` and `Normalize`, the same `f32` values within 1e-6.
#[test]
fn deterministic_transforms_equal_torchvision() {
    let manifest = String::from_utf8(read("manifest.txt")).unwrap();
    let mut cases = 0;
    for line in manifest.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split(" | ");
        let head: Vec<&str> = parts.next().unwrap().split(' ').collect();
        let ours = parts.next().unwrap();
        let [file, src, h, w, c] = head[..] else {
            panic!("bad manifest line {line}")
        };
        let (h, w, c): (usize, usize, usize) =
            (h.parse().unwrap(), w.parse().unwrap(), c.parse().unwrap());
        let img = source(src);
        let got = match ours.split_once('(') {
            Some(("adjust_brightness", f)) => adjust_brightness(&img, factor(f)),
            Some(("adjust_contrast", f)) => adjust_contrast(&img, factor(f)),
            Some(("adjust_saturation", f)) => adjust_saturation(&img, factor(f)),
            _ => {
                let t: Transforms = ours.parse().unwrap_or_else(|e| panic!("{ours}: {e}"));
                assert!(!t.is_random() || ours.contains("(1)"), "{ours}");
                t.apply(img, &mut image_rng(0, 0, 0))
            }
        };
        if let Some(file) = file.strip_suffix(".f32") {
            let t: Transforms = ours.parse().unwrap();
            let mut values = Vec::new();
            t.to_tensor(&got, &mut values);
            let want: Vec<f32> = read(&format!("{file}.f32"))
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(values.len(), want.len(), "{file}");
            let worst = values
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 1e-6, "{file}: off by {worst}");
        } else {
            assert_eq!(
                (got.height, got.width, got.channels),
                (h, w, c),
                "{file}: {ours}"
            );
            let want = read(file);
            let wrong = got.data.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(wrong, 0, "{file}: {wrong} values differ from torchvision's");
        }
        cases += 1;
    }
    assert!(cases >= 25, "only {cases} cases in the manifest");
}

fn factor(text: &str) -> f64 {
    text.trim_end_matches(')').parse().unwrap()
}

/// A 16x16 RGB image whose every pixel differs, for following where pixels go.
fn numbered() -> Image {
    Image {
        width: 16,
        height: 16,
        channels: 3,
        data: (0..16 * 16 * 3).map(|i| (i % 251) as u8).collect(),
    }
}

#[test]
fn random_transforms_are_reproducible_per_epoch_and_image() {
    let t: Transforms = "random_resized_crop(8, 8); random_horizontal_flip; random_rotation(10); \
                         color_jitter(0.4, 0.4, 0.4); random_crop(8, padding=2)"
        .parse()
        .unwrap();
    assert!(t.is_random());
    let run = |seed, epoch, index| t.apply(numbered(), &mut image_rng(seed, epoch, index));
    assert_eq!(run(1, 2, 3), run(1, 2, 3));
    for other in [run(2, 2, 3), run(1, 3, 3), run(1, 2, 4)] {
        assert_ne!(run(1, 2, 3), other);
    }
    // A parsed pipeline's text parses back to the same pipeline.
    assert_eq!(t.to_string().parse::<Transforms>().unwrap(), t);
}

#[test]
fn random_flip_happens_at_its_rate_and_crops_cover_every_offset() {
    let img = numbered();
    let flip: Transforms = "random_horizontal_flip(0.3)".parse().unwrap();
    let n = 4000;
    let flipped = (0..n)
        .filter(|&i| flip.apply(img.clone(), &mut image_rng(5, 0, i)) != img)
        .count();
    // binomial(4000, 0.3): sd 29; 5 sd either side
    assert!((1055..=1345).contains(&flipped), "{flipped} of {n} flipped");

    // random_crop(12) of a 16x16 image: offsets 0..=4 each way, all 25 reached, roughly evenly.
    let crop: Transforms = "random_crop(12)".parse().unwrap();
    let mut seen = [[0usize; 5]; 5];
    for i in 0..2500 {
        let out = crop.apply(img.clone(), &mut image_rng(9, 1, i));
        let first = usize::from(out.data[0]);
        // pixel (top, left) of the source holds (top * 16 + left) * 3 % 251
        let (top, left) = (0..5)
            .flat_map(|t| (0..5).map(move |l| (t, l)))
            .find(|&(t, l)| (t * 16 + l) * 3 % 251 == first)
            .unwrap();
        seen[top][left] += 1;
    }
    for row in seen {
        for count in row {
            // 100 expected each; sd about 10
            assert!((50..=150).contains(&count), "{seen:?}");
        }
    }

    // random_resized_crop: areas spread over the scale range, sizes always the target's.
    let rrc: Transforms = "random_resized_crop(6, 6, scale=0.25:1)".parse().unwrap();
    for i in 0..200 {
        let out = rrc.apply(img.clone(), &mut image_rng(3, 0, i));
        assert_eq!((out.height, out.width), (6, 6));
    }
}

#[test]
fn pipelines_that_cannot_work_are_refused_with_the_rule() {
    for (text, why) in [
        (
            "normalize(0.5, 0.5); resize(3)",
            "normalize(0.5, 0.5): normalize must be the last step",
        ),
        ("resize(0)", "the size must be at least 1"),
        ("random_horizontal_flip(2)", "p must be from 0 to 1"),
        ("normalize(0.5, 0)", "no deviation 0"),
        ("blur(3)", "unknown transform `blur`"),
        ("resize(3, lanczos)", "unknown filter `lanczos`"),
        ("pad(1, 2, 3)", "give 1, 2 or 4 paddings"),
        ("random_crop(4, pading=2)", "unknown option `pading`"),
        ("resize(3", "expected `)` at the end"),
        ("center_crop(2.5)", "2.5 is not a whole number"),
    ] {
        let msg = text.parse::<Transforms>().unwrap_err().to_string();
        assert!(msg.contains(why), "{text}: {msg}");
    }
}
