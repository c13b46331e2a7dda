//! tinycnn against TensorFlow Lite Micro (the interpreter that runs on microcontrollers, PyPI
//! `tflite-micro`, reference kernels) and desktop TensorFlow Lite (`ai-edge-litert` with
//! `OpResolverType.BUILTIN_REF`), whole networks, both ways:
//!
//! - **in**: `.tflite` files TensorFlow converted from Keras models, imported with `host
//!   import`'s code, compute on the core exactly TensorFlow Lite Micro's outputs, as recorded
//!   by `scripts/mlperf-tiny.sh`: the four MLPerf Tiny architectures (`data/mlperf/`) on 1,000
//!   random inputs each (with the portable kernels and with the host's kernels for this
//!   processor), and the three MNIST networks of `data/keras/` (the tutorial's, a
//!   small one, one with 5x5, 1x1, 'valid' and linear layers) on all 10,000 test images;
//! - **out**: tinycnn's `.tflite` export of those imported networks and of the shipped
//!   depthwise-separable model (`host train`'s, 2,000 test images), run live by TensorFlow
//!   Lite Micro (`scripts/tflm-run.py`), computes the core's bytes; and the export of the
//!   shipped reference and small models (format version 2, whose dense layers round as the
//!   desktop's do), run by desktop TensorFlow Lite (`scripts/tflite-run.py`), the core's
//!   logits on all 10,000 test images.
//!
//! The second needs a Python with `ai-edge-litert` and `tflite-micro`: `TINYCNN_TFLITE_PYTHON`
//! names its interpreter (`scripts/check.sh` installs one). Without it the tests say so and
//! check nothing, unless `TINYCNN_REQUIRE_TFLITE=1` (as in the check script), which makes them
//! fail instead.
//!
//! Data: `MNIST_DIR`, or `../shared/data/mnist` beside the checkout (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use tinycnn::Int8Model;
use tinycnn::arch::OutputKind;
use tinycnn::kernels::Int8Kernels;
use tinycnn::kernels::int8::Backend;
use tinycnn::testvec::TestVectors;
use tinycnn_host::data::mnist::Mnist;
use tinycnn_host::deploy::eval::{available_threads, int8_logits};
use tinycnn_host::deploy::fixture;
use tinycnn_host::deploy::kernels::FastInt8;
use tinycnn_host::tflite;

/// The Keras networks of `data/keras/`.
const KERAS: [&str; 3] = ["reference", "small", "mixed"];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mnist_dir() -> PathBuf {
    std::env::var_os("MNIST_DIR")
        .map_or_else(|| workspace().join("../shared/data/mnist"), PathBuf::from)
}

static MNIST: LazyLock<Mnist> = LazyLock::new(|| {
    Mnist::load(&mnist_dir()).unwrap_or_else(|e| panic!("MNIST is needed for these tests: {e:#}"))
});

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn keras_file(name: &str, extension: &str) -> Vec<u8> {
    read(
        &workspace()
            .join("data/keras")
            .join(format!("{name}.{extension}")),
    )
}

/// The images (of 10,000) whose logits differ.
fn differing(core: &[Vec<i8>], expected: &[u8], classes: usize) -> Vec<usize> {
    assert_eq!(
        expected.len(),
        core.len() * classes,
        "one row of logits per test image"
    );
    core.iter()
        .zip(expected.chunks_exact(classes))
        .enumerate()
        .filter(|(_, (ours, theirs))| ours.iter().zip(theirs.iter()).any(|(&a, &b)| a as u8 != b))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn keras_models_import_to_tensorflow_lite_micros_bytes() {
    for name in KERAS {
        let tflite_bytes = keras_file(name, "tflite");
        let expected = keras_file(name, "tflm");
        let imported =
            tflite::import(&tflite_bytes, None).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(
            imported.file.len() <= tflite_bytes.len(),
            "{name}: the tinycnn model ({} B) is larger than the .tflite ({} B)",
            imported.file.len(),
            tflite_bytes.len()
        );
        let model = Int8Model::from_bytes(&imported.file).unwrap();
        assert!(model.architecture().ends_in_softmax(), "{name}");
        let classes = model.architecture().classes();
        let core = int8_logits(&model, &MNIST.test.pixels, available_threads());
        let wrong = differing(&core, &expected, classes);
        assert!(
            wrong.is_empty(),
            "{name}: {} of {} images differ from TensorFlow Lite Micro's softmax outputs, the \
             first {:?}",
            wrong.len(),
            core.len(),
            &wrong[..wrong.len().min(10)]
        );
        println!(
            "{name}: {} of {} images byte-identical to TensorFlow Lite Micro (softmax output); \
             {} B as tinycnn, {} B as .tflite; {}",
            core.len(),
            core.len(),
            imported.file.len(),
            tflite_bytes.len(),
            model.architecture()
        );
    }
}

/// The MLPerf Tiny networks of `data/mlperf/`, made by `scripts/mlperf-tiny.sh`.
const MLPERF: [(&str, u64); 4] = [
    ("kws", 0x4B5753),
    ("vww", 0x565757),
    ("resnet8", 0x524E38),
    ("autoencoder", 0x4145),
];

/// The fixtures' inputs: one splitmix64 call per int8 byte, its top 8 bits
/// (`data/mlperf/README.md`).
fn splitmix_bytes(seed: u64, count: usize) -> Vec<i8> {
    fixture::splitmix_bytes(seed, count)
        .into_iter()
        .map(|b| b as i8)
        .collect()
}

#[test]
fn the_splitmix_stream_is_the_documented_one() {
    assert_eq!(splitmix_bytes(0, 1), [0xE2u8 as i8]);
    assert_eq!(
        splitmix_bytes(0x4B5753, 16),
        [
            10, 0, -63, 16, -76, -35, 23, -95, -41, 5, 12, -120, 38, -3, 10, 72
        ]
    );
}

fn mlperf_file(name: &str, extension: &str) -> Vec<u8> {
    read(
        &workspace()
            .join("data/mlperf")
            .join(format!("{name}.{extension}")),
    )
}

#[test]
fn mlperf_tiny_models_import_to_tensorflow_lite_micros_bytes() {
    for (name, seed) in MLPERF {
        let tflite_bytes = mlperf_file(name, "tflite");
        let expected = mlperf_file(name, "tflm");
        let output_kind = (name == "autoencoder").then_some(OutputKind::Values);
        let imported =
            tflite::import(&tflite_bytes, output_kind).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(
            imported.file.len() <= tflite_bytes.len(),
            "{name}: the tinycnn model ({} B) is larger than the .tflite ({} B)",
            imported.file.len(),
            tflite_bytes.len()
        );
        // The firmware's checks run the committed import and its test vectors: both current.
        assert!(
            imported.file == mlperf_file(name, "tcnn"),
            "data/mlperf/{name}.tcnn is not the import of {name}.tflite: run `host import`"
        );
        let model = Int8Model::from_bytes(&imported.file).unwrap();
        let vectors_file = mlperf_file(name, "tctv");
        let vectors = TestVectors::from_bytes(&vectors_file).unwrap();
        vectors.check_model(&model).unwrap();
        let mut scratch = vec![0i8; model.scratch_bytes()];
        for (index, vector) in vectors.iter().enumerate() {
            let ours = model.classify(vector.image, &mut scratch).unwrap();
            assert!(
                vector.matches(ours.logits),
                "data/mlperf/{name}.tctv is stale at vector {index}: run `host fixture --random`"
            );
        }
        let input_len = model.input_shape().values();
        let output_len = model.architecture().output().values();
        let count = expected.len() / output_len;
        assert_eq!(count, 1000, "{name}: 1,000 inputs");
        let inputs = splitmix_bytes(seed, count * input_len);
        let mut scratch = vec![0i8; model.scratch_bytes_with_kernels()];
        // The portable kernels, then the host's kernels for this processor (`host eval`'s).
        let mut fast = FastInt8::for_model(model.record_bytes());
        let (mut wrong, mut wrong_fast) = (Vec::new(), Vec::new());
        for (index, (input, theirs)) in inputs
            .chunks_exact(input_len)
            .zip(expected.chunks_exact(output_len))
            .enumerate()
        {
            let ours = model
                .run_quantized(Backend::FASTEST, input, &mut scratch, |_| {})
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if ours.logits.iter().zip(theirs).any(|(&a, &b)| a as u8 != b) {
                wrong.push(index);
            }
            let ours = model
                .run_quantized_with_kernels(&mut fast, input, &mut scratch, |_| {})
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if ours.logits.iter().zip(theirs).any(|(&a, &b)| a as u8 != b) {
                wrong_fast.push(index);
            }
        }
        assert!(
            wrong.is_empty(),
            "{name}: {} of {count} outputs differ from TensorFlow Lite Micro's, the first {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(10)]
        );
        assert!(
            wrong_fast.is_empty(),
            "{name}: with the {} kernels, {} of {count} outputs differ from TensorFlow Lite \
             Micro's, the first {:?}",
            Int8Kernels::name(&fast),
            wrong_fast.len(),
            &wrong_fast[..wrong_fast.len().min(10)]
        );
        println!(
            "{name}: {count} of {count} outputs byte-identical to TensorFlow Lite Micro, with the \
             portable and the {} kernels; {} B as tinycnn, {} B as .tflite; {} MACs; {}",
            Int8Kernels::name(&fast),
            imported.file.len(),
            tflite_bytes.len(),
            model.architecture().macs(),
            model.architecture()
        );
    }
}

/// TensorFlow Lite's Python interpreter, if one is configured.
fn tflite_python() -> Option<PathBuf> {
    let python = std::env::var_os("TINYCNN_TFLITE_PYTHON").map(PathBuf::from);
    if python.is_none() {
        let required = std::env::var("TINYCNN_REQUIRE_TFLITE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "TINYCNN_REQUIRE_TFLITE=1 but TINYCNN_TFLITE_PYTHON is not set: name a Python that \
             has ai-edge-litert and tflite-micro (pip install ai-edge-litert; pip install --pre \
             tflite-micro)"
        );
        eprintln!(
            "skipped: TINYCNN_TFLITE_PYTHON is not set (a Python with ai-edge-litert and \
             tflite-micro); scripts/check.sh sets it"
        );
    }
    python
}

#[test]
fn exported_models_compute_the_same_bytes_in_tensorflow_lite() {
    let Some(python) = tflite_python() else {
        return;
    };
    let models: Vec<(&str, Vec<u8>)> = vec![
        (
            "reference (data/)",
            read(&workspace().join("data/model-int8.tcnn")),
        ),
        (
            "small (data/small/)",
            read(&workspace().join("data/small/model-int8.tcnn")),
        ),
    ];
    let dir = tempfile_dir("litert");
    let exported: Vec<(Int8Model<'_>, PathBuf)> = models
        .iter()
        .enumerate()
        .map(|(index, (_, file))| {
            let model = Int8Model::from_bytes(file).unwrap();
            let path = dir.join(format!("{index}.tflite"));
            std::fs::write(&path, tflite::export(&model).unwrap()).unwrap();
            (model, path)
        })
        .collect();
    // The interpreter runs in processes side by side: the reference network, which takes it
    // most of the time, in two halves of the test set.
    let test_images = MNIST.test.len();
    let shards: Vec<(usize, usize, usize)> = vec![
        (0, 0, test_images / 2),
        (0, test_images / 2, test_images - test_images / 2),
        (1, 0, test_images),
    ];
    std::thread::scope(|scope| {
        let runs: Vec<_> = shards
            .iter()
            .map(|&(index, skip, count)| {
                let (python, exported, dir, models) = (&python, &exported, &dir, &models);
                scope.spawn(move || {
                    let out = dir.join(format!("{index}-{skip}.out"));
                    let status = Command::new(python)
                        .arg(workspace().join("scripts/tflite-run.py"))
                        .arg(&exported[index].1)
                        .arg("--data")
                        .arg(mnist_dir())
                        .args(["--skip", &skip.to_string(), "--limit", &count.to_string()])
                        .arg("--out")
                        .arg(&out)
                        .status()
                        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
                    let name = models[index].0;
                    assert!(status.success(), "{name}: tflite-run.py failed ({status})");
                    (index, read(&out))
                })
            })
            .collect();
        let mut outputs: Vec<Vec<u8>> = vec![Vec::new(); models.len()];
        for run in runs {
            let (index, part) = run.join().unwrap();
            outputs[index].extend(part);
        }
        for (((name, _), (model, _)), theirs) in models.iter().zip(&exported).zip(outputs) {
            let classes = model.architecture().classes();
            let core = int8_logits(model, &MNIST.test.pixels, available_threads());
            let wrong = differing(&core, &theirs, classes);
            assert!(
                wrong.is_empty(),
                "{name}: TensorFlow Lite's output differs from the core's on {} of {} images, \
                 the first {:?}",
                wrong.len(),
                core.len(),
                &wrong[..wrong.len().min(10)]
            );
            println!(
                "{name}: exported, TensorFlow Lite's reference kernels computed the core's \
                 logits on {} of {} images",
                core.len(),
                core.len()
            );
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs `scripts/tflm-run.py` (TensorFlow Lite Micro) on `tflite` with `inputs` (int8 tensors
/// one after another); returns its outputs.
fn tensorflow_lite_micro(
    python: &Path,
    dir: &Path,
    name: &str,
    tflite: &[u8],
    inputs: &[i8],
) -> Vec<u8> {
    let model = dir.join(format!("{name}.tflite"));
    let input_file = dir.join(format!("{name}.in"));
    let out = dir.join(format!("{name}.out"));
    std::fs::write(&model, tflite).unwrap();
    std::fs::write(
        &input_file,
        inputs.iter().map(|&v| v as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    let status = Command::new(python)
        .arg(workspace().join("scripts/tflm-run.py"))
        .arg(&model)
        .arg("--inputs")
        .arg(&input_file)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(status.success(), "{name}: tflm-run.py failed ({status})");
    read(&out)
}

/// tinycnn's `.tflite` export of the imported networks, run live by TensorFlow Lite Micro:
/// the four MLPerf Tiny networks on their 1,000 fixture inputs, the three Keras networks on
/// the first MNIST test images (2,000 for the two small ones, 500 for the tutorial's, whose
/// 30 M MACs per image TensorFlow Lite Micro's reference kernels take 15 ms for; the import
/// test above covers all 10,000).
#[test]
fn exported_models_compute_the_same_bytes_in_tensorflow_lite_micro() {
    let Some(python) = tflite_python() else {
        return;
    };
    let mut cases: Vec<(String, Vec<u8>, Vec<i8>)> = Vec::new();
    for (name, seed) in MLPERF {
        let output_kind = (name == "autoencoder").then_some(OutputKind::Values);
        let file = tflite::import(&mlperf_file(name, "tflite"), output_kind)
            .unwrap()
            .file;
        let model = Int8Model::from_bytes(&file).unwrap();
        let inputs = splitmix_bytes(seed, 1000 * model.input_shape().values());
        cases.push((name.to_string(), file, inputs));
    }
    for (name, images) in [("reference", 500), ("small", 2_000), ("mixed", 2_000)] {
        let file = tflite::import(&keras_file(name, "tflite"), None)
            .unwrap()
            .file;
        let pixels = &MNIST.test.pixels[..images * 784];
        let inputs = pixels.iter().map(|&p| (p ^ 0x80) as i8).collect();
        cases.push((format!("keras {name}"), file, inputs));
    }
    // The depthwise-separable network trained by `host train`, exported: the proof that what
    // the trainer ships runs in TensorFlow Lite Micro as in the core.
    let separable = read(&workspace().join("data/separable/model-int8.tcnn"));
    let inputs = MNIST.test.pixels[..2_000 * 784]
        .iter()
        .map(|&p| (p ^ 0x80) as i8)
        .collect();
    cases.push(("shipped depthwise-separable".into(), separable, inputs));
    let dir = tempfile_dir("tflm");
    std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|(name, file, inputs)| {
                let (python, dir) = (&python, &dir);
                scope.spawn(move || {
                    let model = Int8Model::from_bytes(file).unwrap();
                    let exported =
                        tflite::export(&model).unwrap_or_else(|e| panic!("{name}: {e:#}"));
                    let slug = name.replace(' ', "-");
                    let theirs = tensorflow_lite_micro(python, dir, &slug, &exported, inputs);
                    (name, model, inputs, theirs)
                })
            })
            .collect();
        for run in runs {
            let (name, model, inputs, theirs) = run.join().unwrap();
            let input_len = model.input_shape().values();
            let output_len = model.architecture().output().values();
            let mut scratch = vec![0i8; model.scratch_bytes()];
            let count = inputs.len() / input_len;
            assert_eq!(
                theirs.len(),
                count * output_len,
                "{name}: one output per input"
            );
            let wrong = inputs
                .chunks_exact(input_len)
                .zip(theirs.chunks_exact(output_len))
                .filter(|(input, theirs)| {
                    let ours = model
                        .run_quantized(Backend::FASTEST, input, &mut scratch, |_| {})
                        .unwrap();
                    ours.logits
                        .iter()
                        .zip(theirs.iter())
                        .any(|(&a, &b)| a as u8 != b)
                })
                .count();
            assert_eq!(
                wrong, 0,
                "{name}: TensorFlow Lite Micro's output differs from the core's on {wrong} of \
                 {count} inputs"
            );
            println!(
                "{name}: exported, TensorFlow Lite Micro computed the core's bytes on {count} of \
                 {count} inputs"
            );
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}

/// A directory of this process's own for the test `name` (the tests run side by side, and each
/// removes its directory when done).
fn tempfile_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinycnn-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
