//! Keyword spotting on the device, raw samples in, word out: the embedded
//! test clips (`host fixture` on a model with an audio front end) play back
//! to back as one stream from a microphone, one hop of 20 ms at a time. Each
//! hop that completes a window gives one new row of features from the front
//! end the model file describes; every `INFERENCE_HOPS` hops (200 ms) the
//! network classifies the last second of rows. Where the second is exactly a
//! test clip, its logits must equal, byte for byte, those the host's core
//! computed for the clip. Logs what a second of audio costs (front end and
//! network), and the RAM at peak; exits 0 only if every clip matched.

#![no_std]
#![no_main]

use tinycnn::audio::FrontEnd;
use tinycnn::kernels::int8::Backend;
use tinycnn_firmware::{self as firmware, ExitCode};

mod front_end {
    include!(concat!(env!("OUT_DIR"), "/front_end.rs"));
}
use front_end::{HOP_SAMPLES, INPUT_FEATURES, TABLE_WORDS, TABLES, WINDOW_SAMPLES, WORK_WORDS};

/// Samples in a hop, never 0: a model without a front end (`HOP_SAMPLES` 0) stops the binary
/// before the first hop, and the divisions by it stay defined.
const HOP: usize = if HOP_SAMPLES == 0 { 1 } else { HOP_SAMPLES };
/// Hops between two classifications: 200 ms at 20 ms hops.
const INFERENCE_HOPS: usize = 10;
/// The samples kept: whole hops, enough for a window. A frame starts at every
/// hop, so the newest frame is complete once the hop after its end has
/// begun; the oldest `WINDOW_SAMPLES` of the ring are that frame.
const RING: usize = WINDOW_SAMPLES.div_ceil(HOP) * HOP_SAMPLES;

/// Each test clip's features as the build machine's core computed them
/// (`build.rs`), clip after clip: the rows the stream holds when a clip
/// completes must equal them, byte for byte.
static CLIP_FEATURES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/clip_features.bin"));

/// What the stream keeps between hops: the front end's work area, the
/// microphone's ring of samples, and the last second of features. The
/// front end's tables are in flash (`TABLES`, computed by `build.rs`).
struct State {
    work: [i32; WORK_WORDS],
    ring: [i16; RING],
    features: [i8; INPUT_FEATURES],
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let board = firmware::init();
    let counter = &board.counter;
    let model = firmware::load_model();
    let Some(config) = model.front_end() else {
        defmt::error!(
            "the model has no audio front end: build with TINYCNN_MODEL set to a keyword model \
             (model file version 5 or 6, written by `host train` on WAV clips)"
        );
        firmware::exit(ExitCode::BadBlob)
    };
    let vectors = firmware::load_test_vectors(&model);
    if !vectors.holds_clips() {
        defmt::error!("the test vectors hold pictures, not clips: write them with `host fixture`");
        firmware::exit(ExitCode::BadBlob)
    }
    let input = model.input_shape();
    let (frames, features_per_frame) = (input.height, input.width * input.channels);
    let input_len = frames * features_per_frame;
    if config.table_len() != TABLE_WORDS
        || config.work_len() != WORK_WORDS
        || features_per_frame != config.features_per_frame()
        || input_len != INPUT_FEATURES
    {
        defmt::error!(
            "the model's front end or input ({=usize}x{=usize}) is not the one this firmware was \
             built for",
            frames,
            features_per_frame
        );
        firmware::exit(ExitCode::BadBlob)
    }
    let Some(state) = cortex_m::singleton!(: State = State {
        work: [0; WORK_WORDS],
        ring: [0; RING],
        features: [0; INPUT_FEATURES],
    }) else {
        defmt::panic!("state taken twice")
    };
    let State {
        work,
        ring,
        features,
    } = state;
    let scratch = firmware::scratch();
    let backend = Backend::FASTEST;
    // The tables are checked word by word against the configuration, so
    // that a model whose front end differs from the one built in is refused.
    let (front_end, table_counts) = counter.measure(|| FrontEnd::with_tables(&config, &TABLES));
    let front_end = match front_end {
        Ok(front_end) => front_end,
        Err(error) => {
            defmt::error!("the model's front end: {}", defmt::Debug2Format(&error));
            firmware::exit(ExitCode::BadBlob)
        }
    };
    let ring_hops = RING / HOP;
    // Each clip takes whole hops, and enough of them that its last frame
    // completes inside it, so that clips start on hop boundaries and the
    // classification at its last frame sees exactly its frames.
    let clip_samples = vectors.iter().next().map_or(0, |v| v.image.len() / 2);
    let hops_per_clip = clip_samples.div_ceil(HOP).max(frames + ring_hops - 1);
    defmt::info!(
        "keyword model: {=usize} B, {=usize} classes, input {=usize}x{=usize} features of a \
         {=u32} Hz front end, tables of {=usize} B in flash checked in {=u32} counts, work {=usize} B; \
         {=usize} clips of {=usize} samples; {=usize} B of scratch, {=str} kernels; a \
         classification every {=usize} hops",
        firmware::MODEL.len(),
        model.architecture().classes(),
        frames,
        features_per_frame,
        config.sample_rate_hz,
        TABLE_WORDS * 4,
        table_counts,
        WORK_WORDS * 4,
        vectors.len(),
        clip_samples,
        firmware::SCRATCH_BYTES,
        backend.name(),
        INFERENCE_HOPS
    );

    let class_names = model.class_names();
    let (mut front_end_counts, mut network_counts) = (0u64, 0u64);
    let (mut hops, mut frames_seen, mut classifications) = (0usize, 0usize, 0u32);
    let (mut clips_checked, mut mismatches) = (0usize, 0usize);
    for (clip_index, vector) in vectors.iter().enumerate() {
        let mut samples = vector.samples();
        for hop_in_clip in 0..hops_per_clip {
            // The hop arrives (zeros past the clip's end): the ring slides by
            // a hop and takes it in.
            let (frame, counts) = counter.measure(|| {
                ring.copy_within(HOP_SAMPLES.., 0);
                for slot in &mut ring[RING - HOP_SAMPLES..] {
                    *slot = samples.next().unwrap_or(0);
                }
                if hops + 1 < ring_hops {
                    // The stream's first hops: no whole window yet.
                    return Ok(false);
                }
                features.copy_within(features_per_frame.., 0);
                front_end
                    .frame_features(
                        &ring[..WINDOW_SAMPLES],
                        &mut features[input_len - features_per_frame..],
                        work,
                    )
                    .map(|()| true)
            });
            front_end_counts += u64::from(counts);
            hops += 1;
            match frame {
                Ok(true) => frames_seen += 1,
                Ok(false) => {}
                Err(error) => {
                    defmt::error!("front end: {}", defmt::Debug2Format(&error));
                    firmware::exit(ExitCode::Mismatch)
                }
            }
            let clip_complete = hop_in_clip + 1 == frames + ring_hops - 1;
            if hops % INFERENCE_HOPS != 0 && !clip_complete {
                continue;
            }
            let (prediction, counts) =
                counter.measure(|| model.run_quantized(backend, features, scratch, |_| {}));
            network_counts += u64::from(counts);
            classifications += 1;
            let prediction = match prediction {
                Ok(prediction) => prediction,
                Err(error) => {
                    defmt::error!("cannot classify: {}", error);
                    firmware::exit(ExitCode::BadBlob)
                }
            };
            if !clip_complete {
                continue;
            }
            clips_checked += 1;
            let expected = CLIP_FEATURES.get(clip_index * input_len..(clip_index + 1) * input_len);
            let first_difference = expected.map_or(Some(0), |expected| {
                expected
                    .iter()
                    .zip(features.iter())
                    .position(|(&e, &f)| e != f as u8)
            });
            if let Some(index) = first_difference {
                mismatches += 1;
                defmt::error!(
                    "clip {=usize}: feature {=usize} (frame {=usize}) differs from the host's",
                    clip_index,
                    index,
                    index / features_per_frame
                );
            }
            let injected_fault = cfg!(feature = "wrong-expected") && clip_index == 1;
            if vector.matches(prediction.logits) && !injected_fault {
                defmt::info!(
                    "clip {=usize}: heard {=usize} \"{=str}\" (label {=u16} \"{=str}\"), logits {}, \
                     network {=u32} counts",
                    clip_index,
                    prediction.class,
                    class_names.get(prediction.class).unwrap_or("?"),
                    vector.label,
                    class_names.get(usize::from(vector.label)).unwrap_or("?"),
                    prediction.logits,
                    counts
                );
            } else {
                mismatches += 1;
                defmt::error!(
                    "clip {=usize}: logits {} differ from the host's",
                    clip_index,
                    prediction.logits
                );
            }
        }
    }

    let hops_per_second = (config.sample_rate_hz as usize / HOP).max(1);
    let per_second = |counts: u64| counts * hops_per_second as u64 / hops.max(1) as u64;
    defmt::info!(
        "stream: {=usize} hops ({=usize} ms), {=usize} frames, {=u32} classifications; per second \
         of audio: front end {=u64}, network {=u64} ({=usize} classifications), together {=u64} \
         counts",
        hops,
        hops * HOP_SAMPLES * 1000 / config.sample_rate_hz as usize,
        frames_seen,
        classifications,
        per_second(front_end_counts),
        per_second(network_counts),
        hops_per_second / INFERENCE_HOPS,
        per_second(front_end_counts + network_counts)
    );
    firmware::memory::log(&firmware::memory::report());
    if mismatches > 0 || clips_checked != vectors.len() {
        defmt::error!(
            "{=usize} of {=usize} clips differ from the host's ({=usize} checked)",
            mismatches,
            vectors.len(),
            clips_checked
        );
        firmware::exit(ExitCode::Mismatch)
    }
    defmt::info!(
        "all {=usize} clips' features and logits equal the host's",
        clips_checked
    );
    firmware::exit(ExitCode::Success)
}
