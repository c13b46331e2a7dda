//! `host eval`: the test set through the **core** kernels (not burn), the
//! way a device computes it: accuracy, per-class accuracy, the confusion
//! matrix (as text and as a PNG), and throughput.

use std::fmt::Write as _;
use std::thread;
use std::time::Instant;

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use plotters::prelude::*;
use tinycnn::arch::Architecture;
use tinycnn::{F32Model, Flavour, Int8Model, Model};

use crate::atomic;
use crate::data::{DataSet, Fit, FolderOptions};
use crate::deploy::kernels::{FastF32, FastInt8};
use crate::plot::{FONT, PlotError, encode_png, ensure_font, plot_error};

/// Threads to spread images over: every core the process may use.
pub fn available_threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `classify` on every image (`image_len` values) of `pixels`, on
/// `threads` threads (each with its own scratch), keeping the order.
fn map_images<T: Send, S>(
    pixels: &[u8],
    image_len: usize,
    threads: usize,
    scratch: impl Fn() -> S + Sync,
    classify: impl Fn(&[u8], &mut S) -> T + Sync,
) -> Vec<T> {
    let images: Vec<&[u8]> = pixels.chunks_exact(image_len.max(1)).collect();
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

/// Which of the core's kernels classify on the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The wide kernels built for this processor ([`crate::deploy::kernels`]): the same int8
    /// bytes as the portable ones, several times faster.
    #[default]
    Fast,
    /// The portable kernels, as a Cortex-M0 or M3 runs them.
    Portable,
}

impl Kernels {
    /// What ran, for reports: the instruction set of the fast kernels, or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fast => crate::deploy::kernels::Isa::detect().name(),
            Kernels::Portable => "portable",
        }
    }
}

/// Classifies one int8 image with `kernels`; for a model with an audio front end, `image` is
/// its features as a data set stores them ([`crate::data::audio`]), read as they are.
pub fn classify_int8<'s>(
    model: &Int8Model<'_>,
    kernels: Kernels,
    fast: &mut FastInt8<'_>,
    image: &[u8],
    scratch: &'s mut [i8],
) -> Result<tinycnn::Prediction<'s, i8>, tinycnn::Error> {
    if model.front_end().is_some() {
        let features: Vec<i8> = image
            .iter()
            .map(|&byte| crate::data::audio::feature(byte))
            .collect();
        return match kernels {
            Kernels::Fast => model.run_quantized_with_kernels(fast, &features, scratch, |_| {}),
            Kernels::Portable => model.run_quantized(
                tinycnn::kernels::int8::Backend::Portable,
                &features,
                scratch,
                |_| {},
            ),
        };
    }
    match kernels {
        Kernels::Fast => model.classify_with_kernels(fast, image, scratch, |_| {}),
        Kernels::Portable => model.classify(image, scratch),
    }
}

/// Classifies one f32 image with `kernels`; for a model with an audio front end, `image` is
/// its features as a data set stores them, read dequantised.
pub fn classify_f32<'s>(
    model: &F32Model<'_>,
    kernels: Kernels,
    fast: &mut FastF32<'_>,
    image: &[u8],
    scratch: &'s mut [f32],
) -> Result<tinycnn::Prediction<'s, f32>, tinycnn::Error> {
    if let Some(front_end) = model.front_end() {
        let mut values = Vec::with_capacity(image.len());
        crate::data::audio::dequantise_into(&front_end, image, &mut values);
        return match kernels {
            Kernels::Fast => model.run_values_with_kernels(fast, &values, scratch, |_| {}),
            Kernels::Portable => model.run_values(&values, scratch, |_| {}),
        };
    }
    match kernels {
        Kernels::Fast => model.classify_with_kernels(fast, image, scratch, |_| {}),
        Kernels::Portable => model.classify(image, scratch),
    }
}

/// int8 logits of every image, computed by the core's fast kernels (the same bytes as the
/// portable ones). `pixels` holds whole images of the model's input shape.
pub fn int8_logits(model: &Int8Model<'_>, pixels: &[u8], threads: usize) -> Vec<Vec<i8>> {
    int8_logits_with(model, pixels, threads, Kernels::Fast)
}

/// [`int8_logits`] with the given kernels.
pub fn int8_logits_with(
    model: &Int8Model<'_>,
    pixels: &[u8],
    threads: usize,
    kernels: Kernels,
) -> Vec<Vec<i8>> {
    map_images(
        pixels,
        model.input_shape().values(),
        threads,
        || {
            (
                vec![0i8; model.scratch_bytes_with_kernels()],
                FastInt8::for_model(model.record_bytes()),
            )
        },
        |image, (scratch, fast)| {
            classify_int8(model, kernels, fast, image, scratch)
                .map_or_else(|_| Vec::new(), |p| p.logits.to_vec())
        },
    )
}

/// f32 logits of every image, computed by the core's fast kernels.
pub fn f32_logits(model: &F32Model<'_>, pixels: &[u8], threads: usize) -> Vec<Vec<f32>> {
    f32_logits_with(model, pixels, threads, Kernels::Fast)
}

/// [`f32_logits`] with the given kernels.
pub fn f32_logits_with(
    model: &F32Model<'_>,
    pixels: &[u8],
    threads: usize,
    kernels: Kernels,
) -> Vec<Vec<f32>> {
    map_images(
        pixels,
        model.input_shape().values(),
        threads,
        || {
            (
                vec![0f32; model.scratch_len()],
                FastF32::for_model(model.record_bytes()),
            )
        },
        |image, (scratch, fast)| {
            classify_f32(model, kernels, fast, image, scratch)
                .map_or_else(|_| Vec::new(), |p| p.logits.to_vec())
        },
    )
}

/// Predicted classes of every image, with either flavour and the given kernels.
pub fn predict_all(
    model: &Model<'_>,
    pixels: &[u8],
    threads: usize,
    kernels: Kernels,
) -> Vec<usize> {
    let image_len = model.architecture().input().values();
    match model {
        Model::Int8(m) => map_images(
            pixels,
            image_len,
            threads,
            || {
                (
                    vec![0i8; m.scratch_bytes_with_kernels()],
                    FastInt8::for_model(m.record_bytes()),
                )
            },
            |image, (scratch, fast)| {
                classify_int8(m, kernels, fast, image, scratch).map_or(usize::MAX, |p| p.class)
            },
        ),
        Model::F32(m) => map_images(
            pixels,
            image_len,
            threads,
            || {
                (
                    vec![0f32; m.scratch_len()],
                    FastF32::for_model(m.record_bytes()),
                )
            },
            |image, (scratch, fast)| {
                classify_f32(m, kernels, fast, image, scratch).map_or(usize::MAX, |p| p.class)
            },
        ),
    }
}

/// The result of classifying a labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Flavour of the model evaluated.
    pub flavour: Flavour,
    /// `confusion[label][predicted]`: how many images of each label got each prediction.
    pub confusion: Vec<Vec<u32>>,
    /// Wall-clock seconds of the classification.
    pub seconds: f64,
    /// Threads used.
    pub threads: usize,
    /// The kernels that ran: an instruction set (`avx2`, `sse2`, `neon`) or `portable`.
    pub kernels: &'static str,
    /// One name per class.
    pub class_names: Vec<String>,
}

impl Evaluation {
    /// Classifies `pixels` (whole images of the model's input) and compares with `labels`.
    pub fn run(
        model: &Model<'_>,
        pixels: &[u8],
        labels: &[u16],
        threads: usize,
        kernels: Kernels,
    ) -> Self {
        let start = Instant::now();
        let predicted = predict_all(model, pixels, threads, kernels);
        let seconds = start.elapsed().as_secs_f64();
        let classes = model.architecture().classes();
        let mut confusion = vec![vec![0u32; classes]; classes];
        for (&label, &class) in labels.iter().zip(&predicted) {
            if let Some(cell) = confusion
                .get_mut(usize::from(label))
                .and_then(|row| row.get_mut(class))
            {
                *cell += 1;
            }
        }
        Self {
            flavour: model.flavour(),
            confusion,
            seconds,
            threads,
            kernels: kernels.name(),
            class_names: (0..classes).map(|class| class.to_string()).collect(),
        }
    }

    /// The name of `class`, if it has one other than its number.
    fn name_of(&self, class: usize) -> Option<&str> {
        self.class_names
            .get(class)
            .map(String::as_str)
            .filter(|name| !crate::data::set::is_number_name(class, name))
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.confusion.len()
    }

    /// Images classified.
    pub fn images(&self) -> u32 {
        self.confusion.iter().flatten().sum()
    }

    /// Images classified correctly.
    pub fn correct(&self) -> u32 {
        (0..self.classes()).map(|c| self.confusion[c][c]).sum()
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
            "speed: {:.0} images/s on {} thread(s), {:.2} ms per image per thread, {} kernels",
            self.images_per_second(),
            self.threads,
            self.seconds * 1000.0 * self.threads as f64 / f64::from(self.images().max(1)),
            self.kernels
        );
        let _ = writeln!(out, "\nper class:");
        for class in 0..self.classes() {
            let name = self
                .name_of(class)
                .map_or_else(String::new, |name| format!(" {name}"));
            let _ = writeln!(
                out,
                "  {class}{name}: {:6.2}% of {}",
                self.class_accuracy(class) * 100.0,
                self.confusion[class].iter().sum::<u32>()
            );
        }
        let _ = writeln!(
            out,
            "\nconfusion matrix (rows: true label, columns: predicted class):"
        );
        let _ = write!(out, "      ");
        for class in 0..self.classes() {
            let _ = write!(out, "{class:>6}");
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
        const TOP: i32 = 110;
        // Rows read "3 cat" when classes have names (columns keep the numbers, for width).
        let row_labels: Vec<String> = (0..self.classes())
            .map(|class| match self.name_of(class) {
                Some(name) => format!("{class} {}", name.chars().take(16).collect::<String>()),
                None => class.to_string(),
            })
            .collect();
        let widest = row_labels
            .iter()
            .map(|label| label.chars().count())
            .max()
            .unwrap_or(1);
        // Past the "true label" caption at the left edge.
        let left = (70 + 9 * widest as i32).max(90);
        let classes = self.classes().max(1) as i32;
        // 56-pixel cells for ten classes, smaller for more, at least 14.
        let cell = (560 / classes).clamp(14, 56);
        let side = (left + cell * classes + 30) as u32;
        let height = (TOP + cell * classes + 30) as u32;
        ensure_font()?;
        let mut pixels = vec![0u8; (side * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (side, height)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let text = |s: &str, at: (i32, i32), size: i32| {
                Text::new(s.to_string(), at, (FONT, size).into_font())
            };
            root.draw(&text(title, (16, 14), 20)).map_err(plot_error)?;
            root.draw(&text(
                "predicted class",
                (left + cell * classes / 2 - 50, TOP - 50),
                16,
            ))
            .map_err(plot_error)?;
            root.draw(&text("true", (16, TOP + cell * classes / 2 - 20), 16))
                .map_err(plot_error)?;
            root.draw(&text("label", (16, TOP + cell * classes / 2), 16))
                .map_err(plot_error)?;
            for (label, row) in self.confusion.iter().enumerate() {
                let total = f64::from(row.iter().sum::<u32>().max(1));
                let y = TOP + cell * label as i32;
                let row_label = &row_labels[label];
                let width = 9 * row_label.chars().count() as i32;
                root.draw(&text(row_label, (left - 8 - width, y + cell / 2 - 8), 16))
                    .map_err(plot_error)?;
                for (class, &count) in row.iter().enumerate() {
                    let x = left + cell * class as i32;
                    if label == 0 {
                        root.draw(&text(&class.to_string(), (x + cell / 2 - 5, TOP - 24), 16))
                            .map_err(plot_error)?;
                    }
                    let share = f64::from(count) / total;
                    // Errors are rare: a square-root scale keeps a few visible.
                    let strength = if label == class {
                        share
                    } else {
                        share.sqrt().min(1.0)
                    };
                    let shade = |full: u8| (255.0 - (255.0 - f64::from(full)) * strength) as u8;
                    let colour = if label == class {
                        RGBColor(shade(46), shade(160), shade(67))
                    } else {
                        RGBColor(shade(214), shade(39), shade(40))
                    };
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        colour.filled(),
                    ))
                    .map_err(plot_error)?;
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        BLACK.mix(0.15),
                    ))
                    .map_err(plot_error)?;
                    if count > 0 && cell >= 28 {
                        let label_colour = if strength > 0.6 { WHITE } else { BLACK };
                        let s = count.to_string();
                        let at = (x + cell / 2 - 4 * s.len() as i32, y + cell / 2 - 8);
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

/// Refuses a data set whose images or classes do not fit `architecture`.
pub fn check_data_fits(architecture: &Architecture, data: &DataSet) -> anyhow::Result<()> {
    ensure!(
        architecture.is_classifier(),
        "the model's output is {} values, not class scores (output:values): there is no class \
         to compare with the labels. Its outputs for given inputs are what `host fixture` \
         records and the firmware checks",
        architecture.output().values()
    );
    let input = architecture.input();
    let shape = data.shape();
    ensure!(
        input == shape,
        "the model's input is {input}, the data set's pictures are {shape}"
    );
    let labels = data.classes();
    ensure!(
        architecture.classes() >= labels,
        "the model gives {} classes, the data set's labels go up to {}",
        architecture.classes(),
        labels.saturating_sub(1)
    );
    Ok(())
}

/// What `host eval` evaluates, and where it writes what it found.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// The model file.
    pub model: PathBuf,
    /// The data set's directory.
    pub data_dir: PathBuf,
    /// Evaluate the first N test images only.
    pub limit: Option<usize>,
    /// Where to write the confusion matrix image, if anywhere.
    pub confusion_png: Option<PathBuf>,
    /// A directory for the report as JSON and the confusion matrix image, if any.
    pub out: Option<PathBuf>,
    /// Replace those files if they exist.
    pub overwrite: bool,
    /// Threads to classify on.
    pub threads: usize,
    /// The kernels to classify with.
    pub kernels: Kernels,
    /// How pictures of another size are fitted to the model's input (folder sets).
    pub fit: Fit,
    /// Leave out damaged pictures instead of failing (folder sets).
    pub skip_damaged: bool,
}

/// File name of the confusion matrix image in `host eval --out DIR`.
pub const CONFUSION_FILE: &str = "confusion.png";
/// File name of the report in `host eval --out DIR`.
pub const REPORT_FILE: &str = "eval.json";

impl EvalOptions {
    /// The confusion matrix image to write, if one was asked for.
    pub fn confusion_path(&self) -> Option<PathBuf> {
        self.confusion_png
            .clone()
            .or_else(|| self.out.as_ref().map(|dir| dir.join(CONFUSION_FILE)))
    }

    /// The JSON report to write, if an output directory was given.
    pub fn report_path(&self) -> Option<PathBuf> {
        self.out.as_ref().map(|dir| dir.join(REPORT_FILE))
    }
}

/// What `host eval` found.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// The numbers.
    pub evaluation: Evaluation,
    /// The model file evaluated.
    pub model: PathBuf,
    /// The confusion matrix image to write, if asked for.
    pub confusion_png: Option<PathBuf>,
    /// The JSON report to write, if asked for.
    pub report_json: Option<PathBuf>,
}

impl EvalReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let evaluation = &self.evaluation;
        let per_class: Vec<f64> = (0..evaluation.classes())
            .map(|c| evaluation.class_accuracy(c))
            .collect();
        serde_json::json!({
            "model": self.model,
            "flavour": evaluation.flavour.name(),
            "images": evaluation.images(),
            "correct": evaluation.correct(),
            "accuracy": evaluation.accuracy(),
            "class_accuracy": per_class,
            "confusion": evaluation.confusion,
            "seconds": evaluation.seconds,
            "threads": evaluation.threads,
            "kernels": evaluation.kernels,
            "images_per_second": evaluation.images_per_second(),
            "class_names": evaluation.class_names,
            "confusion_png": self.confusion_png,
        })
    }

    /// Writes the files asked for (each atomically), creating their directory; returns them.
    pub fn write_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        if let Some(path) = &self.confusion_png {
            let title = format!(
                "{} ({}): {:.2}% of {} test images",
                self.model
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                self.evaluation.flavour.name(),
                self.evaluation.accuracy() * 100.0,
                self.evaluation.images()
            );
            let png = self.evaluation.confusion_png(&title)?;
            write_creating_dir(path, &png)?;
            written.push(path.clone());
        }
        if let Some(path) = &self.report_json {
            let mut json = serde_json::to_vec_pretty(&self.to_json())?;
            json.push(b'\n');
            write_creating_dir(path, &json)?;
            written.push(path.clone());
        }
        Ok(written)
    }
}

/// Writes `bytes` to `path` atomically, creating its directory (and removing the directory
/// again if the write fails).
fn write_creating_dir(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let created = dir
        .map(atomic::CreatedDirs::create)
        .transpose()
        .with_context(|| format!("{}: cannot create its directory", path.display()))?;
    atomic::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
    if let Some(created) = created {
        created.keep();
    }
    Ok(())
}

/// `host eval`: the test set through the core. Refuses, before classifying anything, output
/// files that exist (without `overwrite`); writes nothing itself ([`EvalReport::write_files`]
/// does, once the report is out).
pub fn run(options: &EvalOptions) -> anyhow::Result<EvalReport> {
    let confusion_png = options.confusion_path();
    let report_json = options.report_path();
    let outputs: Vec<PathBuf> = confusion_png.iter().chain(&report_json).cloned().collect();
    atomic::refuse_existing(&outputs, options.overwrite)?;
    let bytes = super::read_model(&options.model)?;
    let model = Model::from_bytes(&bytes)?;
    let folder_options = FolderOptions::for_input(
        model.architecture().input(),
        options.fit,
        options.skip_damaged,
    )
    .with_front_end(model.front_end());
    let data = DataSet::load(&options.data_dir, &folder_options)?;
    check_data_fits(model.architecture(), &data)?;
    let class_names = super::class_names(&model, &data)?;
    ensure!(options.limit != Some(0), "--limit must be at least 1");
    let test = match options.limit {
        Some(limit) => data.test.head(limit),
        None => data.test,
    };
    let mut evaluation = Evaluation::run(
        &model,
        &test.pixels,
        &test.labels,
        options.threads,
        options.kernels,
    );
    evaluation.class_names = class_names;
    Ok(EvalReport {
        evaluation,
        model: options.model.clone(),
        confusion_png,
        report_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation() -> Evaluation {
        let mut confusion = vec![vec![0u32; 10]; 10];
        for (c, row) in confusion.iter_mut().enumerate() {
            row[c] = 98;
            row[(c + 1) % 10] = 2;
        }
        Evaluation {
            flavour: Flavour::Int8,
            confusion,
            seconds: 0.5,
            threads: 2,
            kernels: "portable",
            class_names: (0..10).map(|class| class.to_string()).collect(),
        }
    }

    #[test]
    fn the_report_names_classes_that_have_names() {
        let mut named = evaluation();
        assert!(named.report().contains("  3:  98.00% of 100"));
        named.class_names[3] = "cat".into();
        assert!(
            named.report().contains("  3 cat:  98.00% of 100"),
            "{}",
            named.report()
        );
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

    #[test]
    fn confusion_png_rows_make_room_for_names() {
        let plain = image::load_from_memory(&evaluation().confusion_png("t").unwrap()).unwrap();
        let mut named = evaluation();
        named.class_names[4] = "a-rather-long-class-name".into();
        let named = image::load_from_memory(&named.confusion_png("t").unwrap()).unwrap();
        // 16 characters of the name kept, and the number before it.
        assert_eq!(named.width(), plain.width() + (70 + 9 * 18 - 90));
        assert_eq!(named.height(), plain.height());
    }
}
