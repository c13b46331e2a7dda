//! How a training run reports what it is doing: a live bar and summary lines like Keras, JSON
//! lines for scripts, or nothing.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
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
    /// The current epoch was abandoned (Ctrl-C).
    fn epoch_abandoned(&mut self) {}
}

/// One summary line per epoch, in the manner of Keras.
pub fn summary_line(metrics: &EpochMetrics, epochs: usize) -> String {
    format!(
        "epoch {}/{epochs}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | \
         {:.1} s ({:.1} s training, {:.0} img/s, {:.2} batches/s)",
        metrics.epoch,
        metrics.train_loss,
        metrics.train_accuracy * 100.0,
        metrics.test_loss,
        metrics.test_accuracy * 100.0,
        metrics.train_seconds + metrics.eval_seconds,
        metrics.train_seconds,
        metrics.images_per_second,
        metrics.batches_per_second,
    )
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

/// A bar per epoch on stderr (hidden when stderr is not a terminal) and summary lines on stdout.
#[derive(Debug, Default)]
pub struct BarReporter {
    bar: Option<ProgressBar>,
}

impl BarReporter {
    fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| println!("{text}")),
            _ => println!("{text}"),
        }
    }
}

impl Reporter for BarReporter {
    fn info(&mut self, text: &str) {
        self.println(text);
    }

    fn epoch_started(&mut self, epoch: usize, epochs: usize, images: usize) {
        let bar = ProgressBar::new(images as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30.cyan/blue}] {human_pos:>6}/{human_len} images, \
                 ETA {eta:>4} | {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        bar.enable_steady_tick(Duration::from_millis(250));
        self.bar = Some(bar);
    }

    fn batch_finished(&mut self, images: usize, loss: f64, accuracy: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(images as u64);
            bar.set_message(format!("loss {loss:.4} acc {:.2}%", accuracy * 100.0));
        }
    }

    fn evaluation_started(&mut self, images: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("evaluating on {images} test images"));
        }
    }

    fn epoch_finished(&mut self, metrics: &EpochMetrics, epochs: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{}", summary_line(metrics, epochs));
    }

    fn epoch_abandoned(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
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
        println!("{value}");
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

    fn epoch_abandoned(&mut self) {
        Self::emit(json!({ "event": "epoch_abandoned", "epoch": self.epoch }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::backend::BackendKind;

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
            train_seconds: 150.0,
            eval_seconds: 6.5,
            images_per_second: 400.0,
            batches_per_second: 3.126,
            backend: BackendKind::Flex,
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
