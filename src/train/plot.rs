//! d2l's animator, after the fact: loss, train accuracy and test accuracy per epoch as a PNG.

use std::path::Path;
use std::sync::OnceLock;

use image::ImageEncoder;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::{BoxError, EpochStats, TrainError};

/// The image's size in pixels.
const SIZE: (u32, u32) = (800, 500);

/// DejaVu Sans cut down to Latin-1, so that text renders without system fonts; see
/// `fonts/README.md` for its origin and licence.
const FONT: &[u8] = include_bytes!("fonts/DejaVuSans-Latin1.ttf");

/// Registers [`FONT`] as plotters' `sans-serif` once; false if it could not be parsed.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok())
}

// d2l's colours and line styles: loss 'b-', train acc 'm--', test acc 'g-.'
const LOSS: RGBColor = RGBColor(31, 119, 180);
const TRAIN: RGBColor = RGBColor(191, 0, 191);
const TEST: RGBColor = RGBColor(0, 128, 0);

/// Draws loss, train accuracy and test accuracy against the epoch, as d2l's animator does at the
/// end of training, into an 800x500 PNG image at `path`.
///
/// The image is drawn and encoded in memory, then written with [`crate::atomic::write`]: a
/// full disk or a second run plotting to the same path never leaves a truncated or mixed file.
///
/// The x axis runs over the epochs `1..=n`; the y axis from 0 to the largest finite loss or 1,
/// whichever is larger, so the accuracies always fit. Non-finite values are left out (without a
/// marker; the line joins their neighbours).
///
/// # Errors
/// [`TrainError::Plot`] when `history` is empty, `path` does not end in `.png`, the embedded
/// font cannot be loaded, or the image cannot be rendered, encoded or written (an unwritable
/// path, a full disk); the file that was at `path` is then unchanged.
pub fn plot_history(history: &[EpochStats], path: &Path) -> Result<(), TrainError> {
    let plot_err = |source: BoxError| TrainError::Plot {
        path: path.to_path_buf(),
        source,
    };
    if history.is_empty() {
        return Err(plot_err("no epochs to plot".into()));
    }
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !png {
        return Err(plot_err("only PNG is written: name the file `.png`".into()));
    }
    if !font_ready() {
        return Err(plot_err("the embedded font could not be loaded".into()));
    }
    // pixels: (H, W, 3) row-major RGB
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    draw(history, &mut pixels).map_err(plot_err)?;
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(&pixels, SIZE.0, SIZE.1, image::ColorType::Rgb8)
        .map_err(|e| plot_err(e.into()))?;
    crate::atomic::write(path, &bytes).map_err(|e| plot_err(e.into()))
}

/// Draws the curves into `pixels`, an RGB buffer of [`SIZE`].
fn draw(history: &[EpochStats], pixels: &mut [u8]) -> Result<(), BoxError> {
    let last = history.iter().map(|s| s.epoch).max().unwrap_or(1);
    let first = history.iter().map(|s| s.epoch).min().unwrap_or(1);
    // A single epoch would make an empty range; centre it instead.
    let x_range = if first == last {
        first.saturating_sub(1)..last + 1
    } else {
        first..last
    };
    let y_max = history
        .iter()
        .map(|s| s.loss)
        .filter(|l| l.is_finite())
        .fold(1.0f64, f64::max);

    let root = BitMapBackend::with_buffer(pixels, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.clone(), 0.0..y_max * 1.02)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss / accuracy")
        .x_labels((x_range.end - x_range.start + 1).min(12))
        .y_labels(8)
        .x_label_formatter(&|x| x.to_string())
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let series = |pick: fn(&EpochStats) -> f64| -> Vec<(usize, f64)> {
        history
            .iter()
            .map(|s| (s.epoch, pick(s)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    let loss = series(|s| s.loss);
    let train = series(|s| s.train_acc);
    let test = series(|s| s.test_acc);

    chart
        .draw_series(LineSeries::new(loss.clone(), LOSS.stroke_width(2)))?
        .label("train loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], LOSS.stroke_width(2)));
    chart
        .draw_series(DashedLineSeries::new(
            train.clone(),
            8,
            5,
            TRAIN.stroke_width(2),
        ))?
        .label("train acc")
        .legend(|(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new([(0, 0), (9, 0)], TRAIN.stroke_width(2))
                + PathElement::new([(15, 0), (24, 0)], TRAIN.stroke_width(2))
        });
    chart
        .draw_series(DashedLineSeries::new(
            test.clone(),
            12,
            4,
            TEST.stroke_width(2),
        ))?
        .label("test acc")
        .legend(|(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new([(0, 0), (10, 0)], TEST.stroke_width(2))
                + PathElement::new([(14, 0), (24, 0)], TEST.stroke_width(2))
        });
    // A marker per epoch, since there are few points and a line alone hides where they are.
    for (points, colour) in [(&loss, LOSS), (&train, TRAIN), (&test, TEST)] {
        chart.draw_series(
            points
                .iter()
                .map(|&point| Circle::new(point, 3, colour.filled())),
        )?;
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}
