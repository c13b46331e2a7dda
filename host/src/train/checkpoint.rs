//! The training checkpoint: one self-checking file with the weights, the optimizer state and the
//! [`TrainState`], written atomically after every epoch.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic "TCNNCKPT" | version u32 | state length u64 | model length u64 | optimizer length u64
//! state (JSON) | model (burnpack record of Net) | optimizer (burnpack record of Adagrad)
//! SHA-256 of everything before it (32 bytes)
//! ```
//!
//! One file rather than three keeps weights, optimizer state and epoch count consistent with each
//! other under any interruption; the digest catches a file damaged after it was written.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;

use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use sha2::{Digest, Sha256};

use crate::atomic;
use crate::train::model::Net;
use crate::train::network::TrainNetwork;
use crate::train::state::TrainState;

/// File name of the checkpoint in a run's output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";
/// File name of the latest weights alone, a burnpack record of the [`Net`]
/// (`Net::with_network(&network, &device, init).load_file(..)`).
pub const MODEL_FILE: &str = "model.bpk";

const MAGIC: &[u8; 8] = b"TCNNCKPT";
/// 2: the network is a description (recorded in the state), the model record's keys
/// `convs.N.*`, `dense.N.*`. 3: the state may hold an epoch in progress; a host that reads
/// only version 2 would ignore it and resume from the epoch's start with mid-epoch weights,
/// so it must refuse the file. Version 2 files are read as checkpoints at an epoch's end.
const VERSION: u32 = 3;
/// The oldest version this host reads.
const OLDEST_VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 3 * 8;
const DIGEST_LEN: usize = 32;
/// A checkpoint of this network is about 5.5 MB; anything far larger is not one.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// A decoded checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Settings, epochs and history of the run.
    pub state: TrainState,
    /// Burnpack record of the model.
    pub model: Vec<u8>,
    /// Burnpack record of the optimizer.
    pub optimizer: Vec<u8>,
}

/// A checkpoint that cannot be used, with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", .path.display())]
pub struct CheckpointError {
    /// The checkpoint file.
    pub path: PathBuf,
    /// What is wrong.
    pub kind: CheckpointErrorKind,
}

/// What is wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointErrorKind {
    /// It could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    /// It is not a checkpoint of this tool.
    #[error("not a tinycnn training checkpoint (wrong magic bytes)")]
    NotACheckpoint,
    /// A checkpoint of another format version.
    #[error(
        "checkpoint format version {0}; this host reads versions {OLDEST_VERSION} to {VERSION} \
         (version 1, written before networks were descriptions, cannot be continued or \
         exported: train again; a later version needs a later host)"
    )]
    Version(u32),
    /// Cut short or with a wrong digest: damaged after it was written.
    #[error("damaged: {0}")]
    Damaged(String),
    /// The embedded state does not parse.
    #[error("unreadable training state: {0}")]
    State(String),
    /// burn rejected the model or optimizer record.
    #[error("cannot load the {part} record: {message}")]
    Record {
        /// "model" or "optimizer".
        part: &'static str,
        /// burn's message.
        message: String,
    },
}

impl Checkpoint {
    /// Capture a model and its optimizer at the end of an epoch.
    pub fn capture(
        state: TrainState,
        model: &Net,
        optimizer: &ModuleOptimizer,
    ) -> Result<Self, burn::store::RecordError> {
        model.sync_batch_statistics();
        Ok(Self {
            state,
            model: model.clone().into_record().into_bytes()?.to_vec(),
            optimizer: optimizer.into_bytes()?.to_vec(),
        })
    }

    /// Serialise to the file layout.
    pub fn encode(&self) -> Vec<u8> {
        let state = serde_json::to_vec(&self.state)
            .unwrap_or_else(|error| unreachable!("the state serialises to JSON: {error}"));
        let mut bytes = Vec::with_capacity(
            HEADER_LEN + state.len() + self.model.len() + self.optimizer.len() + DIGEST_LEN,
        );
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        for part in [&state, &self.model, &self.optimizer] {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        }
        bytes.extend_from_slice(&state);
        bytes.extend_from_slice(&self.model);
        bytes.extend_from_slice(&self.optimizer);
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        bytes
    }

    /// Parse the file layout, checking lengths and digest.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointErrorKind> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(CheckpointErrorKind::NotACheckpoint);
        }
        if bytes.len() < HEADER_LEN + DIGEST_LEN {
            return Err(CheckpointErrorKind::Damaged(format!(
                "{} bytes, shorter than a header",
                bytes.len()
            )));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(CheckpointErrorKind::Version(version));
        }
        let length =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let lengths = [length(12), length(20), length(28)];
        let body = (bytes.len() - HEADER_LEN - DIGEST_LEN) as u64;
        let declared = lengths
            .iter()
            .try_fold(0u64, |sum, &len| sum.checked_add(len));
        if declared != Some(body) {
            return Err(CheckpointErrorKind::Damaged(format!(
                "header declares parts of {lengths:?} bytes, the file holds {body}"
            )));
        }
        let (content, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
        if Sha256::digest(content).as_slice() != digest {
            return Err(CheckpointErrorKind::Damaged(
                "SHA-256 digest does not match".into(),
            ));
        }
        // The lengths sum to the body size, which fits in memory, so each fits in usize.
        let [state_len, model_len, _] = lengths.map(|len| len as usize);
        let state = &content[HEADER_LEN..HEADER_LEN + state_len];
        let model = &content[HEADER_LEN + state_len..HEADER_LEN + state_len + model_len];
        let optimizer = &content[HEADER_LEN + state_len + model_len..];
        let state: TrainState = serde_json::from_slice(state)
            .map_err(|error| CheckpointErrorKind::State(error.to_string()))?;
        Ok(Self {
            state,
            model: model.to_vec(),
            optimizer: optimizer.to_vec(),
        })
    }

    /// Write atomically to `path`.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        atomic::write(path, &self.encode())
    }

    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let fail = |kind| CheckpointError {
            path: path.to_path_buf(),
            kind,
        };
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|error| fail(CheckpointErrorKind::Io(error)))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(fail(CheckpointErrorKind::Damaged(format!(
                "larger than {MAX_FILE_BYTES} bytes"
            ))));
        }
        Self::decode(&bytes).map_err(fail)
    }

    /// The network the checkpoint trains.
    pub fn network(&self) -> Result<TrainNetwork, CheckpointErrorKind> {
        self.state
            .settings
            .network()
            .map_err(|error| CheckpointErrorKind::State(error.to_string()))
    }

    /// The model, a network of `network`, on `device`.
    pub fn model(
        &self,
        network: &TrainNetwork,
        device: &Device,
    ) -> Result<Net, CheckpointErrorKind> {
        load_model_record(&self.model, network, device)
    }

    /// `fresh`, the optimizer of the run's settings ([`crate::train::new_optimizer`]), whose
    /// state holds `tensors_per_parameter` tensors for each parameter tensor
    /// ([`OptimizerKind::state_tensors`](crate::train::state::OptimizerKind::state_tensors)),
    /// with this checkpoint's state for a network of `network`.
    pub fn optimizer(
        &self,
        fresh: ModuleOptimizer,
        tensors_per_parameter: usize,
        network: &TrainNetwork,
    ) -> Result<ModuleOptimizer, CheckpointErrorKind> {
        let record_error = |message: String| CheckpointErrorKind::Record {
            part: "optimizer",
            message,
        };
        let optimizer = fresh
            .from_bytes(Bytes::from_bytes_vec(self.optimizer.clone()))
            .map_err(|error| record_error(error.to_string()))?;
        // burn skips parameter states it cannot rebuild instead of failing; a resumed run must
        // not silently restart the optimizer's accumulators (nor take another optimizer's).
        // One weight and one bias per layer with weights; a batch-normalised layer has no bias,
        // and its batch norm a scale and an offset (its running statistics are not trained).
        let expected = 2 * network.architecture.weighted_layers()
            + network
                .batch_norm
                .iter()
                .filter(|&&normalised| normalised)
                .count();
        let states = optimizer.to_record().len() / tensors_per_parameter.max(1);
        if states != expected {
            return Err(record_error(format!(
                "state for {states} parameter tensors, the network has {expected}"
            )));
        }
        Ok(optimizer)
    }
}

/// A [`Net`] of `network` on `device` from the bytes of a burnpack record ([`MODEL_FILE`]
/// or a checkpoint's).
pub fn load_model_record(
    bytes: &[u8],
    network: &TrainNetwork,
    device: &Device,
) -> Result<Net, CheckpointErrorKind> {
    let record_error = |error: burn::store::RecordError| CheckpointErrorKind::Record {
        part: "model",
        message: error.to_string(),
    };
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(record_error)?;
    Net::with_network(network, device, Default::default())
        .try_load_record(record)
        .map_err(record_error)
}

/// The trained model of a run directory or checkpoint file, for export and evaluation.
///
/// `path` may be a checkpoint file, a [`MODEL_FILE`], or a run directory holding either. A
/// checkpoint records its network; a bare [`MODEL_FILE`] is taken as a network of
/// `network` (an [`Architecture`](tinycnn::Architecture) converts into one without batch
/// norms).
pub fn load_trained_model(
    path: &Path,
    network: &TrainNetwork,
    device: &Device,
) -> Result<Net, CheckpointError> {
    load_trained(path, network, device).map(|(net, _)| net)
}

/// [`load_trained_model`], with the run's state when `path` is (or holds) a checkpoint.
pub fn load_trained(
    path: &Path,
    network: &TrainNetwork,
    device: &Device,
) -> Result<(Net, Option<TrainState>), CheckpointError> {
    let path = if path.is_dir() {
        let checkpoint = path.join(CHECKPOINT_FILE);
        if checkpoint.is_file() {
            checkpoint
        } else {
            path.join(MODEL_FILE)
        }
    } else {
        path.to_path_buf()
    };
    let fail = |kind| CheckpointError {
        path: path.clone(),
        kind,
    };
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|file| file.take(MAX_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|error| fail(CheckpointErrorKind::Io(error)))?;
    if bytes.starts_with(MAGIC) {
        Checkpoint::decode(&bytes)
            .and_then(|checkpoint| {
                let net = checkpoint.model(&checkpoint.network()?, device)?;
                Ok((net, Some(checkpoint.state)))
            })
            .map_err(fail)
    } else {
        load_model_record(&bytes, network, device)
            .map(|net| (net, None))
            .map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::adagrad::KerasAdagrad;
    use crate::train::adam::KerasAdam;
    use crate::train::state::TrainSettings;
    use tinycnn::Architecture;

    /// Every f64 the state holds comes back from its JSON exactly: a loss sum one unit in the
    /// last place off makes a resumed run's metrics differ from an uninterrupted run's.
    #[test]
    fn state_json_gives_back_every_f64_exactly() {
        let mut bits = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            // Values like a loss sum: 0.5 to a few thousand.
            let value = f64::from_bits(bits).abs() % 4096.0 + 0.5;
            let value = if value.is_finite() { value } else { 1.0 };
            let json = serde_json::to_vec(&value).unwrap();
            let back: f64 = serde_json::from_slice(&json).unwrap();
            assert_eq!(back.to_bits(), value.to_bits(), "{value:e}");
        }
    }

    fn state() -> TrainState {
        TrainState::new(
            TrainSettings {
                architecture: Architecture::REFERENCE.to_string(),
                epochs: 3,
                batch_size: 128,
                learning_rate: 0.01,
                adagrad_epsilon: 1e-7,
                seed: 1,
                init: Default::default(),
                limit: None,
                test_limit: None,
                fit: Default::default(),
                skip_damaged: false,
                validation_split: None,
                keep: Default::default(),
                augment: Default::default(),
                optimizer: Default::default(),
                schedule: Default::default(),
                weight_decay: 0.0,
                fft_bits: None,
            },
            &crate::data::DataSet::in_memory(
                crate::data::Split {
                    shape: Architecture::REFERENCE.input(),
                    pixels: Vec::new(),
                    labels: Vec::new(),
                    audio: None,
                },
                crate::data::Split {
                    shape: Architecture::REFERENCE.input(),
                    pixels: Vec::new(),
                    labels: Vec::new(),
                    audio: None,
                },
                Vec::new(),
            ),
            "host train".into(),
        )
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            state: state(),
            model: (0..200u8).collect(),
            optimizer: vec![9; 50],
        }
    }

    #[test]
    fn round_trips() {
        let decoded = Checkpoint::decode(&sample().encode()).unwrap();
        assert_eq!(decoded.state, state());
        assert_eq!(decoded.model, sample().model);
        assert_eq!(decoded.optimizer, sample().optimizer);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let bytes = sample().encode();
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(Checkpoint::decode(&damaged).is_err(), "byte {at}");
        }
    }

    #[test]
    fn other_files_are_not_checkpoints() {
        assert!(matches!(
            Checkpoint::decode(b"{\"json\": true}"),
            Err(CheckpointErrorKind::NotACheckpoint)
        ));
        let mut bytes = sample().encode();
        bytes[8] = 1;
        assert!(matches!(
            Checkpoint::decode(&bytes),
            Err(CheckpointErrorKind::Version(1))
        ));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        std::fs::write(&path, &sample().encode()[..100]).unwrap();
        let message = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("damaged"), "{message}");
    }

    #[test]
    fn model_and_optimizer_survive_a_save_and_load() {
        model_and_optimizer_survive_with(|| KerasAdagrad::new(1e-7).init(), 1);
    }

    #[test]
    fn adam_with_weight_decay_survives_a_save_and_load() {
        model_and_optimizer_survive_with(|| KerasAdam::new(0.01).init(), 3);
    }

    #[test]
    fn another_optimizers_state_is_refused() {
        // It draws from burn's generator (initial weights, dropout masks), which the seeded
        // tests beside it must have to themselves.
        let _turn = crate::seeded_turn();
        let device = Device::flex().autodiff();
        let model = Net::new(&Architecture::REFERENCE, &device);
        let mut adagrad = KerasAdagrad::new(1e-7).init();
        let input = crate::train::model::input_tensor(
            vec![0.5; 784],
            Architecture::REFERENCE.input(),
            &device,
        );
        let loss = model.forward(input).sum();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        let model = adagrad.step(0.01, model, grads);
        let checkpoint = Checkpoint::capture(state(), &model, &adagrad).unwrap();
        assert!(matches!(
            checkpoint.optimizer(
                KerasAdam::new(0.0).init(),
                3,
                &Architecture::REFERENCE.into()
            ),
            Err(CheckpointErrorKind::Record { .. })
        ));
    }

    fn model_and_optimizer_survive_with(
        new_optimizer: impl Fn() -> ModuleOptimizer,
        tensors_per_parameter: usize,
    ) {
        use crate::train::model::infer_logits;
        let architecture = Architecture::REFERENCE;
        use burn::optim::GradientsParams;

        let _turn = crate::seeded_turn();
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = Net::new(&architecture, &device);
        let mut optimizer = new_optimizer();
        // One step so that the optimizer has state to save.
        let input =
            crate::train::model::input_tensor(vec![0.5; 2 * 784], architecture.input(), &device);
        let loss = model.forward(input).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optimizer.step(0.01, model, grads);

        let checkpoint = Checkpoint::capture(state(), &model, &optimizer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap();
        let restored = loaded.model(&architecture.into(), &device).unwrap();
        assert_eq!(restored.num_params(), architecture.parameters());
        assert_eq!(restored.weights(), model.weights());
        let pixels: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
        let plain = Device::flex();
        assert_eq!(
            infer_logits(&restored, &pixels, &plain),
            infer_logits(&model, &pixels, &plain)
        );
        // The optimizer state is restored if one more identical step gives identical weights
        // (a fresh Adagrad or Adam would move every weight by about the full learning rate
        // instead).
        let mut restored_optimizer = loaded
            .optimizer(new_optimizer(), tensors_per_parameter, &architecture.into())
            .unwrap();
        let step = |model: Net, optimizer: &mut ModuleOptimizer| {
            // Same dropout masks for every step compared.
            device.seed(11);
            let input = crate::train::model::input_tensor(
                vec![0.25; 2 * 784],
                architecture.input(),
                &device,
            );
            let loss = model.forward(input).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optimizer.step(0.01, model, grads)
        };
        let continued = step(model.clone(), &mut optimizer);
        let resumed = step(restored, &mut restored_optimizer);
        assert_eq!(resumed.weights(), continued.weights());
        let mut fresh_optimizer = new_optimizer();
        let restarted = step(
            loaded.model(&architecture.into(), &device).unwrap(),
            &mut fresh_optimizer,
        );
        assert_ne!(restarted.weights(), continued.weights());
        assert_eq!(
            load_trained_model(dir.path(), &architecture.into(), &plain)
                .unwrap()
                .weights(),
            model.weights()
        );
    }

    /// A batch-normalised network's checkpoint holds the running statistics of its last step
    /// (burn keeps them aside until the next step reads them), and the optimizer's state for
    /// its weights, scales and offsets.
    #[test]
    fn batch_norm_statistics_and_state_survive_a_checkpoint() {
        use burn::optim::GradientsParams;
        let network = crate::train::network::TrainNetwork::parse(
            "input:6x6x2 conv3x3:4:bn dw3x3:s2:bn flatten dense:5:bn dense:3",
            Architecture::REFERENCE.input(),
        )
        .unwrap();
        let _turn = crate::seeded_turn();
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = Net::with_network(&network, &device, Default::default());
        let mut optimizer = KerasAdam::new(0.0).init();
        let values: Vec<f32> = (0..4 * 72).map(|i| (i * 7 % 11) as f32 / 11.0).collect();
        let input =
            crate::train::model::input_tensor(values, network.architecture.input(), &device);
        let loss = model.forward(input).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optimizer.step(0.01, model, grads);
        let checkpoint = Checkpoint::capture(state(), &model, &optimizer).unwrap();
        let restored = checkpoint.model(&network, &device).unwrap();
        let weights = model.weights();
        assert_eq!(restored.weights(), weights);
        // The statistics moved: the folded biases are no longer beta = 0.
        assert!(weights.convs[0].bias.iter().any(|&b| b != 0.0));
        checkpoint
            .optimizer(KerasAdam::new(0.0).init(), 3, &network)
            .unwrap();
        assert!(matches!(
            checkpoint.optimizer(KerasAdam::new(0.0).init(), 3, &network.architecture.into()),
            Err(CheckpointErrorKind::Record { .. })
        ));
    }

    #[test]
    fn an_empty_optimizer_record_is_refused() {
        let device = Device::flex().autodiff();
        let model = Net::new(&Architecture::REFERENCE, &device);
        let fresh = KerasAdagrad::new(1e-7).init();
        let checkpoint = Checkpoint::capture(state(), &model, &fresh).unwrap();
        assert!(matches!(
            checkpoint.optimizer(
                KerasAdagrad::new(1e-7).init(),
                1,
                &Architecture::REFERENCE.into()
            ),
            Err(CheckpointErrorKind::Record { .. })
        ));
    }
}
