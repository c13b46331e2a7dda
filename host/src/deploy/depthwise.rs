//! Depthwise convolutions for x86-64 with AVX-512 and VNNI: the bytes of the core's
//! [`tinycnn::kernels::general::depthwise`] (TensorFlow Lite Micro's `DEPTHWISE_CONV_2D`), an
//! output row at a time.
//!
//! The input is widened to `i16` with its zero point subtracted, each channel repeated once per
//! output channel it feeds (the depthwise multiplier), into a map padded with zeros wherever a
//! window reads outside the input (a tap there adds nothing, as the portable kernel skips it),
//! its columns split by their phase of the horizontal stride. Then each tap reads one
//! contiguous run of that map for a whole output row: output column `x`, channel `c` of the row
//! is value `x * channels + c` of the run. The kernel takes the row 32 values at a time, two
//! registers of 16 `i32` sums each, and adds each tap with two `vpdpwssd` (16-bit products
//! added in pairs): the first against the tap's weights at the even values of the 32 and zeros
//! at the odd ones, the second the other way round, so that each sum gathers one value's
//! products. The weights are laid out so along a row once per layer ([`PackedDepthwise`]).
//! Requantisation is [`super::requant`]'s, 16 sums at a time, and two bytes interleave back
//! into the row's order.
//!
//! Every function with intrinsics is compiled for "avx512f,avx512bw,avx512vl,avx512vnni";
//! calling them is sound only on a processor that has them all, which `Isa::Avx512`
//! guarantees.

use std::arch::x86_64::*;

use tinycnn::kernels::general::WindowGeometry;
use tinycnn::kernels::int8::Requantization;

use super::requant::{self, Bounds, LANES, Lanes};

/// Values of a row the kernel takes at once: two registers of sums.
const CHUNK: usize = 2 * LANES;

/// The shapes of a depthwise convolution's work: the padded rows and columns the windows read,
/// the columns of one phase of the stride, the values of an output row, and that row rounded
/// up to whole chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    rows: usize,
    phase_columns: usize,
    row: usize,
    chunks: usize,
}

impl Shape {
    fn of(geometry: &WindowGeometry) -> Self {
        let out = geometry.output;
        let columns = (out.width - 1) * geometry.stride_width + geometry.kernel_width;
        let row = out.width * out.channels;
        Shape {
            rows: (out.height - 1) * geometry.stride_height + geometry.kernel_height,
            phase_columns: columns.div_ceil(geometry.stride_width),
            row,
            chunks: row.div_ceil(CHUNK),
        }
    }

    /// Values of one padded row: every phase of it.
    fn padded_row(&self, geometry: &WindowGeometry) -> usize {
        geometry.stride_width * self.phase_columns * geometry.output.channels
    }
}

/// A depthwise convolution's weights along an output row: per tap, per chunk of the row, the
/// chunk's 32 weights at its even values (zeros at the odd ones), then at its odd values.
#[derive(Debug)]
pub(super) struct PackedDepthwise {
    geometry: WindowGeometry,
    weights: Vec<i16>,
}

impl PackedDepthwise {
    /// Whether these weights serve `geometry`: they are laid out along an output row, so the
    /// kernel, the channels and the output's width must be those they were packed for; the
    /// map's height, its padding and the stride may differ (the core runs a layer in bands of
    /// output rows, each call with its own geometry, and the host keeps one packing per layer).
    fn serves(&self, geometry: &WindowGeometry) -> bool {
        let packed = &self.geometry;
        packed.kernel_height == geometry.kernel_height
            && packed.kernel_width == geometry.kernel_width
            && packed.input.channels == geometry.input.channels
            && packed.output.channels == geometry.output.channels
            && packed.output.width == geometry.output.width
    }

    /// Packs `weights` (TensorFlow Lite's `[ky][kx][output channel]`), `None` if they do not
    /// fit `geometry`.
    pub(super) fn new(geometry: &WindowGeometry, weights: &[u8]) -> Option<Self> {
        let shape = Shape::of(geometry);
        let outputs = geometry.output.channels;
        let taps = geometry.kernel_height * geometry.kernel_width;
        if weights.len() != taps * outputs {
            return None;
        }
        let mut packed = vec![0i16; taps * shape.chunks * 2 * CHUNK];
        for (tap_weights, packed) in weights
            .chunks_exact(outputs)
            .zip(packed.chunks_exact_mut(shape.chunks * 2 * CHUNK))
        {
            for (chunk, packed) in packed.chunks_exact_mut(2 * CHUNK).enumerate() {
                let (even, odd) = packed.split_at_mut(CHUNK);
                for value in 0..CHUNK {
                    let at = chunk * CHUNK + value;
                    if at >= shape.row {
                        break;
                    }
                    let w = i16::from(tap_weights[at % outputs] as i8);
                    if value % 2 == 0 {
                        even[value] = w;
                    } else {
                        odd[value] = w;
                    }
                }
            }
        }
        Some(PackedDepthwise {
            geometry: *geometry,
            weights: packed,
        })
    }
}

/// Per-call buffers: the padded input, the requantisation constants of each chunk's even and
/// odd values (for one period of the channels' pattern along a row), the layer's constants
/// and where each tap's run starts.
#[derive(Debug, Default)]
pub(super) struct Work {
    padded: Vec<i16>,
    lanes: Vec<Lanes>,
    constants: Vec<tinycnn::kernels::int8::ChannelRequant>,
    starts: Vec<usize>,
}

/// [`tinycnn::kernels::general::depthwise`], bit for bit, with `packed` made from the same
/// layer. `None` (nothing useful written) if the slices do not fit the geometry.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn depthwise_int8(
    packed: &PackedDepthwise,
    work: &mut Work,
    input: &[i8],
    geometry: &WindowGeometry,
    requantization: &Requantization<'_>,
    output: &mut [i8],
) -> Option<()> {
    let (channels, outputs) = (geometry.input.channels, geometry.output.channels);
    let fits = packed.serves(geometry)
        && geometry.is_consistent()
        && input.len() == geometry.input.values()
        && output.len() == geometry.output.values()
        && outputs % channels == 0
        && requantization.outputs() == outputs
        && requantization.rounding() == tinycnn::quant::Rounding::Double;
    if !fits {
        return None;
    }
    let shape = Shape::of(geometry);
    pad(&mut work.padded, input, geometry, &shape, requantization);
    // Where each tap's run starts in a padded row.
    let (padded_row, phase_len) = (shape.padded_row(geometry), shape.phase_columns * outputs);
    let stride = geometry.stride_width;
    work.starts.clear();
    work.starts
        .extend((0..geometry.kernel_height).flat_map(|ky| {
            (0..geometry.kernel_width).map(move |kx| {
                ky * padded_row + (kx % stride) * phase_len + (kx / stride) * outputs
            })
        }));
    let fast = requant_chunks(work, geometry, &shape, requantization);
    let bounds = Bounds::of(requantization);
    if fast {
        rows::<true>(packed, work, geometry, &shape, &bounds, output)
    } else {
        rows::<false>(packed, work, geometry, &shape, &bounds, output)
    }
}

/// The padded, widened, phase-split input: padded column `c` of padded row `r` at
/// `r * padded_row + (c % stride) * phase_len + (c / stride) * outputs`, with a chunk of slack
/// after the last row (the last chunk of a row may read past the row's values; those sums are
/// not stored).
fn pad(
    padded: &mut Vec<i16>,
    input: &[i8],
    geometry: &WindowGeometry,
    shape: &Shape,
    requantization: &Requantization<'_>,
) {
    let (channels, outputs) = (geometry.input.channels, geometry.output.channels);
    let multiplier = outputs / channels;
    let stride = geometry.stride_width;
    let padded_row = shape.padded_row(geometry);
    let phase_len = shape.phase_columns * outputs;
    padded.clear();
    padded.resize(shape.rows * padded_row + shape.chunks * CHUNK, 0);
    let zero_point = requantization.input_zero_point();
    let widen = |x: i8| (i32::from(x) - zero_point) as i16;
    let columns = geometry
        .input
        .width
        .min(stride * shape.phase_columns - geometry.pad_left);
    for (y, input_row) in input
        .chunks_exact(geometry.input.width * channels)
        .enumerate()
    {
        let r = y + geometry.pad_top;
        if r >= shape.rows {
            break;
        }
        let row = &mut padded[r * padded_row..(r + 1) * padded_row];
        if stride == 1 && multiplier == 1 {
            let start = geometry.pad_left * outputs;
            let values = &input_row[..columns * channels];
            for (slot, &x) in row[start..start + values.len()].iter_mut().zip(values) {
                *slot = widen(x);
            }
            continue;
        }
        for (x, pixel) in input_row.chunks_exact(channels).take(columns).enumerate() {
            let c = x + geometry.pad_left;
            let at = (c % stride) * phase_len + (c / stride) * outputs;
            let slot = &mut row[at..at + outputs];
            if multiplier == 1 {
                for (slot, &x) in slot.iter_mut().zip(pixel) {
                    *slot = widen(x);
                }
            } else {
                for (repeats, &x) in slot.chunks_exact_mut(multiplier).zip(pixel) {
                    repeats.fill(widen(x));
                }
            }
        }
    }
}

/// The requantisation constants of the chunks of a row, its even values', then its odd
/// values', for as many chunks as the channels take to repeat their pattern (chunk `c` has
/// those of chunk `c % period`). Returns whether the fast form applies to the layer.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn requant_chunks(
    work: &mut Work,
    geometry: &WindowGeometry,
    shape: &Shape,
    requantization: &Requantization<'_>,
) -> bool {
    let outputs = geometry.output.channels;
    let constants = &mut work.constants;
    constants.clear();
    constants.extend(requantization.channels());
    work.lanes.clear();
    for chunk in 0..period(outputs).min(shape.chunks) {
        for parity in 0..2 {
            // Value `chunk * CHUNK + 2 * lane + parity` of the row is output channel that
            // modulo `outputs`; values past the row take any constants (they are not stored).
            // Counted up two at a time rather than divided: a division per lane costs more
            // than the rest of the constants.
            let mut channel = (chunk * CHUNK + parity) % outputs;
            let channels = (0..LANES).map(|_| {
                let this = constants[channel];
                channel += 2;
                while channel >= outputs {
                    channel -= outputs;
                }
                this
            });
            work.lanes
                .push(Lanes::of_channels(channels, std::iter::repeat(0)));
        }
    }
    let bound = requant::accumulator_bound(geometry.kernel_height * geometry.kernel_width);
    work.lanes.iter().all(|lanes| lanes.fast_applies(bound))
}

/// Chunks after which the output channels along a row repeat: `lcm(outputs, CHUNK) / CHUNK`.
fn period(outputs: usize) -> usize {
    let (mut a, mut b) = (outputs, CHUNK);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    outputs / a.max(1)
}

/// Chunks of a row taken together: each adds its taps into its own two registers, so that
/// eight chains of additions run side by side (one `vpdpwssd` waits for the previous one).
const GROUP: usize = 4;

/// What every chunk of a call reads.
struct Call<'a> {
    padded: &'a [i16],
    weights: &'a [i16],
    starts: &'a [usize],
    lanes: &'a [Lanes],
    /// Values of the packed weights per tap.
    tap_len: usize,
    /// Chunks after which the constants repeat.
    period: usize,
    /// Values of an output row.
    row: usize,
    bounds: Bounds,
}

/// Every output row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows<const FAST: bool>(
    packed: &PackedDepthwise,
    work: &Work,
    geometry: &WindowGeometry,
    shape: &Shape,
    bounds: &Bounds,
    output: &mut [i8],
) -> Option<()> {
    let outputs = geometry.output.channels;
    let padded_row = shape.padded_row(geometry);
    let taps = geometry.kernel_height * geometry.kernel_width;
    let tap_len = shape.chunks * 2 * CHUNK;
    let period = period(outputs);
    let call = Call {
        padded: &work.padded,
        weights: &packed.weights,
        starts: &work.starts,
        lanes: &work.lanes,
        tap_len,
        period,
        row: shape.row,
        bounds: *bounds,
    };
    // Every read below stays inside these: the last row's runs end within the slack.
    let last_start = call.starts.iter().copied().max()?;
    let last_row = (geometry.output.height - 1) * geometry.stride_height;
    if last_row * padded_row + last_start + shape.chunks * CHUNK > call.padded.len()
        || call.weights.len() != taps * tap_len
        || call.lanes.len() != 2 * period.min(shape.chunks)
        || call.starts.len() != taps
    {
        return None;
    }
    for (out_y, out_row) in output.chunks_exact_mut(shape.row).enumerate() {
        let base = out_y * geometry.stride_height * padded_row;
        // The chunk and its place in the constants' period.
        let (mut chunk, mut phase) = (0, 0);
        while chunk + GROUP <= shape.chunks {
            phase = chunks::<GROUP, FAST>(&call, base, chunk, phase, out_row)?;
            chunk += GROUP;
        }
        while chunk < shape.chunks {
            phase = chunks::<1, FAST>(&call, base, chunk, phase, out_row)?;
            chunk += 1;
        }
    }
    Some(())
}

/// `N` chunks of an output row from chunk `first` on (whose place in the constants' period is
/// `phase`), the row's windows starting at `base` of the padded input. Returns the place of
/// the chunk after them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn chunks<const N: usize, const FAST: bool>(
    call: &Call<'_>,
    base: usize,
    first: usize,
    mut phase: usize,
    out_row: &mut [i8],
) -> Option<usize> {
    let mut even = [_mm512_setzero_si512(); N];
    let mut odd = [_mm512_setzero_si512(); N];
    let (padded, weights) = (call.padded.as_ptr(), call.weights.as_ptr());
    for (tap, &start) in call.starts.iter().enumerate() {
        for (n, (even, odd)) in even.iter_mut().zip(&mut odd).enumerate() {
            let chunk = first + n;
            // SAFETY: `rows` checked that the runs of every row's last chunk end inside the
            // padded input (`base + start + chunk * CHUNK + CHUNK <= padded.len()`), and the
            // packed weights hold `2 * CHUNK` values per chunk per tap. Unaligned loads.
            unsafe {
                let x = _mm512_loadu_si512(padded.add(base + start + chunk * CHUNK).cast());
                let w = weights.add(tap * call.tap_len + chunk * 2 * CHUNK);
                *even = _mm512_dpwssd_epi32(*even, x, _mm512_loadu_si512(w.cast()));
                *odd = _mm512_dpwssd_epi32(*odd, x, _mm512_loadu_si512(w.add(CHUNK).cast()));
            }
        }
    }
    for (n, (even, odd)) in even.into_iter().zip(odd).enumerate() {
        let chunk = first + n;
        let even = requant::requantize::<FAST>(even, call.lanes.get(2 * phase)?, &call.bounds);
        let odd = requant::requantize::<FAST>(odd, call.lanes.get(2 * phase + 1)?, &call.bounds);
        let bytes = _mm256_set_m128i(_mm_unpackhi_epi8(even, odd), _mm_unpacklo_epi8(even, odd));
        let at = chunk * CHUNK;
        requant::store_bytes32(out_row, at, CHUNK.min(call.row - at), bytes)?;
        phase += 1;
        if phase == call.period {
            phase = 0;
        }
    }
    Some(phase)
}

#[cfg(test)]
mod tests {
    //! The AVX-512 depthwise convolution against the core's portable one on random layers
    //! (kernels 1..=7 by 1..=7, strides 1 to 3, both paddings, 1 to 70 channels, multipliers 1
    //! and 2, zero points at the extremes, every clamp, ordinary and extreme constants).
    //! Skipped on a processor without AVX-512.

    use super::*;
    use crate::deploy::random_layers::{Constants, rng};
    use proptest::prelude::*;
    use proptest::test_runner::TestRng;
    use tinycnn::arch::Shape as MapShape;
    use tinycnn::kernels::general;

    fn case(seed: u64) {
        let mut rng = rng(seed);
        let channels = [1, 2, 3, 8, 16, 17, 32, 64, 70][rng.random_range(0..9usize)];
        let multiplier = rng.random_range(1..=2usize);
        let kernel = (rng.random_range(1..=7usize), rng.random_range(1..=7usize));
        let stride = (rng.random_range(1..=3usize), rng.random_range(1..=3usize));
        let same = rng.random_bool(0.5);
        let side = |k: usize, rng: &mut TestRng| {
            let smallest = if same { 1 } else { k };
            rng.random_range(smallest..=smallest + 10)
        };
        let input_shape =
            MapShape::new(side(kernel.0, &mut rng), side(kernel.1, &mut rng), channels);
        let outputs = channels * multiplier;
        let geometry = general::WindowGeometry::resolve(
            input_shape,
            kernel.0,
            kernel.1,
            stride.0,
            stride.1,
            same,
            outputs,
        )
        .unwrap();
        let input: Vec<i8> = (0..input_shape.values()).map(|_| rng.random()).collect();
        let weights: Vec<u8> = (0..kernel.0 * kernel.1 * outputs)
            .map(|_| rng.random_range(-127i8..=127) as u8)
            .collect();
        let constants = Constants::draw(&mut rng, outputs);
        let requantization = constants.requantization();
        let mut expected = vec![0i8; geometry.output.values()];
        general::depthwise(&input, &geometry, &weights, &requantization, &mut expected).unwrap();
        let packed = PackedDepthwise::new(&geometry, &weights).unwrap();
        let mut work = Work::default();
        let mut got = vec![0i8; expected.len()];
        // SAFETY: the caller checked the features the kernel is compiled with.
        unsafe {
            depthwise_int8(
                &packed,
                &mut work,
                &input,
                &geometry,
                &requantization,
                &mut got,
            )
        }
        .unwrap();
        assert_eq!(got, expected, "{geometry:?} seed={seed}");
        // Weights packed for a taller map serve this one: the core runs a layer in bands of
        // output rows, each call with its own geometry, and the host keeps one packing.
        let taller = general::WindowGeometry::resolve(
            MapShape::new(input_shape.height + 3, input_shape.width, channels),
            kernel.0,
            kernel.1,
            stride.0,
            stride.1,
            same,
            outputs,
        )
        .unwrap();
        let packed = PackedDepthwise::new(&taller, &weights).unwrap();
        let mut got = vec![0i8; expected.len()];
        // SAFETY: as above.
        unsafe {
            depthwise_int8(
                &packed,
                &mut work,
                &input,
                &geometry,
                &requantization,
                &mut got,
            )
        }
        .unwrap();
        assert_eq!(got, expected, "packed for {taller:?}, seed={seed}");
    }

    #[test]
    fn depthwise_convolutions_give_the_portable_kernels_bytes() {
        if !crate::deploy::kernels::Isa::Avx512.runs_here() {
            eprintln!("this processor lacks AVX-512 with VNNI: the depthwise kernel is not tested");
            return;
        }
        (0..600).for_each(case);
    }
}
