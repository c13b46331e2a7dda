//! Learning-rate schedules: the rate of every training step from the run's settings and the
//! step's place in the run alone, so that a resumed run steps at the rates an uninterrupted one
//! does.
//!
//! - `constant`: the learning rate throughout (the default).
//! - `step:EPOCHS:FACTOR`: the rate times `FACTOR` after every `EPOCHS` epochs, as a Keras
//!   `LearningRateScheduler` callback with `lambda epoch: lr * FACTOR ** (epoch // EPOCHS)`
//!   sets it (epochs counted from 0 there, from 1 in `host train`'s reports).
//! - `cosine`: Keras's `CosineDecay(lr, decay_steps=all the run's steps)` (`alpha` 0, no
//!   warm-up): `lr * (1 + cos(pi * step / steps)) / 2`, step by step from the first (step 0)
//!   to 0 after the last. A resumed run given more `--epochs` continues on the longer run's
//!   curve from where it is.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How the learning rate changes over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Schedule {
    /// The learning rate throughout.
    #[default]
    Constant,
    /// Multiplied by `factor` after every `epochs` epochs.
    Step {
        /// Epochs between two changes.
        epochs: usize,
        /// What each change multiplies the rate by.
        factor: f64,
    },
    /// Half a cosine from the learning rate down to 0 over the run's steps.
    Cosine,
}

/// Where a training step lies in its run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepPlace {
    /// The step's epoch, from 1.
    pub epoch: usize,
    /// The step's batch in its epoch, from 0.
    pub batch: usize,
    /// Batches per epoch.
    pub batches_per_epoch: usize,
    /// Epochs of the run.
    pub epochs: usize,
}

impl Schedule {
    /// Whether this is the constant schedule (what settings leave out when recording).
    pub fn is_constant(&self) -> bool {
        *self == Schedule::Constant
    }

    /// The learning rate of the step at `place`, for the run's `learning_rate`.
    pub fn rate(&self, learning_rate: f64, place: StepPlace) -> f64 {
        match *self {
            Schedule::Constant => learning_rate,
            Schedule::Step { epochs, factor } => {
                let changes = (place.epoch.saturating_sub(1) / epochs.max(1)) as i32;
                learning_rate * factor.powi(changes)
            }
            Schedule::Cosine => {
                let steps = (place.epochs * place.batches_per_epoch).max(1);
                let step = (place.epoch.saturating_sub(1) * place.batches_per_epoch + place.batch)
                    .min(steps);
                let progress = step as f64 / steps as f64;
                learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Step { epochs, factor } => write!(f, "step:{epochs}:{factor}"),
            Schedule::Cosine => write!(f, "cosine"),
        }
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "constant, step:EPOCHS:FACTOR (e.g. step:5:0.5) or cosine";
        let mut parts = text.trim().split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("constant"), None, ..) => Ok(Schedule::Constant),
            (Some("cosine"), None, ..) => Ok(Schedule::Cosine),
            (Some("step"), Some(epochs), Some(factor), None) => {
                let epochs: usize = epochs.parse().ok().filter(|&e| e >= 1).ok_or_else(|| {
                    format!("`{text}`: EPOCHS must be a whole number of at least 1; {usage}")
                })?;
                let factor: f64 = factor
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite() && *f > 0.0)
                    .ok_or_else(|| {
                        format!("`{text}`: FACTOR must be a positive number (e.g. 0.5); {usage}")
                    })?;
                Ok(Schedule::Step { epochs, factor })
            }
            _ => Err(format!("`{text}` is not a schedule; give {usage}")),
        }
    }
}

impl Serialize for Schedule {
    /// As its text form, so a checkpoint or `metrics.json` reads like the command line.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    /// From its text form, checked as the command line is.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(epoch: usize, batch: usize) -> StepPlace {
        StepPlace {
            epoch,
            batch,
            batches_per_epoch: 10,
            epochs: 4,
        }
    }

    #[test]
    fn steps_change_the_rate_every_few_epochs() {
        let schedule: Schedule = "step:2:0.5".parse().unwrap();
        assert_eq!(schedule.rate(0.1, place(1, 0)), 0.1);
        assert_eq!(schedule.rate(0.1, place(2, 9)), 0.1);
        assert_eq!(schedule.rate(0.1, place(3, 0)), 0.05);
        assert_eq!(schedule.rate(0.1, place(5, 3)), 0.025);
    }

    #[test]
    fn cosine_falls_from_the_rate_to_zero_over_the_run() {
        let cosine = Schedule::Cosine;
        assert_eq!(cosine.rate(0.1, place(1, 0)), 0.1);
        // Halfway (step 20 of 40) the rate is half; a quarter in, (1 + cos(pi/4)) / 2 of it.
        assert!((cosine.rate(0.1, place(3, 0)) - 0.05).abs() < 1e-15);
        let quarter = 0.1 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0;
        assert!((cosine.rate(0.1, place(2, 0)) - quarter).abs() < 1e-15);
        assert!(cosine.rate(0.1, place(4, 9)) > 0.0);
        assert!(cosine.rate(0.1, place(4, 9)) < 0.001);
        assert!(cosine.rate(0.1, place(9, 0)).abs() < 1e-15);
    }

    #[test]
    fn text_form_round_trips_and_bad_words_say_why() {
        for text in ["constant", "cosine", "step:5:0.5", "step:1:2"] {
            let schedule: Schedule = text.parse().unwrap();
            assert_eq!(schedule.to_string(), text);
            let json = serde_json::to_string(&schedule).unwrap();
            assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), schedule);
        }
        for (text, says) in [
            ("step:0:0.5", "EPOCHS"),
            ("step:2:-1", "FACTOR"),
            ("step:2:nan", "FACTOR"),
            ("step:2", "not a schedule"),
            ("linear", "not a schedule"),
            ("cosine:3", "not a schedule"),
        ] {
            let error = text.parse::<Schedule>().unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
