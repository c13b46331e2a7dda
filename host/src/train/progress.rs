//! How a training run reports what it is doing: a live bar and summary lines like Keras, JSON
//! lines for scripts, or nothing.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::train::state::EpochMetrics;

/// Receives the events of a training run, in order.
pub trait Reporter {
    /// A line of information (data loaded, run resumed, files written).
    fn info(&mut self, text: &str);
    /// Epoch `epoch` of `epochs` starts and will train on `images` images.
    fn epoch_started(&mut self, epoch: usize, epochs: usize, images: usize);
    /// A batch is done: `images` so far this epoch, with the running mean loss and accuracy.
    fn batch_finished(&mut self, images: usize, loss: f64, accuracy: f64);
    /// Training batches are done; evaluation on `images` test images starts.
    fn evaluation_started(&mut self, images: usize);
    /// The epoch is complete and checkpointed.
    fn epoch_finished(&mut self, metrics: &EpochMetrics, epochs: usize);
    /// Training stopped part-way through the current epoch (Ctrl-C) after its last batch.
    fn epoch_interrupted(&mut self) {}
}

/// One summary line per epoch, in the manner of Keras.
pub fn summary_line(metrics: &EpochMetrics, epochs: usize) -> String {
    format!(
        "epoch {}/{epochs}: train loss {:.4} acc {:.2}% | {} loss {:.4} acc {:.2}% | \
         {:.1} s ({:.1} s training, {:.0} img/s, {:.2} batches/s)",
        metrics.epoch,
        metrics.train_loss,
        metrics.train_accuracy * 100.0,
        metrics.evaluated_on.name(),
        metrics.test_loss,
        metrics.test_accuracy * 100.0,
        metrics.train_seconds + metrics.eval_seconds,
        metrics.train_seconds,
        metrics.images_per_second,
        metrics.batches_per_second,
    )
}

/// Writes a line to stdout. Training goes on when stdout is closed (`host train --json | head`):
/// the run and its checkpoints matter more than its report, which `metrics.json` keeps anyway.
fn print_line(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Nothing at all (`--quiet`); errors still reach stderr through the caller.
#[derive(Debug, Default)]
pub struct QuietReporter;

impl Reporter for QuietReporter {
    fn info(&mut self, _: &str) {}
    fn epoch_started(&mut self, _: usize, _: usize, _: usize) {}
    fn batch_finished(&mut self, _: usize, _: f64, _: f64) {}
    fn evaluation_started(&mut self, _: usize) {}
    fn epoch_finished(&mut self, _: &EpochMetrics, _: usize) {}
}

/// The bar's layout: at most 80 columns on any terminal at least that wide (the bar itself takes
/// what the text leaves), with room for 5-digit epoch counts and 7-digit image counts.
const BAR_TEMPLATE: &str =
    "{prefix} [{wide_bar:.cyan/blue}] {human_pos:>6}/{human_len} ETA {eta:>3} {msg}";

/// A bar per epoch on stderr (hidden when stderr is not a terminal) and summary lines on stdout.
#[derive(Debug, Default)]
pub struct BarReporter {
    bar: Arc<Mutex<Option<ProgressBar>>>,
    /// Where bars draw; stderr when `None`.
    target: Option<fn() -> ProgressDrawTarget>,
}

/// Prints messages from another thread (the Ctrl-C handler) on a line of their own, above the
/// bar if one is shown.
#[derive(Clone, Debug)]
pub struct Notices {
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Notices {
    /// Prints `text` on stderr, starting on a new line.
    pub fn print(&self, text: &str) {
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match bar {
            // Suspending clears the bar's line, the terminal's echoed ^C included.
            Some(bar) if !bar.is_hidden() => bar.suspend(|| eprintln!("{text}")),
            // A terminal echoes ^C where the cursor is; the message goes below it.
            _ if std::io::stderr().is_terminal() => eprintln!("\n{text}"),
            _ => eprintln!("{text}"),
        }
    }
}

impl BarReporter {
    /// A handle that prints above this reporter's bars.
    pub fn notices(&self) -> Notices {
        Notices {
            bar: Arc::clone(&self.bar),
        }
    }

    fn current(&self) -> Option<ProgressBar> {
        self.bar
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, bar: Option<ProgressBar>) -> Option<ProgressBar> {
        std::mem::replace(
            &mut *self.bar.lock().unwrap_or_else(PoisonError::into_inner),
            bar,
        )
    }

    fn println(&self, text: &str) {
        match self.current() {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| print_line(text)),
            _ => print_line(text),
        }
    }
}

impl Reporter for BarReporter {
    fn info(&mut self, text: &str) {
        self.println(text);
    }

    fn epoch_started(&mut self, epoch: usize, epochs: usize, images: usize) {
        let target = self
            .target
            .map_or_else(ProgressDrawTarget::stderr, |make| make());
        let bar = ProgressBar::with_draw_target(Some(images as u64), target);
        bar.set_style(
            ProgressStyle::with_template(BAR_TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        bar.enable_steady_tick(Duration::from_millis(250));
        if let Some(old) = self.replace(Some(bar)) {
            old.finish_and_clear();
        }
    }

    fn batch_finished(&mut self, images: usize, loss: f64, accuracy: f64) {
        if let Some(bar) = self.current() {
            bar.set_position(images as u64);
            bar.set_message(format!("loss {loss:.4} acc {:.2}%", accuracy * 100.0));
        }
    }

    fn evaluation_started(&mut self, images: usize) {
        if let Some(bar) = self.current() {
            bar.set_message(format!("testing on {images} images"));
        }
    }

    fn epoch_finished(&mut self, metrics: &EpochMetrics, epochs: usize) {
        if let Some(bar) = self.replace(None) {
            bar.finish_and_clear();
        }
        print_line(&summary_line(metrics, epochs));
    }

    fn epoch_interrupted(&mut self) {
        // The bar's last state stays on screen; what follows starts on a line of its own.
        if let Some(bar) = self.replace(None) {
            bar.abandon();
            if !bar.is_hidden() {
                eprintln!();
            }
        }
    }
}

/// One JSON object per line on stdout (`--json`): `info`, `epoch_start`, `progress` (about every
/// tenth of an epoch), `evaluate` and `epoch` events.
#[derive(Debug, Default)]
pub struct JsonReporter {
    epoch: usize,
    images: usize,
    next_report: usize,
}

impl JsonReporter {
    fn emit(value: serde_json::Value) {
        print_line(&value.to_string());
    }
}

impl Reporter for JsonReporter {
    fn info(&mut self, text: &str) {
        Self::emit(json!({ "event": "info", "message": text }));
    }

    fn epoch_started(&mut self, epoch: usize, epochs: usize, images: usize) {
        self.epoch = epoch;
        self.images = images;
        self.next_report = images.div_ceil(10);
        Self::emit(json!({
            "event": "epoch_start", "epoch": epoch, "epochs": epochs, "images": images
        }));
    }

    fn batch_finished(&mut self, images: usize, loss: f64, accuracy: f64) {
        if images >= self.next_report && images < self.images {
            self.next_report = images + self.images.div_ceil(10);
            Self::emit(json!({
                "event": "progress", "epoch": self.epoch, "images": images,
                "loss": loss, "accuracy": accuracy
            }));
        }
    }

    fn evaluation_started(&mut self, images: usize) {
        Self::emit(json!({ "event": "evaluate", "epoch": self.epoch, "images": images }));
    }

    fn epoch_finished(&mut self, metrics: &EpochMetrics, epochs: usize) {
        let mut value = serde_json::to_value(metrics).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("event".into(), json!("epoch"));
            object.insert("epochs".into(), json!(epochs));
        }
        Self::emit(value);
    }

    fn epoch_interrupted(&mut self) {
        Self::emit(json!({ "event": "interrupted", "epoch": self.epoch }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::backend::BackendKind;
    use indicatif::TermLike;

    /// What the bar drew, on an 80-column terminal.
    static DRAWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

    #[derive(Debug)]
    struct EightyColumns;

    impl TermLike for EightyColumns {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            DRAWN.lock().unwrap().push(s.to_string());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn eighty_columns() -> ProgressDrawTarget {
        ProgressDrawTarget::term_like(Box::new(EightyColumns))
    }

    #[test]
    fn the_bar_fits_an_80_column_terminal_at_its_widest() {
        let mut reporter = BarReporter {
            target: Some(eighty_columns),
            ..BarReporter::default()
        };
        reporter.epoch_started(12_345, 99_999, 1_234_567);
        let bar = reporter.current().unwrap();
        bar.disable_steady_tick();
        reporter.batch_finished(1_234_000, 12.3456, 0.9999);
        bar.tick();
        std::thread::sleep(Duration::from_millis(60));
        reporter.evaluation_started(1_000_000);
        bar.tick();
        let drawn = DRAWN.lock().unwrap().clone();
        let lines: Vec<&str> = drawn.iter().flat_map(|s| s.lines()).collect();
        assert!(
            lines.iter().any(|l| l.contains("epoch 12345/99999")
                && l.contains("1,234,000/1,234,567")
                && l.contains("loss 12.3456 acc 99.99%")),
            "{lines:#?}"
        );
        for line in &lines {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
    }

    #[test]
    fn the_download_bar_fits_an_80_column_terminal_at_its_widest() {
        use crate::data::download::{BarProgress, FetchProgress as _};
        let mut progress = BarProgress::default();
        progress.target = Some(eighty_columns);
        progress.start(
            "train-images-idx3-ubyte.gz",
            "https://example.invalid/mnist/train-images-idx3-ubyte.gz",
            Some(999_999_999),
        );
        progress.advance(123_456_789);
        std::thread::sleep(Duration::from_millis(60));
        progress.advance(1);
        progress.finish(Ok(()));
        let drawn = DRAWN.lock().unwrap().clone();
        let lines: Vec<&str> = drawn.iter().flat_map(|s| s.lines()).collect();
        let bars: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("train-images-idx3-ubyte.gz ["))
            .collect();
        assert!(!bars.is_empty(), "{lines:#?}");
        for line in bars {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
    }

    #[test]
    fn summary_line_has_the_keras_figures() {
        let metrics = EpochMetrics {
            epoch: 2,
            train_loss: 0.12345,
            train_accuracy: 0.9612,
            test_loss: 0.0456,
            test_accuracy: 0.9857,
            train_images: 60_000,
            test_images: 10_000,
            evaluated_on: Default::default(),
            train_seconds: 150.0,
            eval_seconds: 6.5,
            images_per_second: 400.0,
            batches_per_second: 3.126,
            backend: BackendKind::Flex,
            learning_rate: None,
        };
        let line = summary_line(&metrics, 12);
        assert!(
            line.starts_with("epoch 2/12: train loss 0.1235 acc 96.12%"),
            "{line}"
        );
        assert!(line.contains("test loss 0.0456 acc 98.57%"), "{line}");
        assert!(line.contains("156.5 s (150.0 s training, 400 img/s, 3.13 batches/s)"));
    }
}
