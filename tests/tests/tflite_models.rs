//! tinycnn against TensorFlow Lite's own interpreter with its reference kernels
//! (`OpResolverType.BUILTIN_REF`), whole networks, all 10,000 MNIST test images, both ways:
//!
//! - **in**: the `.tflite` files TensorFlow converted from Keras models (`data/keras/`, made by
//!   `scripts/keras-tflite.sh`: the tutorial's network, the small one and a third with 5x5, 1x1,
//!   'valid' and linear layers), imported with `host import`'s code, compute on the core exactly
//!   the logits TensorFlow Lite computed for each image (`NAME.logits`, written by the same
//!   script);
//! - **out**: tinycnn's `.tflite` export of the shipped reference and small models and of the
//!   imported third network, run by TensorFlow Lite's interpreter (`scripts/tflite-run.py`),
//!   outputs exactly the core's logits for each image.
//!
//! The second needs a Python with `ai-edge-litert` (or `tensorflow`): `TINYCNN_TFLITE_PYTHON`
//! names its interpreter (`scripts/check.sh` installs one). Without it the test says so and
//! checks nothing, unless `TINYCNN_REQUIRE_TFLITE=1` (as in the check script), which makes it
//! fail instead.
//!
//! Data: `MNIST_DIR`, or `../shared/data/mnist` beside the checkout (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use tinycnn::Int8Model;
use tinycnn_host::data::mnist::Mnist;
use tinycnn_host::deploy::eval::{available_threads, int8_logits};
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
fn keras_models_converted_by_tensorflow_import_to_the_same_bytes() {
    for name in KERAS {
        let tflite_bytes = keras_file(name, "tflite");
        let expected = keras_file(name, "logits");
        let imported = tflite::import(&tflite_bytes).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(
            imported.file.len() <= tflite_bytes.len(),
            "{name}: the tinycnn model ({} B) is larger than the .tflite ({} B)",
            imported.file.len(),
            tflite_bytes.len()
        );
        let model = Int8Model::from_bytes(&imported.file).unwrap();
        let classes = model.architecture().classes();
        let core = int8_logits(&model, &MNIST.test.pixels, available_threads());
        let wrong = differing(&core, &expected, classes);
        assert!(
            wrong.is_empty(),
            "{name}: {} of {} images differ from TensorFlow Lite's logits, the first {:?}",
            wrong.len(),
            core.len(),
            &wrong[..wrong.len().min(10)]
        );
        println!(
            "{name}: {} of {} images byte-identical to TensorFlow Lite (reference kernels); \
             {} B as tinycnn, {} B as .tflite; {}",
            core.len(),
            core.len(),
            imported.file.len(),
            tflite_bytes.len(),
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
             has ai-edge-litert (pip install ai-edge-litert)"
        );
        eprintln!(
            "skipped: TINYCNN_TFLITE_PYTHON is not set (a Python with ai-edge-litert); \
             scripts/check.sh sets it"
        );
    }
    python
}

#[test]
fn exported_models_compute_the_same_bytes_in_tensorflow_lite() {
    let Some(python) = tflite_python() else {
        return;
    };
    let mixed = tflite::import(&keras_file("mixed", "tflite")).unwrap().file;
    let models: Vec<(&str, Vec<u8>)> = vec![
        (
            "reference (data/)",
            read(&workspace().join("data/model-int8.tcnn")),
        ),
        (
            "small (data/small/)",
            read(&workspace().join("data/small/model-int8.tcnn")),
        ),
        ("mixed (imported from data/keras/)", mixed),
    ];
    let dir = tempfile_dir();
    // The interpreter runs each model in its own process, side by side.
    std::thread::scope(|scope| {
        let runs: Vec<_> = models
            .iter()
            .enumerate()
            .map(|(index, (name, file))| {
                let python = &python;
                let dir = &dir;
                scope.spawn(move || {
                    let model = Int8Model::from_bytes(file).unwrap();
                    let exported = tflite::export(&model).unwrap();
                    let tflite_path = dir.join(format!("{index}.tflite"));
                    let out = dir.join(format!("{index}.out"));
                    std::fs::write(&tflite_path, &exported).unwrap();
                    let status = Command::new(python)
                        .arg(workspace().join("scripts/tflite-run.py"))
                        .arg(&tflite_path)
                        .arg("--data")
                        .arg(mnist_dir())
                        .arg("--out")
                        .arg(&out)
                        .status()
                        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
                    assert!(status.success(), "{name}: tflite-run.py failed ({status})");
                    (name, model, read(&out))
                })
            })
            .collect();
        for run in runs {
            let (name, model, theirs) = run.join().unwrap();
            let classes = model.architecture().classes();
            let core = int8_logits(&model, &MNIST.test.pixels, available_threads());
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

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinycnn-tflite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
