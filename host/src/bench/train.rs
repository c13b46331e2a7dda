//! `host bench train`: how long a training step of a network (the tutorial's by default) takes,
//! and where the time goes, operation by operation.
//!
//! For each path measured (the fused convolution blocks `host train` uses, and with
//! `compare_burn` burn's own ops, in the same process one after the other), on the real MNIST
//! training images in the order of a first epoch:
//! 1. warm-up steps, not measured;
//! 2. timed steps, exactly as `host train` runs them (the same epoch loop, batches prepared on
//!    a second thread): wall and CPU time per step, batches per second;
//! 3. as many profiled steps, run through a `StepObserver` that waits for each forward
//!    stage and each other phase to finish and times it (wall and process CPU time), and
//!    splits the backward pass by stage with `probe` ops (see [`crate::train::fastconv::ext`]), whose
//!    backward records when the gradient reached the stage's input.
//!
//! Both paths start from the same weights and see the same batches; the Adagrad steps are the
//! same code. The profiled step is slightly slower than the timed one (it cannot overlap
//! operations, and the probes add graph nodes); the table shows both totals.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::ensure;
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::bench::usage;
use crate::data::DataSet;
use crate::train::adagrad::KerasAdagrad;
use crate::train::fastconv::ext::{self, PROBE_STAMPS, ProbeStamp};
use crate::train::model::{ConvBlocks, InitScheme, Net, Values};
use crate::train::progress::QuietReporter;
use crate::train::{self, DEFAULT_ADAGRAD_EPSILON, EpochContext, StepContext, StepObserver};

/// Steps timed (and as many profiled) per path by default.
pub const DEFAULT_BATCHES: usize = 20;
/// Steps run before timing by default: the first steps allocate and fault in memory.
pub const DEFAULT_WARMUP: usize = 3;

/// What `host bench train` measures.
#[derive(Clone, Debug)]
pub struct TrainBenchOptions {
    /// The network (batch norms included: `:bn`).
    pub network: crate::train::network::TrainNetwork,
    /// Steps timed, and again profiled, per path.
    pub batches: usize,
    /// Steps run first, unmeasured.
    pub warmup: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adagrad learning rate.
    pub learning_rate: f64,
    /// Seed of the initial weights, the batch order and the dropout masks.
    pub seed: u64,
    /// Initialisation of the weights.
    pub init: InitScheme,
    /// Also measure burn's own ops.
    pub compare_burn: bool,
}

/// Which part of a training step an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    /// A stage of the forward pass.
    Forward,
    /// The backward pass of a forward stage.
    Backward,
    /// Anything else in the step: uploading the batch, reading the loss, the optimizer.
    Step,
}

/// One row of the profile: an operation's mean time per step.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileRow {
    /// Operation (stage or phase) name.
    pub operation: String,
    /// Part of the step.
    pub pass: Pass,
    /// Mean wall time per step, in milliseconds.
    pub ms: f64,
    /// Fraction of the profiled step's wall time.
    pub share: f64,
    /// Mean CPU time per step across all threads, in milliseconds, where reported.
    pub cpu_ms: Option<f64>,
}

impl ProfileRow {
    /// Cores busy on average during the operation (CPU time over wall time).
    pub fn cores(&self) -> Option<f64> {
        cores_busy(self.cpu_ms, self.ms)
    }
}

/// Cores busy on average: CPU time over wall time (both in milliseconds), where CPU time is
/// reported.
fn cores_busy(cpu_ms: Option<f64>, wall_ms: f64) -> Option<f64> {
    cpu_ms.map(|cpu| cpu / wall_ms.max(1e-9))
}

/// The measurements of one path.
#[derive(Clone, Debug, Serialize)]
pub struct PathReport {
    /// "fused" or "burn-ops".
    pub path: &'static str,
    /// What the path is.
    pub description: &'static str,
    /// Timed steps.
    pub steps: usize,
    /// Mean wall time of a timed step, in milliseconds.
    pub step_ms: f64,
    /// Mean CPU time of a timed step (all threads), in milliseconds, where reported.
    pub step_cpu_ms: Option<f64>,
    /// Timed steps per second.
    pub batches_per_second: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Mean time of a profiled step, in milliseconds (the sum of the rows).
    pub profiled_step_ms: f64,
    /// Mean time to gather and normalise a batch, in milliseconds: done on a second thread
    /// while the previous step trains, so not part of the step.
    pub batch_assembly_ms: f64,
    /// The profile, in the order the step runs the operations.
    pub profile: Vec<ProfileRow>,
}

impl PathReport {
    /// Cores busy on average during the timed steps.
    pub fn cores(&self) -> Option<f64> {
        cores_busy(self.step_cpu_ms, self.step_ms)
    }
}

/// Everything `host bench train` measured.
#[derive(Clone, Debug, Serialize)]
pub struct TrainBenchReport {
    /// Images per step.
    pub batch_size: usize,
    /// Threads of the pool the kernels and burn run on.
    pub threads: usize,
    /// Load averages (1, 5, 15 minutes) before the first path and after the last.
    pub load_before: Option<[f64; 3]>,
    /// See `load_before`.
    pub load_after: Option<[f64; 3]>,
    /// One report per path, fused first.
    pub paths: Vec<PathReport>,
    /// Step time of burn's ops over that of the fused blocks, when both were measured.
    pub burn_over_fused: Option<f64>,
    /// Peak resident memory of the process, in MB.
    pub peak_rss_mb: Option<f64>,
}

/// Runs the benchmark on the training images of `data`; `progress` hears what is running.
pub fn run_train_bench(
    options: &TrainBenchOptions,
    data: &DataSet,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<TrainBenchReport> {
    ensure!(options.batches >= 1, "--batches must be at least 1");
    ensure!(options.batch_size >= 1, "--batch-size must be at least 1");
    ensure!(
        data.train.len() >= options.batch_size,
        "the training set has {} images, fewer than a batch of {}",
        data.train.len(),
        options.batch_size
    );
    let load_before = usage::load_average();
    let mut paths = vec![bench_path(options, data, ConvBlocks::Fused, progress)];
    if options.compare_burn {
        paths.push(bench_path(options, data, ConvBlocks::BurnOps, progress));
    }
    let burn_over_fused = match paths.as_slice() {
        [fused, burn] => Some(burn.step_ms / fused.step_ms),
        _ => None,
    };
    Ok(TrainBenchReport {
        batch_size: options.batch_size,
        threads: rayon::current_num_threads(),
        load_before,
        load_after: usage::load_average(),
        paths,
        burn_over_fused,
        peak_rss_mb: usage::peak_rss_bytes().map(|bytes| bytes as f64 / 1e6),
    })
}

fn path_name(blocks: ConvBlocks) -> (&'static str, &'static str) {
    match blocks {
        ConvBlocks::Fused => (
            "fused",
            "fused conv+ReLU+pool+dropout op per block (what host train runs)",
        ),
        ConvBlocks::BurnOps => (
            "burn-ops",
            "burn's own conv2d, relu, max_pool2d and dropout ops",
        ),
    }
}

fn bench_path(
    options: &TrainBenchOptions,
    data: &DataSet,
    blocks: ConvBlocks,
    progress: &mut dyn FnMut(&str),
) -> PathReport {
    let (path, description) = path_name(blocks);
    let device = Device::flex().autodiff();
    device.seed(options.seed);
    let mut model = Net::with_network(&options.network, &device, options.init);
    let mut optimizer = KerasAdagrad::new(DEFAULT_ADAGRAD_EPSILON).init();
    let loss_fn = CrossEntropyLoss::new(None, &device);
    let step = || StepContext {
        learning_rate: options.learning_rate,
        device: &device,
        loss_fn: &loss_fn,
        blocks,
    };
    // Batches in the order of a first epoch, wrapping around a small training set.
    let epoch_order = train::epoch_order(options.seed, 1, data.train.len());
    let images = |batches: usize, skip: usize| -> Vec<usize> {
        let start = skip * options.batch_size;
        (start..start + batches * options.batch_size)
            .map(|i| epoch_order[i % epoch_order.len()])
            .collect()
    };
    let never_stop = AtomicBool::new(false);
    let run_steps = |model: Net, optimizer: &mut ModuleOptimizer, order: &[usize]| {
        let context = EpochContext {
            data: &data.train,
            order,
            batch_size: options.batch_size,
            step: step(),
            stop: &never_stop,
            pause_at: None,
            augment: None,
            noise: None,
            schedule: train::schedule::Schedule::Constant,
            place: train::schedule::StepPlace {
                epoch: 1,
                batch: 0,
                batches_per_epoch: 1,
                epochs: 1,
            },
        };
        let mut stats = train::EpochStats::default();
        let (model, _) =
            train::train_epoch(&context, model, optimizer, &mut stats, &mut QuietReporter);
        (model, stats)
    };

    progress(&format!("{path}: {} warm-up steps", options.warmup));
    if options.warmup > 0 {
        model = run_steps(model, &mut optimizer, &images(options.warmup, 0)).0;
    }

    progress(&format!("{path}: {} timed steps", options.batches));
    let cpu_before = usage::process_cpu_time();
    let (trained, stats) = run_steps(
        model,
        &mut optimizer,
        &images(options.batches, options.warmup),
    );
    model = trained;
    let cpu = usage::process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let steps = stats.batches as f64;

    progress(&format!("{path}: {} profiled steps", options.batches));
    let order = images(options.batches, options.warmup + options.batches);
    let mut profiler = Profiler::new(&device);
    let mut assembly = Duration::ZERO;
    for indices in order.chunks(options.batch_size) {
        let started = Instant::now();
        let batch = train::assemble(&data.train, indices);
        assembly += started.elapsed();
        profiler.start_step();
        model = train::train_step(&step(), model, &mut optimizer, batch, &mut profiler).0;
    }
    let profile = profiler.rows();
    PathReport {
        path,
        description,
        steps: stats.batches,
        step_ms: stats.seconds * 1e3 / steps,
        step_cpu_ms: cpu.map(|cpu| cpu.as_secs_f64() * 1e3 / steps),
        batches_per_second: steps / stats.seconds,
        images_per_second: stats.images as f64 / stats.seconds,
        profiled_step_ms: profile.iter().map(|row| row.ms).sum(),
        batch_assembly_ms: assembly.as_secs_f64() * 1e3 / options.batches as f64,
        profile,
    }
}

/// Wall and CPU time accumulated by one operation over the profiled steps.
#[derive(Clone, Debug)]
struct Totals {
    operation: String,
    pass: Pass,
    wall: Duration,
    cpu: Option<Duration>,
}

/// A [`StepObserver`] that times every stage and phase of a step, synchronising the device
/// after each, and splits the backward pass by forward stage through `probe` stamps.
struct Profiler {
    device: Device,
    /// Forward stages of the current step, in order; a stage's index is its probe id.
    stages: Vec<String>,
    /// Rows in the order of the current step.
    step_rows: Vec<Totals>,
    /// Sums over all steps, by row position (every step runs the same operations).
    totals: Vec<Totals>,
    steps: u32,
}

/// Wall clock and process CPU time at one moment.
#[derive(Clone, Copy)]
struct Moment {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Moment {
    fn now() -> Self {
        Self {
            wall: Instant::now(),
            cpu: usage::process_cpu_time(),
        }
    }

    fn of(stamp: &ProbeStamp) -> Self {
        Self {
            wall: stamp.wall,
            cpu: stamp.cpu,
        }
    }

    /// Wall and CPU time from `self` to `later` (zero if `later` is earlier).
    fn until(self, later: Moment) -> (Duration, Option<Duration>) {
        let cpu = later
            .cpu
            .zip(self.cpu)
            .map(|(end, start)| end.saturating_sub(start));
        (later.wall.saturating_duration_since(self.wall), cpu)
    }
}

impl Profiler {
    fn new(device: &Device) -> Self {
        // Stamps left by an earlier backward pass without a profiler would be misattributed.
        take_probe_stamps();
        Self {
            device: device.clone(),
            stages: Vec::new(),
            step_rows: Vec::new(),
            totals: Vec::new(),
            steps: 0,
        }
    }

    fn start_step(&mut self) {
        self.finish_step();
        self.stages.clear();
    }

    /// Adds the current step's rows to the totals.
    fn finish_step(&mut self) {
        if self.step_rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.step_rows);
        if self.totals.is_empty() {
            self.totals = rows;
        } else {
            assert_eq!(
                rows.len(),
                self.totals.len(),
                "every profiled step runs the same operations"
            );
            for (total, row) in self.totals.iter_mut().zip(rows) {
                total.wall += row.wall;
                total.cpu = total.cpu.zip(row.cpu).map(|(a, b)| a + b);
            }
        }
        self.steps += 1;
    }

    fn record(&mut self, operation: String, pass: Pass, from: Moment, to: Moment) {
        let (wall, cpu) = from.until(to);
        self.step_rows.push(Totals {
            operation,
            pass,
            wall,
            cpu,
        });
    }

    fn wait(&self) {
        // A CPU backend that could not finish its work has nothing to time either.
        self.device
            .sync()
            .unwrap_or_else(|error| panic!("the device failed while profiling: {error:?}"));
    }

    /// Splits a backward pass that ran from `start` to `end` by forward stage: the stage with
    /// probe id `i` ran backward from the stamp of stage `i + 1` (or `start`, for the last
    /// stage) to its own stamp. A stage whose input needs no gradient (the first) has no stamp:
    /// its backward runs until `end`.
    fn record_backward(&mut self, start: Moment, end: Moment, stamps: &[ProbeStamp]) {
        let mut reached: Vec<Option<Moment>> = vec![None; self.stages.len()];
        for stamp in stamps {
            if let Some(slot) = reached.get_mut(stamp.id) {
                *slot = Some(Moment::of(stamp));
            }
        }
        for id in (0..self.stages.len()).rev() {
            let from = reached.get(id + 1).copied().flatten().unwrap_or(start);
            let to = reached[id].unwrap_or(end);
            self.record(self.stages[id].clone(), Pass::Backward, from, to);
        }
    }

    /// The mean of each row over the steps, with its share of the step.
    fn rows(mut self) -> Vec<ProfileRow> {
        self.finish_step();
        let steps = f64::from(self.steps.max(1));
        let step_total: f64 = self.totals.iter().map(|t| t.wall.as_secs_f64()).sum();
        self.totals
            .iter()
            .map(|total| ProfileRow {
                operation: total.operation.clone(),
                pass: total.pass,
                ms: total.wall.as_secs_f64() * 1e3 / steps,
                share: total.wall.as_secs_f64() / step_total.max(1e-12),
                cpu_ms: total.cpu.map(|cpu| cpu.as_secs_f64() * 1e3 / steps),
            })
            .collect()
    }
}

fn take_probe_stamps() -> Vec<ProbeStamp> {
    std::mem::take(
        &mut *PROBE_STAMPS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

impl Profiler {
    /// Inserts the probe of the next forward stage, named `name`, into the graph at `x`.
    fn enter_stage(&mut self, name: &str, x: Values) -> Values {
        let id = self.stages.len();
        self.stages.push(name.to_string());
        match x {
            Values::Map(map) => Values::Map(ext::probe(map, id)),
            Values::Vector(vector) => Values::Vector(ext::probe(vector, id)),
            // Inside a residual block the main line carries the probe; the shortcut's
            // backward time falls to the stage that made it.
            Values::Block { main, shortcut } => Values::Block {
                main: ext::probe(main, id),
                shortcut,
            },
        }
    }
}

impl StepObserver for Profiler {
    fn forward(&mut self, model: &Net, images: Tensor<4>, blocks: ConvBlocks) -> Tensor<2> {
        let mut x = Values::Map(images);
        for stage in model.stages(blocks) {
            let probed = self.enter_stage(&stage.name, x);
            let start = Moment::now();
            x = model.run_stage(&stage, probed);
            self.wait();
            self.record(stage.name, Pass::Forward, start, Moment::now());
        }
        x.into_vector()
    }

    fn forward_phase<const A: usize, const B: usize>(
        &mut self,
        name: &'static str,
        x: Tensor<A>,
        phase: impl FnOnce(Tensor<A>) -> Tensor<B>,
    ) -> Tensor<B> {
        let x = ext::probe(x, self.stages.len());
        self.stages.push(name.to_string());
        let start = Moment::now();
        let y = phase(x);
        self.wait();
        self.record(name.to_string(), Pass::Forward, start, Moment::now());
        y
    }

    fn phase<T>(&mut self, name: &'static str, run: impl FnOnce() -> T) -> T {
        let start = Moment::now();
        let result = run();
        self.wait();
        let end = Moment::now();
        // Probes fire only in a backward pass: a phase that collected stamps was one.
        let stamps = take_probe_stamps();
        if stamps.is_empty() {
            self.record(name.to_string(), Pass::Step, start, end);
        } else {
            self.record_backward(start, end, &stamps);
        }
        result
    }
}

impl TrainBenchReport {
    /// The report as text: per path a summary and the profile table, then the ratio.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let load = usage::load_average_text;
        text.push_str(&format!(
            "training steps of {} images on burn's Flex backend, {} threads; load average before {}\n",
            self.batch_size,
            self.threads,
            load(self.load_before)
        ));
        for path in &self.paths {
            text.push('\n');
            text.push_str(&path.to_text());
        }
        text.push('\n');
        if let Some(ratio) = self.burn_over_fused {
            text.push_str(&format!(
                "burn's ops take {ratio:.2}x the time of the fused blocks per step\n"
            ));
        }
        text.push_str(&format!(
            "load average after {}; peak memory {}\n",
            load(self.load_after),
            self.peak_rss_mb
                .map_or_else(|| "unknown".to_string(), |mb| format!("{mb:.0} MB"))
        ));
        text
    }
}

impl PathReport {
    fn to_text(&self) -> String {
        let mut text = format!("{} ({}):\n", self.path, self.description);
        text.push_str(&format!(
            "  {} timed steps: {:.1} ms per step, {} cores busy, {:.2} batches/s, {:.0} images/s\n",
            self.steps,
            self.step_ms,
            usage::cores_text(self.cores()),
            self.batches_per_second,
            self.images_per_second
        ));
        text.push_str(&format!(
            "  profile of {} steps, each operation waited for (step {:.1} ms):\n",
            self.steps, self.profiled_step_ms
        ));
        text.push_str(&format!(
            "  {:<28} {:<9} {:>9} {:>7} {:>6}\n",
            "operation", "pass", "ms/step", "share", "cores"
        ));
        for row in &self.profile {
            let pass = match row.pass {
                Pass::Forward => "forward",
                Pass::Backward => "backward",
                Pass::Step => "step",
            };
            text.push_str(&format!(
                "  {:<28} {:<9} {:>9.2} {:>6.1}% {:>6}\n",
                row.operation,
                pass,
                row.ms,
                row.share * 100.0,
                usage::cores_text(row.cores())
            ));
        }
        let cpu: Option<f64> = self.profile.iter().map(|row| row.cpu_ms).sum();
        text.push_str(&format!(
            "  {:<28} {:<9} {:>9.2} {:>6.1}% {:>6}\n",
            "total",
            "",
            self.profiled_step_ms,
            100.0,
            usage::cores_text(cores_busy(cpu, self.profiled_step_ms))
        ));
        text.push_str(&format!(
            "  batch assembly (gather + normalise, on the prefetch thread, not in the step): {:.2} ms\n",
            self.batch_assembly_ms
        ));
        text
    }
}
