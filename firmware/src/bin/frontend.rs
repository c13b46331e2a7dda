//! Proves on the device that the audio front end computes the desktop's
//! bytes, and measures what it costs: the embedded clip (`build.rs`:
//! `data/audio/yes.wav` or `TINYCNN_CLIP`) arrives as a microphone would
//! deliver it, one hop of 20 ms at a time; each hop that completes a 30 ms
//! window gives one new row of MFCCs, which must equal, byte for byte, the
//! row the core computed for the same clip on the build machine. Exits 0 if
//! every feature matches, 2 otherwise. Logs the instructions (QEMU) or cycles
//! (board) of building the tables once and of each hop, and what one second
//! of audio costs.

#![no_std]
#![no_main]

use tinycnn::audio::{FrontEnd, FrontEndConfig};
use tinycnn_firmware::{self as firmware, ExitCode};

/// The configurations the expected features were computed with (`build.rs`),
/// the 16-bit FFT first; they differ only in the FFT's arithmetic.
const CONFIGS: [FrontEndConfig; 2] = [FrontEndConfig::MLPERF_KWS_INT16, FrontEndConfig::MLPERF_KWS];
const CONFIG: FrontEndConfig = CONFIGS[0];
/// Words of tables and work the larger configuration needs.
const TABLES: usize = max(CONFIGS[0].table_len(), CONFIGS[1].table_len());
const WORK: usize = max(CONFIGS[0].work_len(), CONFIGS[1].work_len());
const WINDOW: usize = CONFIG.window_samples as usize;
const HOP: usize = CONFIG.hop_samples as usize;
const FEATURES: usize = CONFIG.features_per_frame();
/// The samples kept: whole hops, enough for a window. Frames start every
/// hop from the clip's first sample, so the newest frame is complete only
/// once the hop after its end has begun: with 30 ms windows every 20 ms, the
/// frame ending 10 ms into the newest hop. The oldest `WINDOW` samples of the
/// ring are that frame.
const RING: usize = WINDOW.div_ceil(HOP) * HOP;
/// Hops in one second of audio.
const HOPS_PER_SECOND: u32 = CONFIG.sample_rate_hz / CONFIG.hop_samples as u32;

/// The clip's samples, i16 little-endian.
static CLIP: &[u8] = firmware::include_bytes_aligned!(2, concat!(env!("OUT_DIR"), "/clip.pcm"));
/// The features the build machine's core computed for them, frame after
/// frame, for each of `CONFIGS`.
static EXPECTED: [&[u8]; 2] = [
    include_bytes!(concat!(env!("OUT_DIR"), "/clip16.features")),
    include_bytes!(concat!(env!("OUT_DIR"), "/clip.features")),
];

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// What the front end keeps: its tables, its work area, and the last hops
/// of samples (the microphone's ring).
struct State {
    tables: [i32; TABLES],
    work: [i32; WORK],
    ring: [i16; RING],
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let board = firmware::init();
    let counter = &board.counter;
    let Some(state) = cortex_m::singleton!(: State = State {
        tables: [0; TABLES],
        work: [0; WORK],
        ring: [0; RING],
    }) else {
        defmt::panic!("state taken twice")
    };
    let State { tables, work, ring } = state;

    let mut ok = true;
    for (config, expected) in CONFIGS.iter().zip(EXPECTED) {
        ok &= stream(config, expected, tables, work, ring, counter);
    }
    if !ok {
        firmware::exit(ExitCode::Mismatch);
    }
    firmware::exit(ExitCode::Success)
}

/// Streams the clip through the front end of `config` hop by hop, checks
/// every row against `expected` and, with the DSP kernels, the DSP path
/// against the portable one; logs what a second of audio costs.
fn stream(
    config: &FrontEndConfig,
    expected_features: &[u8],
    tables: &mut [i32],
    work: &mut [i32],
    ring: &mut [i16; RING],
    counter: &firmware::Counter,
) -> bool {
    let bits = config.fft_arithmetic.bits();
    let (front_end, table_counts) = counter.measure(|| FrontEnd::new(config, tables));
    let front_end = match front_end {
        Ok(front_end) => front_end,
        Err(error) => {
            defmt::error!(
                "the front end's configuration: {}",
                defmt::Debug2Format(&error)
            );
            return false;
        }
    };
    defmt::info!(
        "front end, {=u8}-bit FFT: MLPerf Tiny's MFCCs ({=usize} x {=usize} per second), tables of {=usize} B built in {=u32} counts, work {=usize} B",
        bits,
        config.frames_per_clip(config.sample_rate_hz as usize),
        FEATURES,
        config.table_len() * 4,
        table_counts,
        config.work_len() * 4
    );

    let samples = CLIP.len() / 2;
    let (mut received, mut frames, mut mismatches) = (0usize, 0usize, 0u32);
    let (mut total, mut fewest, mut most) = (0u32, u32::MAX, 0u32);
    let mut row = [0i8; FEATURES];
    let mut hops = 0u32;
    while received + HOP <= samples {
        let (result, counts) = counter.measure(|| {
            // The hop arrives: the ring slides by a hop and takes it in.
            ring.copy_within(HOP.., 0);
            let hop = CLIP.get(2 * received..2 * (received + HOP)).unwrap_or(&[]);
            for (slot, bytes) in ring[RING - HOP..].iter_mut().zip(hop.as_chunks::<2>().0) {
                *slot = i16::from_le_bytes(*bytes);
            }
            if received + HOP >= RING {
                front_end
                    .frame_features(&ring[..WINDOW], &mut row, work)
                    .map(|()| true)
            } else {
                Ok(false)
            }
        });
        received += HOP;
        hops += 1;
        total = total.wrapping_add(counts);
        fewest = fewest.min(counts);
        most = most.max(counts);
        match result {
            Ok(true) => {
                let expected = expected_features.get(frames * FEATURES..(frames + 1) * FEATURES);
                let equal = expected
                    .is_some_and(|expected| expected.iter().zip(&row).all(|(&e, &r)| e == r as u8));
                if !equal {
                    mismatches += 1;
                    defmt::error!(
                        "frame {=usize}: features {} differ from the host's",
                        frames,
                        row
                    );
                }
                frames += 1;
            }
            Ok(false) => {}
            Err(error) => {
                defmt::error!("frame {=usize}: {}", frames, defmt::Debug2Format(&error));
                return false;
            }
        }
    }
    defmt::info!(
        "front end, {=u8}-bit FFT: {=u32} hops of {=usize} samples, {=usize} frames; per hop {=u32} to {=u32} counts, {=u32} per second of audio ({=u32} hops)",
        bits,
        hops,
        HOP,
        frames,
        fewest,
        most,
        per_second(total, hops),
        HOPS_PER_SECOND
    );
    if bits == 16 {
        firmware::memory::log(&firmware::memory::report());
    }
    // After the memory report: the check's buffers are not the front end's.
    #[cfg(feature = "dsp")]
    if !dsp_equals_portable(&front_end, counter, samples) {
        return false;
    }
    if mismatches > 0 || frames * FEATURES != expected_features.len() {
        defmt::error!(
            "{=u32} of {=usize} frames differ from the host's ({=usize} expected)",
            mismatches,
            frames,
            expected_features.len() / FEATURES
        );
        return false;
    }
    defmt::info!(
        "{=u8}-bit FFT: all {=usize} features of {=usize} frames equal the host's",
        bits,
        expected_features.len(),
        frames
    );
    true
}

/// `total` counts over `hops` hops, scaled to one second of audio.
fn per_second(total: u32, hops: u32) -> u32 {
    if hops == 0 {
        return 0;
    }
    (u64::from(total) * u64::from(HOPS_PER_SECOND) / u64::from(hops)) as u32
}

/// Runs every frame of the clip and frames that stress the block exponent
/// (full scale, clicks, one-LSB values, noise at every level) through the
/// DSP path and the portable one: the bytes and the whole work buffer (every
/// FFT point and log energy) must be equal. Logs what each path costs per
/// second of audio.
#[cfg(feature = "dsp")]
#[inline(never)]
fn dsp_equals_portable(
    front_end: &FrontEnd<'_>,
    counter: &firmware::Counter,
    samples: usize,
) -> bool {
    let sample = |index: usize| i16::from_le_bytes([CLIP[2 * index], CLIP[2 * index + 1]]);
    let mut dsp_work = [0i32; WORK];
    let mut portable_work = [0i32; WORK];
    let mut frame = [0i16; WINDOW];
    let (mut dsp_counts, mut portable_counts, mut clip_frames) = (0u32, 0u32, 0u32);
    let (mut checked, mut differ) = (0u32, 0u32);
    let mut seed = 0x2545_f491u32;
    let clip_count = CONFIG.frames_per_clip(samples);
    let extremes = 8 + 4 * 6;
    let noisy = 16 * 4;
    for case in 0..clip_count + extremes + noisy {
        if case < clip_count {
            for (n, x) in frame.iter_mut().enumerate() {
                *x = sample(case * HOP + n);
            }
        } else if case < clip_count + extremes {
            let index = case - clip_count;
            for (n, x) in frame.iter_mut().enumerate() {
                *x = match index {
                    0 => i16::MIN,
                    1 => i16::MAX,
                    2 => [i16::MIN, i16::MAX][n % 2],
                    3 => [i16::MIN, i16::MAX][n / 2 % 2],
                    4 => 1,
                    5 => -1,
                    6 => 0,
                    7 => [i16::MAX, i16::MIN][n / 37 % 2],
                    _ => {
                        let value = [i16::MIN, i16::MAX, -16_384, 16_383, 1, -1][(index - 8) / 4];
                        let position = [0, 1, WINDOW / 2, WINDOW - 1][(index - 8) % 4];
                        if n == position { value } else { 0 }
                    }
                };
            }
        } else {
            let shift = ((case - clip_count - extremes) % 16) as u32;
            for x in frame.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *x = (seed as i16) >> shift;
            }
        }
        let (mut dsp_out, mut portable_out) = ([0i8; FEATURES], [0i8; FEATURES]);
        let (dsp, dsp_cost) =
            counter.measure(|| front_end.frame_features(&frame, &mut dsp_out, &mut dsp_work));
        let (portable, portable_cost) = counter.measure(|| {
            front_end.frame_features_portable(&frame, &mut portable_out, &mut portable_work)
        });
        if case < clip_count {
            dsp_counts = dsp_counts.wrapping_add(dsp_cost);
            portable_counts = portable_counts.wrapping_add(portable_cost);
            clip_frames += 1;
        }
        checked += 1;
        if dsp.is_err() || portable.is_err() || dsp_out != portable_out || dsp_work != portable_work
        {
            differ += 1;
            let word = dsp_work
                .iter()
                .zip(&portable_work)
                .position(|(a, b)| a != b);
            defmt::error!(
                "frame {=usize}: DSP path {} (work differs at {}), portable {}",
                case,
                dsp_out,
                word,
                portable_out
            );
        }
    }
    let per_second = |total: u32| {
        if clip_frames == 0 {
            0
        } else {
            (u64::from(total) * u64::from(HOPS_PER_SECOND) / u64::from(clip_frames)) as u32
        }
    };
    defmt::info!(
        "front end: DSP path {=u32}, portable path {=u32} counts per second of audio (the frames alone); {=u32} frames, {=u32} differ",
        per_second(dsp_counts),
        per_second(portable_counts),
        checked,
        differ
    );
    differ == 0
}
