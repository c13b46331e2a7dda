//! Keyword spotting end to end on a tiny set of generated WAV clips in Speech Commands' layout:
//! `host data`, `host train` (one epoch of a tiny network), `host inspect`, `host eval`,
//! `host predict clip.wav`, `host fixture` (raw clips with their class and outputs), a resumed
//! run equal to an uninterrupted one (the noise mixed in is drawn from the seed), the FFT's
//! arithmetic (`--fft-bits`: 16 by default, format version 6; 32, version 5; kept by a
//! resumed run), and the errors for clips the front end cannot take.

use std::path::Path;
use std::process::Output;

use tinycnn_host::data::audio::{BACKGROUND_NOISE, KEYWORDS};

mod common;
use common::host;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn spec(channels: u16, rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[i16]) {
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &sample in samples {
        writer.write_sample(sample).unwrap();
    }
    writer.finalize().unwrap();
}

/// A "word": two tones whose pitches name it, its length and level varied by `speaker`.
fn word_clip(word: usize, speaker: usize) -> Vec<i16> {
    let (low, high) = (200.0 + 90.0 * word as f64, 1200.0 + 170.0 * word as f64);
    let length = 6_000 + 700 * (speaker % 5);
    let start = 2_000 + 300 * (speaker % 7);
    let level = 4_000.0 + 1_500.0 * (speaker % 4) as f64;
    (0..16_000)
        .map(|n| {
            if n < start || n >= start + length {
                return 0;
            }
            let t = n as f64 / 16_000.0;
            let envelope = (std::f64::consts::PI * (n - start) as f64 / length as f64).sin();
            let tone = (2.0 * std::f64::consts::PI * low * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * high * t).sin();
            (level * envelope * tone) as i16
        })
        .collect()
}

/// The set: ten keywords and two other words, 6 speakers each (speaker 0 in testing_list.txt,
/// speaker 1 in validation_list.txt), and two seconds of noise.
fn make_set(dir: &Path) {
    let words: Vec<&str> = KEYWORDS.iter().copied().chain(["cat", "dog"]).collect();
    let (mut testing, mut validation) = (String::new(), String::new());
    for (index, word) in words.iter().enumerate() {
        std::fs::create_dir_all(dir.join(word)).unwrap();
        for speaker in 0..6 {
            let name = format!("{speaker:08x}_nohash_0.wav");
            write_wav(
                &dir.join(word).join(&name),
                spec(1, 16_000),
                &word_clip(index, speaker),
            );
            match speaker {
                0 => testing.push_str(&format!("{word}/{name}\n")),
                1 => validation.push_str(&format!("{word}/{name}\n")),
                _ => {}
            }
        }
    }
    std::fs::write(dir.join("testing_list.txt"), testing).unwrap();
    std::fs::write(dir.join("validation_list.txt"), validation).unwrap();
    std::fs::create_dir_all(dir.join(BACKGROUND_NOISE)).unwrap();
    let mut state = 1u32;
    let noise: Vec<i16> = (0..32_000)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 16) as i16) / 16
        })
        .collect();
    write_wav(
        &dir.join(BACKGROUND_NOISE).join("white.wav"),
        spec(1, 16_000),
        &noise,
    );
}

/// Asserts that the command failed and that its error says `says`.
fn refused(output: Output, says: &str) {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "stderr: {stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn keyword_set_trains_evaluates_and_predicts_a_wav() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keywords");
    make_set(&data);

    let shown = ok(host()
        .arg("data")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap());
    // 40 keyword clips for training (speakers 2 to 5), with 4 unknown and 4 silence clips.
    assert!(
        shown.contains("48 training and 12 test clips of 12 classes"),
        "{shown}"
    );
    assert!(
        shown.contains("as 49x10x1 features of the 16-bit FFT"),
        "{shown}"
    );

    let out = dir.path().join("run");
    let trained = host()
        .arg("train")
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args([
            "--arch",
            "conv3x3:4:s2 gap dense:12",
            "--epochs",
            "1",
            "--quiet",
        ])
        .output()
        .unwrap();
    ok(trained);
    let int8 = out.join("model-int8.tcnn");
    let f32 = out.join("model-f32.tcnn");
    // By default the 16-bit FFT, which only format version 6 records.
    for model in [&int8, &f32] {
        let bytes = std::fs::read(model).unwrap();
        assert_eq!(&bytes[4..6], &[6, 0], "format version 6");
        let model = tinycnn::Model::from_bytes(&bytes).unwrap();
        assert_eq!(
            model.front_end(),
            Some(tinycnn::audio::FrontEndConfig::MLPERF_KWS_INT16)
        );
        assert_eq!(model.class_names().get(11), Some("silence"));
    }
    let metrics = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    assert!(metrics.contains(r#""fft_bits": 16"#), "{metrics}");

    let inspected = ok(host().arg("inspect").arg(&int8).output().unwrap());
    assert!(
        inspected.contains("audio front end: 16000 Hz; 49 frames of 10 MFCCs"),
        "{inspected}"
    );
    assert!(inspected.contains("FFT 512 (16-bit)"), "{inspected}");
    let json = ok(host()
        .args(["inspect", "--json"])
        .arg(&int8)
        .output()
        .unwrap());
    assert!(json.contains(r#""fft_bits":16"#), "{json}");

    let evaluated = ok(host()
        .args(["eval", "--model"])
        .arg(&int8)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap());
    assert!(evaluated.contains("12 test images"), "{evaluated}");

    let clip = data.join("yes").join("00000000_nohash_0.wav");
    for model in [&int8, &f32] {
        let predicted = ok(host()
            .args(["predict", "--model"])
            .arg(model)
            .arg(&clip)
            .output()
            .unwrap());
        let names: Vec<String> = tinycnn_host::data::audio::class_names();
        assert!(
            predicted.starts_with(&format!("{}: class ", clip.display()))
                && names
                    .iter()
                    .any(|name| predicted.contains(&format!("({name})"))),
            "{predicted}"
        );
    }

    // Test vectors: the raw test clips with the outputs the host computed, which the front end
    // and the network reproduce from the clip alone.
    for model_path in [&int8, &f32] {
        let vectors_path = out.join("vectors.tctv");
        let written = ok(host()
            .args(["fixture", "--overwrite", "--count", "5", "--model"])
            .arg(model_path)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&vectors_path)
            .output()
            .unwrap());
        assert!(written.contains("5 test vectors ("), "{written}");
        let bytes = std::fs::read(model_path).unwrap();
        let model = tinycnn::Model::from_bytes(&bytes).unwrap();
        let file = std::fs::read(&vectors_path).unwrap();
        let vectors = tinycnn::testvec::TestVectors::from_bytes(&file).unwrap();
        assert!(vectors.holds_clips());
        assert_eq!(vectors.len(), 5);
        let config = model.front_end().unwrap();
        let mut tables = vec![0; config.table_len()];
        let front_end = tinycnn::audio::FrontEnd::new(&config, &mut tables).unwrap();
        let mut work = vec![0; config.work_len()];
        for vector in vectors.iter() {
            let clip: Vec<i16> = vector.samples().collect();
            assert_eq!(
                clip.len(),
                15_840,
                "49 frames of a 480-sample window every 320"
            );
            let mut features = vec![0i8; config.clip_features_len(clip.len())];
            front_end
                .clip_features(&clip, &mut features, &mut work)
                .unwrap();
            match &model {
                tinycnn::Model::Int8(m) => {
                    vectors.check_model(m).unwrap();
                    let mut scratch = vec![0i8; m.scratch_bytes()];
                    let backend = tinycnn::kernels::int8::Backend::Portable;
                    let p = m
                        .run_quantized(backend, &features, &mut scratch, |_| {})
                        .unwrap();
                    assert!(vector.matches(p.logits));
                }
                tinycnn::Model::F32(m) => {
                    vectors.check_f32_model(m).unwrap();
                    let values: Vec<f32> = features
                        .iter()
                        .map(|&q| config.output_scale * f32::from(q))
                        .collect();
                    let mut scratch = vec![0f32; m.scratch_len()];
                    let p = m.run_values(&values, &mut scratch, |_| {}).unwrap();
                    assert!(vector.matches_f32(p.logits));
                }
            }
        }
    }

    // Noise is drawn from the seed, clip by clip: two epochs in one run equal one epoch and
    // a resumed second.
    let train = |out: &Path, extra: &[&str]| {
        ok(host()
            .arg("train")
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(out)
            .args(["--arch", "conv3x3:4:s2:bn gap dense:12", "--quiet"])
            .args(extra)
            .output()
            .unwrap())
    };
    let (straight, resumed) = (dir.path().join("straight"), dir.path().join("resumed"));
    train(&straight, &["--epochs", "2"]);
    train(&resumed, &["--epochs", "1"]);
    ok(host()
        .args(["train", "--resume", "--epochs", "2", "--quiet", "--out"])
        .arg(&resumed)
        .output()
        .unwrap());
    assert_eq!(
        std::fs::read(straight.join("model-f32.tcnn")).unwrap(),
        std::fs::read(resumed.join("model-f32.tcnn")).unwrap()
    );

    // --fft-bits 32: MLPerf's front end with the 32-bit FFT, written as version 5, and computed
    // again by a resumed run, which refuses another FFT.
    let bits32 = dir.path().join("bits32");
    train(&bits32, &["--epochs", "1", "--fft-bits", "32"]);
    refused(
        host()
            .args([
                "train",
                "--resume",
                "--epochs",
                "2",
                "--quiet",
                "--fft-bits",
                "16",
            ])
            .arg("--out")
            .arg(&bits32)
            .output()
            .unwrap(),
        "--fft-bits 16 differs from the checkpoint's 32",
    );
    ok(host()
        .args(["train", "--resume", "--epochs", "2", "--quiet", "--out"])
        .arg(&bits32)
        .output()
        .unwrap());
    for model in ["model-int8.tcnn", "model-f32.tcnn"] {
        let bytes = std::fs::read(bits32.join(model)).unwrap();
        assert_eq!(&bytes[4..6], &[5, 0], "format version 5");
        assert_eq!(
            tinycnn::Model::from_bytes(&bytes).unwrap().front_end(),
            Some(tinycnn::audio::FrontEndConfig::MLPERF_KWS)
        );
    }
    let inspected = ok(host()
        .arg("inspect")
        .arg(bits32.join("model-int8.tcnn"))
        .output()
        .unwrap());
    assert!(inspected.contains("FFT 512 (32-bit)"), "{inspected}");
    // Only 16 and 32.
    refused(
        host()
            .args(["train", "--fft-bits", "8", "--out"])
            .arg(dir.path().join("bits8"))
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap(),
        "[possible values: 16, 32]",
    );

    // A clip the front end cannot take is named, with what is wrong.
    let stereo = dir.path().join("stereo.wav");
    write_wav(&stereo, spec(2, 16_000), &[0; 200]);
    refused(
        host()
            .args(["predict", "--model"])
            .arg(&int8)
            .arg(&stereo)
            .output()
            .unwrap(),
        "stereo.wav: 2 channels",
    );
    let slow = data.join("no").join("slow_nohash_0.wav");
    write_wav(&slow, spec(1, 8_000), &[0; 8_000]);
    refused(
        host()
            .arg("data")
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap(),
        "slow_nohash_0.wav: 8000 Hz",
    );
}
