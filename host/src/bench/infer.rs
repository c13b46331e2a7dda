//! `host bench infer`: how fast one image is classified on the desktop, by the `tinycnn` core
//! (what a device runs) and by burn (what training runs), on the same test images.
//!
//! The core is timed on one thread, image by image, because that is how a microcontroller runs
//! it and how a regression in a kernel shows most clearly. burn is timed twice: one image per
//! call (its latency, with whatever threads its backend uses) and the whole set as one batch
//! (its throughput, where its parallel kernels pay off). Every path classifies the same images;
//! the report also counts how often the core's f32 class equals burn's, so a benchmark that
//! measures a broken path cannot go unnoticed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use burn::tensor::Device;
use serde::Serialize;
use tinycnn::kernels::Int8Kernels;
use tinycnn::{F32Model, Int8Model};

use crate::bench::usage;
use crate::deploy::kernels::{FastF32, FastInt8};
use crate::export::burn_weights;
use crate::train::model::{Net, infer_logits};

/// Test images classified per path by default.
pub const DEFAULT_IMAGES: usize = 200;
/// Images classified before timing, by default: the first calls fault in memory and caches.
pub const DEFAULT_WARMUP: usize = 10;

/// Latency figures of one path.
#[derive(Clone, Debug, Serialize)]
pub struct PathTiming {
    /// What was timed.
    pub path: String,
    /// Threads the path may use (burn's backend decides for itself; see the report).
    pub threads: String,
    /// Images classified in the timed part.
    pub images: usize,
    /// Mean milliseconds per image.
    pub mean_ms: f64,
    /// Median milliseconds per image (`None` when timed as one batch).
    pub median_ms: Option<f64>,
    /// 99th percentile of milliseconds per image (`None` when timed as one batch).
    pub p99_ms: Option<f64>,
    /// Images per second: `images / total wall time`.
    pub images_per_second: f64,
    /// Process CPU time over wall time while timing: cores kept busy.
    pub cores_busy: Option<f64>,
}

/// What `host bench infer` measured.
#[derive(Clone, Debug, Serialize)]
pub struct InferBenchReport {
    /// One entry per path, core first.
    pub paths: Vec<PathTiming>,
    /// Images whose core f32 class equals burn's.
    pub f32_classes_agreeing_with_burn: usize,
    /// Images whose core int8 class equals the core f32 one.
    pub int8_classes_agreeing_with_f32: usize,
    /// The instruction set of the core's fast kernels (`avx2`, `sse2`, `neon`).
    pub fast_kernels: &'static str,
    /// Images whose int8 logits from the fast kernels equal the portable kernels' exactly.
    pub int8_fast_logits_identical: usize,
    /// Images whose f32 class from the fast kernels equals the portable kernels' one.
    pub f32_fast_classes_agreeing: usize,
    /// Images compared.
    pub images: usize,
    /// Load average before and after (1, 5, 15 minutes).
    pub load_before: Option<[f64; 3]>,
    /// Load average after the last path.
    pub load_after: Option<[f64; 3]>,
    /// TensorFlow Lite's figures for the same network, if the peer script has produced them.
    pub tflite: Option<TfliteFigures>,
}

/// What `scripts/tflite-reference.sh` measured: TensorFlow Lite's interpreter on one image at a
/// time, one thread, the tutorial's network (the median of its calls).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, Serialize)]
pub struct TfliteFigures {
    /// Median microseconds per image, int8 model.
    pub tflite_int8_us_per_image: f64,
    /// Median microseconds per image, f32 model.
    pub tflite_f32_us_per_image: f64,
    /// TensorFlow's version.
    pub tensorflow: String,
}

/// Where `scripts/tflite-reference.sh` writes its figures, relative to the repository.
pub const TFLITE_FIGURES: &str = "runs/tflite-reference.json";

impl TfliteFigures {
    /// The figures in `path`: `Ok(None)` when there is no such file, an error when it is not
    /// the peer script's.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("{}: cannot read", path.display())),
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
                format!(
                    "{}: not the figures of scripts/tflite-reference.sh",
                    path.display()
                )
            }),
        }
    }
}

/// Times the core (int8 and f32) and burn on the first `images` of `pixels`, after `warmup`
/// unmeasured images each. `f32_file` and `int8_file` are model files of the same network.
pub fn run_infer_bench(
    f32_file: &[u8],
    int8_file: &[u8],
    pixels: &[u8],
    images: usize,
    warmup: usize,
) -> anyhow::Result<InferBenchReport> {
    let f32_model = F32Model::from_bytes(f32_file).context("reading the f32 model")?;
    let int8_model = Int8Model::from_bytes(int8_file).context("reading the int8 model")?;
    ensure!(
        f32_model.architecture() == int8_model.architecture(),
        "the f32 and int8 models are of different networks"
    );
    let image_len = f32_model.input_shape().values();
    let inputs: Vec<&[u8]> = pixels.chunks_exact(image_len).take(images).collect();
    ensure!(!inputs.is_empty(), "no test images to classify");
    let load_before = usage::load_average();

    let mut int8_fast = FastInt8::for_model(int8_model.record_bytes());
    let fast_kernels = Int8Kernels::name(&int8_fast);
    let mut int8_scratch = vec![0i8; int8_model.scratch_bytes_with_kernels()];
    let mut int8_fast_logits = Vec::with_capacity(inputs.len());
    let int8_fast_timing = time_each(
        format!("tinycnn int8 (core, {fast_kernels})"),
        &inputs,
        warmup,
        |image| {
            let prediction = int8_model.classify_with_kernels(
                &mut int8_fast,
                black_box(image),
                &mut int8_scratch,
                |_| {},
            );
            int8_fast_logits.push(prediction.map_or_else(|_| Vec::new(), |p| p.logits.to_vec()));
        },
    );
    let mut int8_logits = Vec::with_capacity(inputs.len());
    let int8 = time_each("tinycnn int8 (core, portable)", &inputs, warmup, |image| {
        let prediction = int8_model.classify(black_box(image), &mut int8_scratch);
        int8_logits.push(prediction.map_or_else(|_| Vec::new(), |p| p.logits.to_vec()));
    });
    let mut f32_fast = FastF32::for_model(f32_model.record_bytes());
    let mut f32_scratch = vec![0f32; f32_model.scratch_len()];
    let mut f32_fast_classes = Vec::with_capacity(inputs.len());
    let f32_fast_timing = time_each(
        format!("tinycnn f32 (core, {fast_kernels})"),
        &inputs,
        warmup,
        |image| {
            let prediction = f32_model.classify_with_kernels(
                &mut f32_fast,
                black_box(image),
                &mut f32_scratch,
                |_| {},
            );
            f32_fast_classes.push(prediction.map_or(usize::MAX, |p| p.class));
        },
    );
    let mut f32_classes = Vec::with_capacity(inputs.len());
    let f32 = time_each("tinycnn f32 (core, portable)", &inputs, warmup, |image| {
        let prediction = f32_model.classify(black_box(image), &mut f32_scratch);
        f32_classes.push(prediction.map_or(usize::MAX, |p| p.class));
    });
    // The closures ran the warm-up images too; keep only the timed ones, in order.
    fn timed<T>(mut values: Vec<T>, count: usize) -> Vec<T> {
        values.split_off(values.len() - count)
    }
    let count = inputs.len();
    let (int8_logits, int8_fast_logits) =
        (timed(int8_logits, count), timed(int8_fast_logits, count));
    let (f32_classes, f32_fast_classes) =
        (timed(f32_classes, count), timed(f32_fast_classes, count));
    let int8_classes: Vec<usize> = int8_logits
        .iter()
        .map(|logits| tinycnn::kernels::argmax(logits))
        .collect();

    let device = Device::default();
    let net = Net::new(f32_model.architecture(), &device)
        .with_weights(&burn_weights(&f32_model), &device)
        .context("loading the f32 model into burn")?;
    let burn_threads = format!("{} (burn's pool)", crate::deploy::eval::available_threads());
    let mut burn_single = time_each("burn f32, one image per call", &inputs, warmup, |image| {
        black_box(infer_logits(&net, image, &device));
    });
    burn_single.threads.clone_from(&burn_threads);

    let batch: Vec<u8> = inputs
        .iter()
        .flat_map(|image| image.iter().copied())
        .collect();
    black_box(infer_logits(&net, &batch, &device));
    let cpu_before = usage::process_cpu_time();
    let started = Instant::now();
    let logits = infer_logits(&net, black_box(&batch), &device);
    let wall = started.elapsed();
    let burn_classes: Vec<usize> = logits
        .chunks_exact(f32_model.architecture().classes())
        .map(tinycnn::kernels::argmax)
        .collect();
    let burn_batch = PathTiming {
        path: "burn f32, all images as one batch".into(),
        threads: burn_threads,
        images: inputs.len(),
        mean_ms: ms(wall) / inputs.len() as f64,
        median_ms: None,
        p99_ms: None,
        images_per_second: inputs.len() as f64 / wall.as_secs_f64().max(1e-12),
        cores_busy: cores(cpu_before, wall),
    };

    fn agree<T: PartialEq>(a: &[T], b: &[T]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x == y).count()
    }
    Ok(InferBenchReport {
        f32_classes_agreeing_with_burn: agree(&f32_classes, &burn_classes),
        int8_classes_agreeing_with_f32: agree(&int8_classes, &f32_classes),
        fast_kernels,
        int8_fast_logits_identical: agree(&int8_fast_logits, &int8_logits),
        f32_fast_classes_agreeing: agree(&f32_fast_classes, &f32_classes),
        images: inputs.len(),
        paths: vec![
            int8_fast_timing,
            f32_fast_timing,
            int8,
            f32,
            burn_single,
            burn_batch,
        ],
        load_before,
        load_after: usage::load_average(),
        tflite: None,
    })
}

/// Runs `classify` on `warmup` images (cycling through `inputs`), then times it on each of
/// `inputs` on this thread.
fn time_each(
    path: impl Into<String>,
    inputs: &[&[u8]],
    warmup: usize,
    mut classify: impl FnMut(&[u8]),
) -> PathTiming {
    for image in inputs.iter().cycle().take(warmup) {
        classify(image);
    }
    let cpu_before = usage::process_cpu_time();
    let started = Instant::now();
    let mut each: Vec<f64> = inputs
        .iter()
        .map(|image| {
            let start = Instant::now();
            classify(image);
            ms(start.elapsed())
        })
        .collect();
    let wall = started.elapsed();
    each.sort_by(f64::total_cmp);
    let percentile = |p: f64| each[((each.len() - 1) as f64 * p).round() as usize];
    PathTiming {
        path: path.into(),
        threads: "1".into(),
        images: inputs.len(),
        mean_ms: ms(wall) / inputs.len() as f64,
        median_ms: Some(percentile(0.5)),
        p99_ms: Some(percentile(0.99)),
        images_per_second: inputs.len() as f64 / wall.as_secs_f64().max(1e-12),
        cores_busy: cores(cpu_before, wall),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn cores(cpu_before: Option<Duration>, wall: Duration) -> Option<f64> {
    let cpu = usage::process_cpu_time()?.checked_sub(cpu_before?)?;
    Some(cpu.as_secs_f64() / wall.as_secs_f64().max(1e-12))
}

impl InferBenchReport {
    /// The report as a table, with the ratios a reader looks for.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{} MNIST test images per path; load average before {}\n",
            self.images,
            usage::load_average_text(self.load_before)
        );
        text.push_str(&format!(
            "{:<36} {:>16} {:>9} {:>9} {:>9} {:>9} {:>6}\n",
            "path", "threads", "mean ms", "median", "p99", "img/s", "cores"
        ));
        let optional = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
        for path in &self.paths {
            text.push_str(&format!(
                "{:<36} {:>16} {:>9.3} {:>9} {:>9} {:>9.0} {:>6}\n",
                path.path,
                path.threads,
                path.mean_ms,
                optional(path.median_ms),
                optional(path.p99_ms),
                path.images_per_second,
                usage::cores_text(path.cores_busy)
            ));
        }
        if let [int8_fast, f32_fast, int8, f32, burn_single, burn_batch] = &self.paths[..] {
            text.push_str(&format!(
                "the {} kernels are {:.2}x the portable ones' speed in int8, {:.2}x in f32; core \
                 f32 ({}) on one thread is {:.2}x burn one image per call and {:.2}x burn's batch \
                 throughput\n",
                self.fast_kernels,
                int8_fast.images_per_second / int8.images_per_second,
                f32_fast.images_per_second / f32.images_per_second,
                self.fast_kernels,
                f32_fast.images_per_second / burn_single.images_per_second,
                f32_fast.images_per_second / burn_batch.images_per_second,
            ));
        }
        match (&self.tflite, &self.paths[..]) {
            (Some(tflite), [int8_fast, f32_fast, ..]) => {
                let median = |path: &PathTiming| path.median_ms.unwrap_or(path.mean_ms);
                let (int8_ms, f32_ms) = (
                    tflite.tflite_int8_us_per_image / 1e3,
                    tflite.tflite_f32_us_per_image / 1e3,
                );
                text.push_str(&format!(
                    "{:<36} {:>16} {:>9} {:>9.3}\n{:<36} {:>16} {:>9} {:>9.3}\n",
                    format!("TensorFlow Lite {} int8", tflite.tensorflow),
                    "1",
                    "-",
                    int8_ms,
                    format!("TensorFlow Lite {} f32", tflite.tensorflow),
                    "1",
                    "-",
                    f32_ms
                ));
                text.push_str(&format!(
                    "median time per image against TensorFlow Lite's: core int8 ({}) {:.2}x, core \
                     f32 ({}) {:.2}x (below 1: faster; TensorFlow Lite's figures are from \
                     scripts/tflite-reference.sh, measure both in the same session)\n",
                    self.fast_kernels,
                    median(int8_fast) / int8_ms,
                    self.fast_kernels,
                    median(f32_fast) / f32_ms,
                ));
            }
            _ => text.push_str(&format!(
                "TensorFlow Lite: no figures in {TFLITE_FIGURES}; `bash scripts/tflite-reference.sh` \
                 times it on this machine (then run this again)\n"
            )),
        }
        text.push_str(&format!(
            "same result: int8 logits of the {} and portable kernels {}/{}, f32 class {}/{}; \
             class of core f32 and burn {}/{}, core int8 and core f32 {}/{}; load average after \
             {}\n",
            self.fast_kernels,
            self.int8_fast_logits_identical,
            self.images,
            self.f32_fast_classes_agreeing,
            self.images,
            self.f32_classes_agreeing_with_burn,
            self.images,
            self.int8_classes_agreeing_with_f32,
            self.images,
            usage::load_average_text(self.load_after)
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::CoreWeights;

    #[test]
    fn every_path_classifies_every_image_alike() {
        let _turn = crate::seeded_turn();
        let device = Device::default();
        device.seed(7);
        let architecture = tinycnn::Architecture::REFERENCE;
        let net = Net::new(&architecture, &device);
        let weights = CoreWeights::from_burn(&architecture, &net.weights()).expect("weights");
        let f32_file = weights.to_file().expect("f32 file");
        let pixels: Vec<u8> = (0..784 * 6)
            .map(|i| u8::try_from((i * 37) % 256).expect("byte"))
            .collect();
        let f32_model = F32Model::from_bytes(&f32_file).expect("f32 model");
        let calibration =
            crate::export::quantize::Calibration::measure(&f32_model, pixels.chunks_exact(784))
                .expect("calibration");
        let int8_file = crate::export::quantize::Int8Tensors::quantize(&f32_model, &calibration)
            .expect("quantized")
            .to_file()
            .expect("int8 file");
        let report = run_infer_bench(&f32_file, &int8_file, &pixels, 4, 2).expect("bench");
        assert_eq!(report.images, 4);
        assert_eq!(report.paths.len(), 6);
        assert_eq!(report.f32_classes_agreeing_with_burn, 4);
        assert_eq!(report.int8_fast_logits_identical, 4);
        assert_eq!(report.f32_fast_classes_agreeing, 4);
        assert!(
            report
                .paths
                .iter()
                .all(|p| p.images == 4 && p.mean_ms > 0.0)
        );
        assert!(report.to_text().contains("tinycnn int8"));
    }
}
