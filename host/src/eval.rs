//! `host eval`: the test set through the **core** kernels (not burn), the
//! way a device computes it: accuracy, per-class accuracy, the confusion
//! matrix (as text and as a PNG), and throughput.

use std::fmt::Write as _;
use std::thread;
use std::time::Instant;

use plotters::prelude::*;
use tinycnn::arch::{CLASSES, INPUT_PIXELS};
use tinycnn::{F32Model, F32Scratch, Flavour, Int8Model, Int8Scratch, Model};

use crate::export::as_image;
use crate::plot::{FONT, PlotError, encode_png, ensure_font, plot_error};

/// Threads to spread images over: every core the process may use.
pub fn available_threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `classify` on every 784-pixel image of `pixels`, on `threads` threads
/// (each with its own scratch), keeping the order.
fn map_images<T: Send, S>(
    pixels: &[u8],
    threads: usize,
    scratch: impl Fn() -> S + Sync,
    classify: impl Fn(&tinycnn::arch::Image, &mut S) -> T + Sync,
) -> Vec<T> {
    let images: Vec<&tinycnn::arch::Image> = pixels
        .chunks_exact(INPUT_PIXELS)
        .filter_map(as_image)
        .collect();
    let per_thread = images.len().div_ceil(threads.max(1)).max(1);
    thread::scope(|scope| {
        let handles: Vec<_> = images
            .chunks(per_thread)
            .map(|chunk| {
                let (scratch, classify) = (&scratch, &classify);
                scope.spawn(move || {
                    let mut state = scratch();
                    chunk
                        .iter()
                        .map(|image| classify(image, &mut state))
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// int8 logits of every image, computed by the core.
pub fn int8_logits(model: &Int8Model<'_>, pixels: &[u8], threads: usize) -> Vec<[i8; CLASSES]> {
    map_images(
        pixels,
        threads,
        || Box::new(Int8Scratch::new()),
        |image, scratch| model.classify(image, scratch).logits,
    )
}

/// f32 logits of every image, computed by the core.
pub fn f32_logits(model: &F32Model<'_>, pixels: &[u8], threads: usize) -> Vec<[f32; CLASSES]> {
    map_images(
        pixels,
        threads,
        || Box::new(F32Scratch::new()),
        |image, scratch| model.classify(image, scratch).logits,
    )
}

/// Predicted digits of every image, with either flavour.
pub fn predict_all(model: &Model<'_>, pixels: &[u8], threads: usize) -> Vec<u8> {
    match model {
        Model::Int8(m) => map_images(
            pixels,
            threads,
            || Box::new(Int8Scratch::new()),
            |image, s| m.classify(image, s).digit,
        ),
        Model::F32(m) => map_images(
            pixels,
            threads,
            || Box::new(F32Scratch::new()),
            |image, s| m.classify(image, s).digit,
        ),
    }
}

/// The result of classifying a labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Flavour of the model evaluated.
    pub flavour: Flavour,
    /// `confusion[label][predicted]`: how many images of each label got each prediction.
    pub confusion: [[u32; CLASSES]; CLASSES],
    /// Wall-clock seconds of the classification.
    pub seconds: f64,
    /// Threads used.
    pub threads: usize,
}

impl Evaluation {
    /// Classifies `pixels` (n x 784) and compares with `labels`.
    pub fn run(model: &Model<'_>, pixels: &[u8], labels: &[u8], threads: usize) -> Self {
        let start = Instant::now();
        let predicted = predict_all(model, pixels, threads);
        let seconds = start.elapsed().as_secs_f64();
        let mut confusion = [[0u32; CLASSES]; CLASSES];
        for (&label, &digit) in labels.iter().zip(&predicted) {
            if let Some(cell) = confusion
                .get_mut(usize::from(label))
                .and_then(|row| row.get_mut(usize::from(digit)))
            {
                *cell += 1;
            }
        }
        Self {
            flavour: model.flavour(),
            confusion,
            seconds,
            threads,
        }
    }

    /// Images classified.
    pub fn images(&self) -> u32 {
        self.confusion.iter().flatten().sum()
    }

    /// Images classified correctly.
    pub fn correct(&self) -> u32 {
        (0..CLASSES).map(|c| self.confusion[c][c]).sum()
    }

    /// Fraction classified correctly.
    pub fn accuracy(&self) -> f64 {
        f64::from(self.correct()) / f64::from(self.images().max(1))
    }

    /// Fraction of the images labelled `class` classified correctly.
    pub fn class_accuracy(&self, class: usize) -> f64 {
        let row = &self.confusion[class];
        f64::from(row[class]) / f64::from(row.iter().sum::<u32>().max(1))
    }

    /// Images per second over all threads.
    pub fn images_per_second(&self) -> f64 {
        f64::from(self.images()) / self.seconds.max(1e-9)
    }

    /// The report `host eval` prints.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} model: accuracy {:.2}% ({} of {} test images)",
            self.flavour.name(),
            self.accuracy() * 100.0,
            self.correct(),
            self.images()
        );
        let _ = writeln!(
            out,
            "speed: {:.0} images/s on {} thread(s), {:.2} ms per image per thread",
            self.images_per_second(),
            self.threads,
            self.seconds * 1000.0 * self.threads as f64 / f64::from(self.images().max(1))
        );
        let _ = writeln!(out, "\nper class:");
        for class in 0..CLASSES {
            let _ = writeln!(
                out,
                "  {class}: {:6.2}% of {}",
                self.class_accuracy(class) * 100.0,
                self.confusion[class].iter().sum::<u32>()
            );
        }
        let _ = writeln!(
            out,
            "\nconfusion matrix (rows: true label, columns: predicted digit):"
        );
        let _ = write!(out, "      ");
        for digit in 0..CLASSES {
            let _ = write!(out, "{digit:>6}");
        }
        let _ = writeln!(out);
        for (label, row) in self.confusion.iter().enumerate() {
            let _ = write!(out, "  {label:>2}  ");
            for count in row {
                let _ = write!(out, "{count:>6}");
            }
            let _ = writeln!(out);
        }
        out
    }

    /// The confusion matrix as a PNG heat map: the diagonal in green, errors
    /// in red, shaded by the share of the row, each cell with its count.
    pub fn confusion_png(&self, title: &str) -> Result<Vec<u8>, PlotError> {
        const CELL: i32 = 56;
        const LEFT: i32 = 90;
        const TOP: i32 = 110;
        let side = (LEFT + CELL * CLASSES as i32 + 30) as u32;
        let height = (TOP + CELL * CLASSES as i32 + 30) as u32;
        ensure_font()?;
        let mut pixels = vec![0u8; (side * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (side, height)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let text = |s: &str, at: (i32, i32), size: i32| {
                Text::new(s.to_string(), at, (FONT, size).into_font())
            };
            root.draw(&text(title, (16, 14), 20)).map_err(plot_error)?;
            root.draw(&text("predicted digit", (LEFT + CELL * 4, TOP - 50), 16))
                .map_err(plot_error)?;
            root.draw(&text("true", (16, TOP + CELL * 4), 16))
                .map_err(plot_error)?;
            root.draw(&text("label", (16, TOP + CELL * 4 + 20), 16))
                .map_err(plot_error)?;
            for (label, row) in self.confusion.iter().enumerate() {
                let total = f64::from(row.iter().sum::<u32>().max(1));
                let y = TOP + CELL * label as i32;
                root.draw(&text(&label.to_string(), (LEFT - 24, y + CELL / 2 - 8), 16))
                    .map_err(plot_error)?;
                for (digit, &count) in row.iter().enumerate() {
                    let x = LEFT + CELL * digit as i32;
                    if label == 0 {
                        root.draw(&text(&digit.to_string(), (x + CELL / 2 - 5, TOP - 24), 16))
                            .map_err(plot_error)?;
                    }
                    let share = f64::from(count) / total;
                    // Errors are rare: a square-root scale keeps a few visible.
                    let strength = if label == digit {
                        share
                    } else {
                        share.sqrt().min(1.0)
                    };
                    let shade = |full: u8| (255.0 - (255.0 - f64::from(full)) * strength) as u8;
                    let colour = if label == digit {
                        RGBColor(shade(46), shade(160), shade(67))
                    } else {
                        RGBColor(shade(214), shade(39), shade(40))
                    };
                    root.draw(&Rectangle::new(
                        [(x, y), (x + CELL, y + CELL)],
                        colour.filled(),
                    ))
                    .map_err(plot_error)?;
                    root.draw(&Rectangle::new(
                        [(x, y), (x + CELL, y + CELL)],
                        BLACK.mix(0.15),
                    ))
                    .map_err(plot_error)?;
                    if count > 0 {
                        let label_colour = if strength > 0.6 { WHITE } else { BLACK };
                        let s = count.to_string();
                        let at = (x + CELL / 2 - 4 * s.len() as i32, y + CELL / 2 - 8);
                        root.draw(&Text::new(
                            s,
                            at,
                            (FONT, 15).into_font().color(&label_colour),
                        ))
                        .map_err(plot_error)?;
                    }
                }
            }
            root.present().map_err(plot_error)?;
        }
        encode_png(side, height, pixels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation() -> Evaluation {
        let mut confusion = [[0u32; CLASSES]; CLASSES];
        for (c, row) in confusion.iter_mut().enumerate() {
            row[c] = 98;
            row[(c + 1) % CLASSES] = 2;
        }
        Evaluation {
            flavour: Flavour::Int8,
            confusion,
            seconds: 0.5,
            threads: 2,
        }
    }

    #[test]
    fn accuracy_comes_from_the_diagonal() {
        let e = evaluation();
        assert_eq!(e.images(), 1000);
        assert_eq!(e.correct(), 980);
        assert!((e.accuracy() - 0.98).abs() < 1e-12);
        assert!((e.class_accuracy(3) - 0.98).abs() < 1e-12);
        assert!((e.images_per_second() - 2000.0).abs() < 1e-9);
        let report = e.report();
        assert!(report.contains("accuracy 98.00% (980 of 1000"), "{report}");
        assert!(report.contains("\n  3:  98.00% of 100\n"), "{report}");
    }

    #[test]
    fn confusion_png_is_a_png() {
        let png = evaluation().confusion_png("test").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let image = image::load_from_memory(&png).unwrap();
        assert!(image.width() > 500 && image.height() > 500);
    }
}
