//! `host bench infer --model`: how fast any int8 model (the MLPerf Tiny networks of
//! `data/mlperf/`, say) runs on the desktop, one input at a time on one thread, with the
//! kernels built for this processor and with the portable ones, on random int8 inputs; and,
//! given the same network as a `.tflite`, TensorFlow Lite's interpreter on the same inputs,
//! rounds of the two alternating in one run so that both see the same machine.
//!
//! TensorFlow Lite runs in a Python process (`scripts/tflite-reference.py --model M.tflite
//! --serve`) that times one round of `invoke` calls each time it is asked; between its rounds
//! the core times its own. Inputs are splitmix64 bytes of one seed (the stream of
//! `data/mlperf/README.md`), which the script computes too. Speed is reported per image from
//! the median time of a call (a shared machine slows a few calls a lot, which a mean would
//! carry), with the mean beside it.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use tinycnn::Int8Model;
use tinycnn::kernels::Int8Kernels;
use tinycnn::kernels::int8::Backend;
use tinycnn::plan::{Operation, Step};

use crate::bench::usage;
use crate::deploy::fixture::{RANDOM_SEED, splitmix_bytes};
use crate::deploy::kernels::{FastInt8, Isa};

/// Inputs per round by default.
pub const DEFAULT_IMAGES: usize = 200;
/// Rounds per path by default.
pub const DEFAULT_ROUNDS: usize = 5;
/// The script that times TensorFlow Lite, relative to the repository.
pub const TFLITE_SCRIPT: &str = "scripts/tflite-reference.py";

/// What `host bench infer --model` does.
#[derive(Clone, Debug)]
pub struct ModelBenchOptions {
    /// Inputs per round.
    pub images: usize,
    /// Rounds of the fast kernels (and of TensorFlow Lite, alternating).
    pub rounds: usize,
    /// Calls before timing, per path.
    pub warmup: usize,
    /// Seed of the inputs' splitmix64 stream.
    pub seed: u64,
    /// Also time the portable kernels (one round).
    pub portable: bool,
    /// Time each step of the fast kernels' inference too.
    pub layers: bool,
    /// TensorFlow Lite's peer: the `.tflite` of the same network and the Python to run it in.
    pub tflite: Option<TflitePeer>,
    /// The instruction set of the fast kernels, if not the best this processor runs.
    pub isa: Option<Isa>,
}

impl Default for ModelBenchOptions {
    fn default() -> Self {
        ModelBenchOptions {
            images: DEFAULT_IMAGES,
            rounds: DEFAULT_ROUNDS,
            warmup: 10,
            seed: RANDOM_SEED,
            portable: true,
            layers: false,
            tflite: None,
            isa: None,
        }
    }
}

/// How to run TensorFlow Lite.
#[derive(Clone, Debug)]
pub struct TflitePeer {
    /// The `.tflite` file.
    pub model: PathBuf,
    /// A Python with `ai-edge-litert` (or TensorFlow).
    pub python: PathBuf,
    /// `scripts/tflite-reference.py`.
    pub script: PathBuf,
}

/// One path's figures over all its rounds.
#[derive(Clone, Debug, Serialize)]
pub struct ModelPathTiming {
    /// What was timed.
    pub path: String,
    /// Calls timed.
    pub calls: usize,
    /// Median microseconds per call.
    pub median_us: f64,
    /// Mean microseconds per call.
    pub mean_us: f64,
    /// Images per second from the median call: `1e6 / median_us`.
    pub images_per_second: f64,
    /// Images per second of each round, from its median call.
    pub images_per_second_per_round: Vec<f64>,
}

/// One step's time with the fast kernels.
#[derive(Clone, Debug, Serialize)]
pub struct StepTiming {
    /// The layer and what ran.
    pub step: String,
    /// Which kernels ran it.
    pub kernels: String,
    /// Median microseconds.
    pub median_us: f64,
}

/// What `host bench infer --model` measured.
#[derive(Clone, Debug, Serialize)]
pub struct ModelBenchReport {
    /// The network, in the text form.
    pub network: String,
    /// Multiply-accumulates per inference.
    pub macs: usize,
    /// The fast kernels' instruction set.
    pub fast_kernels: &'static str,
    /// The paths: fast kernels, then TensorFlow Lite and the portable kernels if timed.
    pub paths: Vec<ModelPathTiming>,
    /// TensorFlow Lite's runtime and version, if timed.
    pub tflite_runtime: Option<String>,
    /// Inputs whose outputs from the fast and portable kernels are identical, of those
    /// compared (`None` without the portable path).
    pub fast_outputs_identical: Option<(usize, usize)>,
    /// Each step with the fast kernels, if asked for.
    pub steps: Vec<StepTiming>,
    /// Load average before.
    pub load_before: Option<[f64; 3]>,
    /// Load average after.
    pub load_after: Option<[f64; 3]>,
}

/// Microseconds since `start`.
fn us_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e6
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// The figures of a path timed in `rounds`, each a list of microseconds per call.
fn timing(path: String, rounds: &[Vec<f64>]) -> ModelPathTiming {
    let every: Vec<f64> = rounds.iter().flatten().copied().collect();
    let median_us = median(&every);
    ModelPathTiming {
        path,
        calls: every.len(),
        median_us,
        mean_us: every.iter().sum::<f64>() / every.len().max(1) as f64,
        images_per_second: 1e6 / median_us.max(1e-9),
        images_per_second_per_round: rounds
            .iter()
            .map(|round| 1e6 / median(round).max(1e-9))
            .collect(),
    }
}

/// TensorFlow Lite's timing process.
struct TfliteServer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    runtime: String,
}

#[derive(serde::Deserialize)]
struct Ready {
    runtime: String,
    input_values: usize,
}

#[derive(serde::Deserialize)]
struct Round {
    us: Vec<f64>,
}

impl TfliteServer {
    fn start(
        peer: &TflitePeer,
        images: usize,
        seed: u64,
        input_values: usize,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(&peer.python)
            .arg(&peer.script)
            .arg("--model")
            .arg(&peer.model)
            .args([
                "--serve",
                "--images",
                &images.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .env("TF_CPP_MIN_LOG_LEVEL", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} {}: name a Python with ai-edge-litert with --tflite-python \
                     or TINYCNN_TFLITE_PYTHON",
                    peer.python.display(),
                    peer.script.display()
                )
            })?;
        let input = child.stdin.take().context("the peer's standard input")?;
        let output = BufReader::new(child.stdout.take().context("the peer's standard output")?);
        let mut server = TfliteServer {
            child,
            input,
            output,
            runtime: String::new(),
        };
        let ready: Ready = server.read_line().with_context(|| {
            format!(
                "{} did not start: run `{} {} --model {}` to see why",
                peer.script.display(),
                peer.python.display(),
                peer.script.display(),
                peer.model.display()
            )
        })?;
        ensure!(
            ready.input_values == input_values,
            "{} takes {} input values, the model {input_values}: not the same network",
            peer.model.display(),
            ready.input_values
        );
        server.runtime = ready.runtime;
        Ok(server)
    }

    fn read_line<T: serde::de::DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            bail!("TensorFlow Lite's process ended");
        }
        serde_json::from_str(&line).with_context(|| format!("not a JSON line: {line:?}"))
    }

    /// One round: the microseconds of each call.
    fn round(&mut self) -> anyhow::Result<Vec<f64>> {
        writeln!(self.input, "time")?;
        self.input.flush()?;
        Ok(self.read_line::<Round>()?.us)
    }
}

impl Drop for TfliteServer {
    fn drop(&mut self) {
        // Closing its input ends it.
        let _ = self.input.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A short description of a step: its layer and operation.
fn step_name(step: &Step) -> String {
    let what = match step.operation {
        Operation::Conv { pooled: true, .. } => "conv+pool",
        Operation::Conv { .. } => "conv",
        Operation::WindowConv { .. } => "window conv",
        Operation::Depthwise { .. } => "depthwise",
        Operation::Pool => "pool",
        Operation::WindowPool { .. } => "window pool",
        Operation::GlobalAveragePool => "global avg pool",
        Operation::Dense => "dense",
        Operation::Shortcut { .. } => "shortcut",
        Operation::Add { .. } => "add",
        Operation::Softmax => "softmax",
    };
    format!(
        "{} {what} {} -> {}",
        step.layer.name, step.input, step.output
    )
}

/// Times `model_file` as [`ModelBenchOptions`] says.
pub fn run_model_bench(
    model_file: &[u8],
    options: &ModelBenchOptions,
) -> anyhow::Result<ModelBenchReport> {
    let model = Int8Model::from_bytes(model_file).context("reading the int8 model")?;
    ensure!(
        options.images >= 1 && options.rounds >= 1,
        "no inputs to time"
    );
    let input_len = model.input_shape().values();
    let values: Vec<i8> = splitmix_bytes(options.seed, options.images * input_len)
        .into_iter()
        .map(|byte| byte as i8)
        .collect();
    let inputs: Vec<&[i8]> = values.chunks_exact(input_len).collect();
    let load_before = usage::load_average();
    let mut scratch = vec![0i8; model.scratch_bytes_with_kernels()];
    let isa = options.isa.unwrap_or_else(Isa::detect);
    ensure!(
        isa.runs_here(),
        "this processor does not run the {} kernels",
        isa.name()
    );
    let mut fast = FastInt8::for_model_with_isa(model.record_bytes(), isa);
    let fast_kernels = Int8Kernels::name(&fast);

    let mut tflite = match &options.tflite {
        Some(peer) => Some(TfliteServer::start(
            peer,
            options.images,
            options.seed,
            input_len,
        )?),
        None => None,
    };

    let mut fast_outputs = Vec::with_capacity(inputs.len());
    let mut fast_call = |input: &[i8],
                         keep: bool,
                         outputs: &mut Vec<Vec<i8>>|
     -> anyhow::Result<f64> {
        let start = Instant::now();
        let prediction =
            model.run_quantized_with_kernels(&mut fast, black_box(input), &mut scratch, |_| {})?;
        let us = us_since(start);
        if keep {
            outputs.push(prediction.logits.to_vec());
        }
        Ok(us)
    };
    for input in inputs.iter().cycle().take(options.warmup) {
        fast_call(input, false, &mut fast_outputs)?;
    }
    let (mut fast_rounds, mut tflite_rounds) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let mut times = Vec::with_capacity(inputs.len());
        for input in &inputs {
            times.push(fast_call(input, round == 0, &mut fast_outputs)?);
        }
        fast_rounds.push(times);
        if let Some(server) = &mut tflite {
            tflite_rounds.push(server.round()?);
        }
    }
    let tflite_runtime = tflite.as_ref().map(|server| server.runtime.clone());
    drop(tflite);

    let mut paths = vec![timing(
        format!("tinycnn int8 (core, {fast_kernels})"),
        &fast_rounds,
    )];
    if let Some(runtime) = &tflite_runtime {
        paths.push(timing(
            format!("TensorFlow Lite ({runtime}, default kernels)"),
            &tflite_rounds,
        ));
    }

    let mut fast_outputs_identical = None;
    if options.portable {
        let mut times = Vec::with_capacity(inputs.len());
        let mut identical = 0;
        for input in inputs.iter().cycle().take(options.warmup.min(2)) {
            model.run_quantized(Backend::Portable, input, &mut scratch, |_| {})?;
        }
        for (input, fast) in inputs.iter().zip(&fast_outputs) {
            let start = Instant::now();
            let prediction =
                model.run_quantized(Backend::Portable, black_box(input), &mut scratch, |_| {})?;
            times.push(us_since(start));
            identical += usize::from(prediction.logits == fast.as_slice());
        }
        paths.push(timing("tinycnn int8 (core, portable)".into(), &[times]));
        fast_outputs_identical = Some((identical, inputs.len()));
    }

    let mut steps = Vec::new();
    if options.layers {
        let mut each: Vec<(String, String, Vec<f64>)> = Vec::new();
        for input in &inputs {
            let mut last = Instant::now();
            let mut index = 0;
            model.run_quantized_with_kernels(&mut fast, input, &mut scratch, |observation| {
                let us = us_since(last);
                if each.len() <= index {
                    each.push((
                        step_name(observation.step),
                        observation.kernels.name().into(),
                        Vec::new(),
                    ));
                }
                each[index].2.push(us);
                index += 1;
                last = Instant::now();
            })?;
        }
        steps = each
            .into_iter()
            .map(|(step, kernels, times)| StepTiming {
                step,
                kernels,
                median_us: median(&times),
            })
            .collect();
    }

    Ok(ModelBenchReport {
        network: model.architecture().to_string(),
        macs: model.architecture().macs(),
        fast_kernels,
        paths,
        tflite_runtime,
        fast_outputs_identical,
        steps,
        load_before,
        load_after: usage::load_average(),
    })
}

impl ModelBenchReport {
    /// The report as a table.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{} MACs per inference; load average before {}\n",
            self.network,
            self.macs,
            usage::load_average_text(self.load_before)
        );
        text.push_str(&format!(
            "{:<58} {:>7} {:>11} {:>9} {:>9}  {}\n",
            "path (one thread, one input per call)",
            "calls",
            "median us",
            "mean us",
            "img/s",
            "img/s per round"
        ));
        for path in &self.paths {
            let rounds: Vec<String> = path
                .images_per_second_per_round
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect();
            text.push_str(&format!(
                "{:<58} {:>7} {:>11.1} {:>9.1} {:>9.0}  {}\n",
                path.path,
                path.calls,
                path.median_us,
                path.mean_us,
                path.images_per_second,
                rounds.join(" ")
            ));
        }
        if let [fast, second, ..] = &self.paths[..]
            && self.tflite_runtime.is_some()
        {
            text.push_str(&format!(
                "core ({}) / TensorFlow Lite, images per second: {:.2}x (above 1: the core is \
                 faster)\n",
                self.fast_kernels,
                fast.images_per_second / second.images_per_second
            ));
        }
        if let Some((identical, compared)) = self.fast_outputs_identical {
            text.push_str(&format!(
                "outputs of the {} and portable kernels identical for {identical}/{compared} \
                 inputs\n",
                self.fast_kernels
            ));
        }
        if !self.steps.is_empty() {
            text.push_str(&format!(
                "{:<56} {:>10} {:>9}\n",
                "step", "kernels", "median us"
            ));
            for step in &self.steps {
                text.push_str(&format!(
                    "{:<56} {:>10} {:>9.1}\n",
                    step.step, step.kernels, step.median_us
                ));
            }
        }
        text.push_str(&format!(
            "load average after {}\n",
            usage::load_average_text(self.load_after)
        ));
        text
    }
}

/// The Python that runs TensorFlow Lite: `explicit`, else `TINYCNN_TFLITE_PYTHON`, else
/// `python3`.
pub fn tflite_python(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("TINYCNN_TFLITE_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlperf(name: &str) -> Vec<u8> {
        let path = format!("{}/../data/mlperf/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_fast_and_portable_kernels_agree_on_every_input() {
        let options = ModelBenchOptions {
            images: 3,
            rounds: 2,
            warmup: 1,
            layers: true,
            ..ModelBenchOptions::default()
        };
        let report = run_model_bench(&mlperf("kws.tcnn"), &options).unwrap();
        assert_eq!(report.fast_outputs_identical, Some((3, 3)));
        assert_eq!(report.paths.len(), 2);
        assert_eq!(report.paths[0].calls, 6);
        assert_eq!(report.paths[0].images_per_second_per_round.len(), 2);
        assert_eq!(report.steps.len(), 12, "{:?}", report.steps);
        assert!(report.to_text().contains("depthwise"));
    }

    /// TensorFlow Lite's peer, where a Python with ai-edge-litert is configured.
    #[test]
    fn tensorflow_lite_times_the_same_inputs_in_turn() {
        let Some(python) = std::env::var_os("TINYCNN_TFLITE_PYTHON") else {
            eprintln!("skipped: TINYCNN_TFLITE_PYTHON is not set");
            return;
        };
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let options = ModelBenchOptions {
            images: 4,
            rounds: 2,
            warmup: 1,
            portable: false,
            tflite: Some(TflitePeer {
                model: root.join("data/mlperf/autoencoder.tflite"),
                python: PathBuf::from(python),
                script: root.join(TFLITE_SCRIPT),
            }),
            ..ModelBenchOptions::default()
        };
        let report = run_model_bench(&mlperf("autoencoder.tcnn"), &options).unwrap();
        assert_eq!(report.paths.len(), 2);
        assert_eq!(report.paths[1].calls, 8);
        assert!(report.paths[1].median_us > 0.0);
        assert!(report.tflite_runtime.is_some());
        // The wrong network is refused.
        let wrong = ModelBenchOptions {
            tflite: options.tflite.clone().map(|peer| TflitePeer {
                model: root.join("data/mlperf/kws.tflite"),
                ..peer
            }),
            ..options.clone()
        };
        assert!(run_model_bench(&mlperf("autoencoder.tcnn"), &wrong).is_err());
    }
}
