//! The training plot: loss and accuracy per epoch, train and test, as a PNG.
//!
//! Drawn in memory with plotters' bitmap backend and a font shipped in `assets/` (so no system
//! font library is needed), then encoded and written atomically like every other output.

use std::io::Cursor;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::train::state::EpochMetrics;

/// File name of the plot in a run's output directory.
pub const PLOT_FILE: &str = "training.png";

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 500;
pub(crate) const FONT: &str = "sans-serif";
const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const TRAIN_COLOUR: RGBColor = RGBColor(31, 119, 180);
const TEST_COLOUR: RGBColor = RGBColor(214, 39, 40);

/// Plot that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot: {0}")]
pub struct PlotError(pub(crate) String);

pub(crate) fn plot_error(error: impl std::fmt::Display) -> PlotError {
    PlotError(error.to_string())
}

pub(crate) fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FONT, FontStyle::Normal, FONT_BYTES)
                .map_err(|_| "the shipped font does not parse".to_string())
        })
        .clone()
        .map_err(PlotError)
}

/// PNG bytes of the loss (left) and accuracy (right) curves of `history`, with an x axis that
/// spans `total_epochs` so that a run in progress shows how far it has come.
pub fn render_png(
    history: &[EpochMetrics],
    total_epochs: usize,
    title: &str,
) -> Result<Vec<u8>, PlotError> {
    ensure_font()?;
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root
            .titled(title, (FONT, 22).into_font())
            .map_err(plot_error)?;
        let (left, right) = root.split_horizontally(WIDTH / 2);
        let last = total_epochs.max(history.len()).max(1) as f64;
        let epochs = 0.5..last + 0.5;

        let losses = history
            .iter()
            .flat_map(|m| [m.train_loss, m.test_loss])
            .filter(|v| v.is_finite());
        let max_loss = losses.fold(0.0f64, f64::max).max(1e-3) * 1.1;
        let (loss_caption, accuracy_caption) = match history.last() {
            Some(last) => (
                format!(
                    "Loss (cross-entropy): {} {:.4} after epoch {}",
                    last.evaluated_on.name(),
                    last.test_loss,
                    last.epoch
                ),
                format!(
                    "Accuracy (%): {} {:.2}% after epoch {}",
                    last.evaluated_on.name(),
                    last.test_accuracy * 100.0,
                    last.epoch
                ),
            ),
            None => ("Loss (cross-entropy)".into(), "Accuracy (%)".into()),
        };
        draw_panel(
            &left,
            &loss_caption,
            epochs.clone(),
            0.0..max_loss,
            history,
            |m| (m.train_loss, m.test_loss),
            // Losses fall from the upper left.
            SeriesLabelPosition::UpperRight,
        )?;

        let accuracies = history
            .iter()
            .flat_map(|m| [m.train_accuracy, m.test_accuracy])
            .map(|v| v * 100.0)
            .filter(|v| v.is_finite());
        let min_accuracy = accuracies.fold(100.0f64, f64::min);
        // Leave room below the lowest point and round to a readable tick.
        let floor = ((min_accuracy - (100.0 - min_accuracy) * 0.2 - 0.1) / 0.5).floor() * 0.5;
        draw_panel(
            &right,
            &accuracy_caption,
            epochs,
            floor.clamp(0.0, 99.5)..100.0,
            history,
            |m| (m.train_accuracy * 100.0, m.test_accuracy * 100.0),
            // Accuracies climb towards the upper right.
            SeriesLabelPosition::LowerRight,
        )?;
        root.present().map_err(plot_error)?;
    }
    encode_png(WIDTH, HEIGHT, pixels)
}

/// PNG bytes of an RGB buffer that plotters drew into.
pub(crate) fn encode_png(width: u32, height: u32, pixels: Vec<u8>) -> Result<Vec<u8>, PlotError> {
    let image = image::RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| PlotError("pixel buffer of the wrong size".into()))?;
    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(plot_error)?;
    Ok(png)
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    epochs: std::ops::Range<f64>,
    values: std::ops::Range<f64>,
    history: &[EpochMetrics],
    series: impl Fn(&EpochMetrics) -> (f64, f64),
    legend: SeriesLabelPosition,
) -> Result<(), PlotError> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(epochs.clone(), values)
        .map_err(plot_error)?;
    let ticks = (epochs.end - epochs.start).round() as usize;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(ticks.min(20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if y.abs() >= 10.0 {
                format!("{y:.1}")
            } else {
                format!("{y:.2}")
            }
        })
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;

    let evaluated = history
        .last()
        .map_or("test", |last| last.evaluated_on.name());
    for (name, colour, pick) in [
        ("train", TRAIN_COLOUR, 0usize),
        (evaluated, TEST_COLOUR, 1usize),
    ] {
        let points: Vec<(f64, f64)> = history
            .iter()
            .map(|m| {
                let (train, test) = series(m);
                (m.epoch as f64, if pick == 0 { train } else { test })
            })
            .filter(|(_, v)| v.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 4, colour.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::backend::BackendKind;

    fn epoch(epoch: usize, train: f64, test: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.0 - train,
            train_accuracy: train,
            test_loss: 1.0 - test,
            test_accuracy: test,
            train_images: 60_000,
            test_images: 10_000,
            evaluated_on: Default::default(),
            train_seconds: 150.0,
            eval_seconds: 5.0,
            images_per_second: 400.0,
            batches_per_second: 3.1,
            backend: BackendKind::Flex,
            learning_rate: None,
        }
    }

    #[test]
    fn renders_a_png_of_the_expected_size() {
        let history = [epoch(1, 0.93, 0.98), epoch(2, 0.975, 0.986)];
        let png = render_png(&history, 12, "test run").unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert_eq!((image.width(), image.height()), (WIDTH, HEIGHT));
        // Both series colours appear: the curves were drawn, not only the axes.
        let rgb = image.to_rgb8();
        for colour in [TRAIN_COLOUR, TEST_COLOUR] {
            let RGBColor(r, g, b) = colour;
            assert!(
                rgb.pixels().any(|p| p.0 == [r, g, b]),
                "no pixel of {colour:?}"
            );
        }
    }

    #[test]
    fn renders_with_no_epoch_and_with_non_finite_values() {
        assert!(render_png(&[], 3, "empty").is_ok());
        let mut bad = epoch(1, 0.5, 0.5);
        bad.train_loss = f64::NAN;
        bad.test_loss = f64::INFINITY;
        assert!(render_png(&[bad], 1, "diverged").is_ok());
    }
}
