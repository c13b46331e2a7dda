//! What a training run records: its settings, the numbers of every epoch and where its data came
//! from. Stored in the checkpoint (to resume) and in `metrics.json` (to read).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::DataSet;
use crate::data::folders::Fit;
use crate::data::mnist::FileInfo;
use crate::train::augment::Augment;
use crate::train::backend::BackendKind;
use crate::train::model::InitScheme;
use crate::train::network::TrainNetwork;
use crate::train::schedule::Schedule;
use tinycnn::Architecture;

/// burn version this crate is pinned to (`=` in Cargo.toml; a test keeps the two in step).
pub const BURN_VERSION: &str = "0.22.1";
/// Version of this crate.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");
/// How shuffling and dropout draw their random numbers. A run can resume exactly only under the
/// scheme it started with: each epoch's order and dropout masks derive from (seed, epoch) alone,
/// so the checkpoint needs no generator state beyond the seed and the epoch.
pub const RNG_SCHEME: &str =
    "chacha8(seed) stream 2*epoch shuffles, stream 2*epoch+1 seeds dropout";

/// Hyper-parameters of a run; fixed when it starts, kept when it resumes (except `epochs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// The network, in the text form (`tinycnn::text`), input included, with `:bn` after each
    /// batch-normalised layer ([`TrainNetwork`]).
    #[serde(default = "network_before_it_was_recorded")]
    pub architecture: String,
    /// Total epochs to train.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// The learning rate (the schedule's start).
    pub learning_rate: f64,
    /// Adagrad epsilon, added inside the square root ([`crate::train::adagrad::KerasAdagrad`]);
    /// Adam keeps Keras's ([`crate::train::adam`]).
    pub adagrad_epsilon: f32,
    /// The optimizer. Runs recorded before it was a setting all used Adagrad.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// How the learning rate changes over the run.
    #[serde(default, skip_serializing_if = "Schedule::is_constant")]
    pub schedule: Schedule,
    /// Keras 3's decoupled weight decay: every parameter loses this fraction of itself times the
    /// learning rate before each step (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight_decay: f64,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// How the initial weights were drawn.
    #[serde(default = "init_before_it_was_recorded")]
    pub init: InitScheme,
    /// Train on the first N training images only.
    pub limit: Option<usize>,
    /// Evaluate on the first N test images only.
    pub test_limit: Option<usize>,
    /// How pictures of another size than the input's were fitted to it (folder sets).
    #[serde(default)]
    pub fit: Fit,
    /// Whether damaged pictures were left out instead of failing (folder sets).
    #[serde(default)]
    pub skip_damaged: bool,
    /// The fraction of the training pictures held out as the validation set, drawn with the
    /// seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// Which epoch's weights the run exports.
    #[serde(default)]
    pub keep: Keep,
    /// How training pictures are varied each time they are seen (never validation or test
    /// pictures): epoch `e`'s draws come from stream `u64::MAX - e` of the seed's generator,
    /// picture `k` of its order from word `k * WORDS_PER_PICTURE` on
    /// ([`crate::train::augment_rng`]).
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
    /// A keyword set's: the bits of its front end's FFT data, 16 or 32
    /// ([`crate::data::audio::keyword_front_end`]), which a resumed run computes its features
    /// with again; `None` for pictures. Keyword runs recorded before it was a setting computed
    /// the 32-bit FFT ([`crate::data::audio::FFT_BITS_BEFORE_IT_WAS_RECORDED`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fft_bits: Option<u8>,
}

/// The optimizers `host train` runs, each computed as Keras 3 computes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adagrad, accumulators from zero (the tutorial's; learning rate 0.01 by default).
    #[default]
    Adagrad,
    /// Adam with Keras's defaults (beta_1 0.9, beta_2 0.999, epsilon 1e-7; learning rate 0.001
    /// by default).
    Adam,
}

impl OptimizerKind {
    /// Tensors the optimizer keeps for each parameter tensor (in a checkpoint's record).
    pub fn state_tensors(self) -> usize {
        match self {
            // The sum of squared gradients.
            OptimizerKind::Adagrad => 1,
            // The step count and both running means.
            OptimizerKind::Adam => 3,
        }
    }
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

/// Runs recorded before networks were descriptions all trained the tutorial's network.
fn network_before_it_was_recorded() -> String {
    Architecture::REFERENCE.to_string()
}

/// Runs recorded before `init` was a setting were all initialised Glorot-uniform.
fn init_before_it_was_recorded() -> InitScheme {
    InitScheme::GlorotUniform
}

/// The pictures an epoch is evaluated on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvaluatedOn {
    /// The test set (a run without a validation set).
    #[default]
    Test,
    /// The validation set; the test set is kept for the final report.
    Validation,
}

impl EvaluatedOn {
    /// The set's name, as the reports print it.
    pub fn name(self) -> &'static str {
        match self {
            EvaluatedOn::Test => "test",
            EvaluatedOn::Validation => "validation",
        }
    }
}

/// Which epoch's weights a run exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Keep {
    /// The last epoch's.
    #[default]
    Last,
    /// Those of the epoch with the best validation accuracy (the earliest of equals).
    Best,
}

/// The test set's numbers for the weights a run exports, measured once after its last epoch
/// when the epochs were evaluated on a validation set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalTest {
    /// The epoch whose weights were tested.
    pub epoch: usize,
    /// Mean cross-entropy on the test pictures.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Test pictures.
    pub images: usize,
}

/// Numbers of one completed epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches (dropout active, as Keras reports).
    pub train_loss: f64,
    /// Fraction of training images classified correctly during the epoch (dropout active).
    pub train_accuracy: f64,
    /// Mean cross-entropy on the evaluated images (`evaluated_on`: the test set, or the
    /// validation set when the run has one) after the epoch (inference mode).
    pub test_loss: f64,
    /// Fraction of the evaluated images classified correctly after the epoch (inference mode).
    pub test_accuracy: f64,
    /// Training images seen.
    pub train_images: usize,
    /// Images evaluated.
    pub test_images: usize,
    /// Which set `test_loss`, `test_accuracy` and `test_images` are of.
    #[serde(default)]
    pub evaluated_on: EvaluatedOn,
    /// Wall time of the training batches.
    pub train_seconds: f64,
    /// Wall time of the evaluation.
    pub eval_seconds: f64,
    /// Training images per second of `train_seconds`.
    pub images_per_second: f64,
    /// Training batches per second of `train_seconds`.
    pub batches_per_second: f64,
    /// Backend the epoch ran on.
    pub backend: BackendKind,
    /// The learning rate of the epoch's first step (the schedule's; epochs recorded before
    /// schedules all ran at the run's rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
}

/// Everything needed to continue a run exactly where it stopped, apart from the weights and the
/// optimizer state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Settings of the run.
    pub settings: TrainSettings,
    /// Epochs completed (and checkpointed).
    pub completed_epochs: usize,
    /// One entry per completed epoch.
    pub history: Vec<EpochMetrics>,
    /// The data files the run trained and evaluated on.
    pub data: Vec<FileInfo>,
    /// See [`RNG_SCHEME`].
    pub rng_scheme: String,
    /// Each command line that started or resumed the run.
    pub commands: Vec<String>,
    /// The epoch after `completed_epochs` when the checkpoint was taken part-way through it
    /// (Ctrl-C, or a timed checkpoint); `--resume` continues it from the next batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_in_progress: Option<EpochProgress>,
    /// The data directory, absolute, so that `--resume` finds it without `--data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// [`DataSet::fingerprint`] of the data as loaded (runs recorded before it was kept are
    /// checked by their IDX files' sums alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<String>,
    /// The classes' names, in class order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    /// The epoch with the best validation accuracy so far, whose weights `--keep best` keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// The test set's numbers for the exported weights, once the run is done (runs with a
    /// validation set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_test: Option<FinalTest>,
}

/// How far an epoch had gone when it was checkpointed part-way: the batches trained, and the
/// running sums its summary line and metrics are made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Batches of the epoch's order trained so far.
    pub batches: usize,
    /// Training images seen so far this epoch.
    pub images: usize,
    /// Sum over those images of the cross-entropy (dropout active).
    pub loss_sum: f64,
    /// Those images classified correctly.
    pub correct: usize,
    /// Wall time of those batches.
    pub seconds: f64,
}

impl TrainSettings {
    /// The network these settings train, as the core runs it (batch normalisation folded away:
    /// see [`TrainSettings::network`]).
    pub fn architecture(&self) -> anyhow::Result<Architecture> {
        self.network().map(|network| network.architecture)
    }

    /// The network these settings train, with its batch-normalised layers (`:bn` in
    /// `architecture`; runs recorded before it existed have none).
    pub fn network(&self) -> anyhow::Result<TrainNetwork> {
        TrainNetwork::parse(&self.architecture, Architecture::REFERENCE.input()).map_err(|error| {
            anyhow::anyhow!(
                "the recorded network `{}` is not a valid description: {error}",
                self.architecture
            )
        })
    }

    /// Which layers of [`TrainSettings::architecture`] are batch-normalised, one flag per layer.
    pub fn batch_norm(&self) -> anyhow::Result<Vec<bool>> {
        self.network().map(|network| network.batch_norm)
    }
}

impl TrainState {
    /// The state of a run that has not completed an epoch yet.
    pub fn new(settings: TrainSettings, data: &DataSet, command: String) -> Self {
        Self {
            settings,
            completed_epochs: 0,
            history: Vec::new(),
            data: data.idx_files().to_vec(),
            rng_scheme: RNG_SCHEME.to_string(),
            commands: vec![command],
            epoch_in_progress: None,
            data_dir: None,
            data_fingerprint: Some(data.fingerprint()),
            class_names: data.class_names.clone(),
            best_epoch: None,
            final_test: None,
        }
    }

    /// Whether the run trains on canonical MNIST.
    pub fn is_canonical_mnist(&self) -> bool {
        crate::data::mnist::is_canonical_mnist(&self.data)
    }
}

/// Crate versions recorded with the metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// tinycnn-host.
    pub tinycnn_host: String,
    /// burn.
    pub burn: String,
}

impl Versions {
    /// The versions of this build.
    pub fn current() -> Self {
        Self {
            tinycnn_host: HOST_VERSION.to_string(),
            burn: BURN_VERSION.to_string(),
        }
    }
}

/// Content of `metrics.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    /// Whether all `settings.epochs` epochs are done.
    pub finished: bool,
    /// Epochs completed.
    pub completed_epochs: usize,
    /// Settings of the run.
    pub settings: TrainSettings,
    /// Trainable parameters of the network.
    pub parameters: usize,
    /// One entry per epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Sum of the epochs' training and evaluation time.
    pub total_seconds: f64,
    /// Data files and whether they are the canonical MNIST (none for folders of pictures).
    pub data: Vec<FileInfo>,
    /// The classes' names, in class order.
    #[serde(default)]
    pub class_names: Vec<String>,
    /// The epoch with the best validation accuracy, if the run has a validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// The test set's numbers for the exported weights (runs with a validation set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_test: Option<FinalTest>,
    /// Whether all four data files are the canonical MNIST.
    pub canonical_mnist: bool,
    /// Crate versions of the build that wrote the file.
    pub versions: Versions,
    /// Command lines that started or resumed the run.
    pub commands: Vec<String>,
    /// The epoch the checkpoint stopped part-way through, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_in_progress: Option<EpochProgress>,
}

impl MetricsFile {
    /// The metrics of a run in `state`.
    pub fn from_state(state: &TrainState, parameters: usize) -> Self {
        Self {
            finished: state.completed_epochs >= state.settings.epochs,
            completed_epochs: state.completed_epochs,
            settings: state.settings.clone(),
            parameters,
            epochs: state.history.clone(),
            total_seconds: state
                .history
                .iter()
                .map(|epoch| epoch.train_seconds + epoch.eval_seconds)
                .sum(),
            canonical_mnist: state.is_canonical_mnist(),
            data: state.data.clone(),
            class_names: state.class_names.clone(),
            best_epoch: state.best_epoch,
            final_test: state.final_test.clone(),
            versions: Versions::current(),
            commands: state.commands.clone(),
            epoch_in_progress: state.epoch_in_progress.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_written_before_init_and_the_network_were_recorded_read_as_the_tutorials() {
        let json = r#"{"epochs":12,"batch_size":128,"learning_rate":0.01,
            "adagrad_epsilon":1e-7,"seed":42,"limit":null,"test_limit":null}"#;
        let settings: TrainSettings = serde_json::from_str(json).unwrap();
        assert_eq!(settings.init, InitScheme::GlorotUniform);
        assert_eq!(settings.architecture().unwrap(), Architecture::REFERENCE);
        let recorded = TrainSettings {
            init: InitScheme::HeNormal,
            ..settings
        };
        let json = serde_json::to_string(&recorded).unwrap();
        assert!(json.contains(r#""init":"he-normal""#), "{json}");
        assert_eq!(
            serde_json::from_str::<TrainSettings>(&json).unwrap(),
            recorded
        );
    }

    #[test]
    fn burn_version_matches_the_pin_in_cargo_toml() {
        let manifest = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        let pin = format!("burn = {{ version = \"={BURN_VERSION}\"");
        assert!(manifest.contains(&pin), "Cargo.toml must pin {pin}");
    }
}
