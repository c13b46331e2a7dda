//! `host train` stopped and resumed until it finishes, ten trials each way: the
//! finished run must equal, bit for bit, a run that was never interrupted.
//!
//! - SIGKILL at random moments, several times per run, some of them while a
//!   checkpoint is being written, half the trials with timed checkpoints every
//!   few batches: every file left behind must be valid, and no checkpointed
//!   work may be lost.
//! - Ctrl-C (SIGINT) in the middle of epoch 1 and again in the middle of
//!   epoch 2: each must checkpoint the batches trained, and `--resume`
//!   continue from the next one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tinycnn_host::train::METRICS_FILE;
use tinycnn_host::train::checkpoint::{CHECKPOINT_FILE, Checkpoint};

const EPOCHS: &str = "3";
/// A network a few times cheaper to train than the reference: checkpointing and resuming do
/// not depend on the layers, and the trials below train it dozens of times. Its second
/// convolution is batch-normalised: the running statistics must be checkpointed as of the last
/// batch trained, and left alone by what a resumed epoch replays of the batches before.
const NETWORK: &str = "input:28x28x1 conv3x3:8 pool conv3x3:16:bn pool flatten dense:10";
/// The kill times are drawn from the length of an uninterrupted run: the tests run one at a
/// time so that both have the cores to themselves throughout.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
const SETTINGS: [&str; 10] = [
    "--arch",
    NETWORK,
    "--limit",
    "1024",
    "--test-limit",
    "100",
    "--seed",
    "5",
    "--epochs",
    EPOCHS,
];

fn network() -> tinycnn_host::train::network::TrainNetwork {
    tinycnn_host::train::network::TrainNetwork::parse(NETWORK, tinycnn::Shape::new(28, 28, 1))
        .unwrap()
}

fn mnist_dir() -> PathBuf {
    std::env::var_os("MNIST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist"),
        PathBuf::from,
    )
}

fn start(out: &Path, resume: bool) -> Child {
    start_with(out, resume, &[])
}

fn start_with(out: &Path, resume: bool, extra: &[&str]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .arg("train")
        .arg("--data")
        .arg(mnist_dir())
        .arg("--out")
        .arg(out)
        .args(SETTINGS)
        .args(extra)
        .arg("--quiet");
    if resume {
        command.arg("--resume");
    }
    command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("host starts")
}

/// Completed epochs recorded in a valid checkpoint (0 without one); panics if
/// anything in `out` is damaged.
fn check_outputs(out: &Path) -> usize {
    let completed = match Checkpoint::load(&out.join(CHECKPOINT_FILE)) {
        Ok(checkpoint) => checkpoint.state.completed_epochs,
        Err(error) if !out.join(CHECKPOINT_FILE).exists() => {
            let _ = error;
            0
        }
        Err(error) => panic!("damaged checkpoint after SIGKILL: {error}"),
    };
    if let Ok(bytes) = std::fs::read(out.join(METRICS_FILE)) {
        let metrics: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("damaged metrics.json after SIGKILL: {e}"));
        // Written right after the checkpoint, so at most one epoch behind it.
        let recorded = metrics["epochs"].as_array().unwrap().len();
        assert!(
            recorded == completed || recorded + 1 == completed,
            "metrics {recorded} epochs, checkpoint {completed}"
        );
    }
    for name in [
        tinycnn_host::export::F32_FILE,
        tinycnn_host::export::INT8_FILE,
    ] {
        if let Ok(bytes) = std::fs::read(out.join(name)) {
            tinycnn::Model::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("damaged {name} after SIGKILL: {e}"));
        }
    }
    completed
}

/// Waits until a temporary file appears in `out` (a checkpoint or report being
/// written) or `deadline` passes, then kills the child; returns whether it was
/// still running.
fn kill_at(child: &mut Child, out: &Path, deadline: Instant, during_write: bool) -> bool {
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let writing = during_write
            && std::fs::read_dir(out).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            });
        if writing || Instant::now() >= deadline {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_loses_nothing() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // The uninterrupted run, and how long it takes.
    let reference = dir.path().join("reference");
    let started = Instant::now();
    let status = start(&reference, false).wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let duration = started.elapsed();
    let expected = Checkpoint::load(&reference.join(CHECKPOINT_FILE)).unwrap();

    // A small deterministic generator for the kill times (xorshift).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut kills = 0;
    let mut kills_while_writing = 0;
    for trial in 0..10 {
        let out = dir.path().join(format!("trial-{trial}"));
        let mut resume = false;
        let mut completed = 0;
        for attempt in 0.. {
            assert!(attempt < 50, "trial {trial}: no progress after 50 restarts");
            // Odd trials checkpoint every 60 ms as well, so kills often land after a timed
            // checkpoint in the middle of an epoch.
            let timed: &[&str] = if trial % 2 == 1 {
                &["--checkpoint-minutes", "0.001"]
            } else {
                &[]
            };
            let mut child = start_with(&out, resume, timed);
            // Kill at a random moment within the run, or (every third attempt)
            // as soon as a file is being written, for the first few attempts.
            let during_write = attempt < 4 && random() % 3 == 0;
            let delay = duration.mul_f64((random() % 1000) as f64 / 1000.0);
            let killed =
                attempt < 4 && kill_at(&mut child, &out, Instant::now() + delay, during_write);
            if killed {
                kills += 1;
                kills_while_writing += usize::from(during_write);
                let now = check_outputs(&out);
                assert!(
                    now >= completed,
                    "trial {trial}: epochs went from {completed} to {now}"
                );
                completed = now;
                resume = out.join(CHECKPOINT_FILE).exists();
                continue;
            }
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "trial {trial}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            break;
        }
        assert_eq!(check_outputs(&out), 3, "trial {trial}");
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|name| !name.ends_with(".tmp")),
            "trial {trial}: a temporary file is left: {names:?}"
        );
        let finished = Checkpoint::load(&out.join(CHECKPOINT_FILE)).unwrap();
        let device = burn::tensor::Device::flex();
        assert_eq!(
            finished.model(&network(), &device).unwrap().weights(),
            expected.model(&network(), &device).unwrap().weights(),
            "trial {trial}: the resumed run differs from the uninterrupted one"
        );
        // Timings differ from run to run; every learned number must not.
        let numbers = |c: &Checkpoint| -> Vec<[f64; 4]> {
            c.state
                .history
                .iter()
                .map(|m| [m.train_loss, m.train_accuracy, m.test_loss, m.test_accuracy])
                .collect()
        };
        assert_eq!(
            numbers(&finished),
            numbers(&expected),
            "trial {trial}: metrics differ"
        );
    }
    println!(
        "10 of 10 trials finished after {kills} SIGKILLs ({kills_while_writing} aimed at a file being written)"
    );
    assert!(kills >= 10);
}

/// Progress recorded in a valid checkpoint: (completed epochs, batches of the next).
fn position(out: &Path) -> (usize, usize) {
    let checkpoint = Checkpoint::load(&out.join(CHECKPOINT_FILE)).expect("a whole checkpoint");
    let batches = checkpoint
        .state
        .epoch_in_progress
        .as_ref()
        .map_or(0, |progress| progress.batches);
    (checkpoint.state.completed_epochs, batches)
}

/// Runs `host train --json` (resumed if `resume`) until its `progress` event number `nth` of
/// epoch `epoch`, then sends SIGINT and waits for it to exit.
#[cfg(unix)]
fn interrupt_in_epoch(out: &Path, resume: bool, epoch: u64, nth: usize) {
    use std::io::BufRead as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .arg("train")
        .arg("--out")
        .arg(out)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if resume {
        command.arg("--resume");
    } else {
        command.arg("--data").arg(mnist_dir()).args(SETTINGS);
    }
    let mut child = command.spawn().expect("host starts");
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = 0;
    // Read to the end: the lines after the interrupt are the batch it finishes.
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "progress" && event["epoch"] == epoch {
            seen += 1;
            if seen == nth {
                let status = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        }
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_in_the_middle_of_epochs_one_and_two_then_resume_loses_nothing() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let status = start(&reference, false).wait_with_output().unwrap();
    assert!(status.status.success());
    let expected = Checkpoint::load(&reference.join(CHECKPOINT_FILE)).unwrap();
    let device = burn::tensor::Device::flex();
    let weights = |c: &Checkpoint| c.model(&network(), &device).unwrap().weights();

    // 1024 images in batches of 128: progress events after batches 1 to 7 of 8.
    for trial in 0..10 {
        let out = dir.path().join(format!("trial-{trial}"));
        let first = 1 + trial % 6;
        let second = 1 + (trial * 5 + 2) % 6;
        interrupt_in_epoch(&out, false, 1, first);
        let (epochs, batches) = position(&out);
        assert_eq!(
            epochs, 0,
            "trial {trial}: the first interrupt is in epoch 1"
        );
        assert!(
            (1..8).contains(&batches),
            "trial {trial}: {batches} batches of epoch 1"
        );
        interrupt_in_epoch(&out, true, 2, second);
        let (epochs, batches) = position(&out);
        assert_eq!(
            epochs, 1,
            "trial {trial}: the second interrupt is in epoch 2"
        );
        assert!(
            (1..8).contains(&batches),
            "trial {trial}: {batches} batches of epoch 2"
        );
        let output = start(&out, true).wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "trial {trial}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let finished = Checkpoint::load(&out.join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(finished.state.completed_epochs, 3);
        assert!(
            weights(&finished) == weights(&expected),
            "trial {trial}: the resumed run differs from the uninterrupted one"
        );
        let numbers = |c: &Checkpoint| -> Vec<[f64; 3]> {
            c.state
                .history
                .iter()
                .map(|m| [m.train_loss, m.train_accuracy, m.test_accuracy])
                .collect()
        };
        assert_eq!(numbers(&finished), numbers(&expected), "trial {trial}");
    }
    println!("10 of 10 trials interrupted in epochs 1 and 2 ended bit-identical");
}
