//! Register-blocked convolutions for x86-64 with AVX-512: int8 with VNNI's `vpdpbusd` (four
//! unsigned-by-signed byte products added into each of 16 lanes at once) and f32 with fused
//! multiply-adds. Each call of the inner kernel computes a block of output positions against
//! 32 filters, so that every weight loaded serves several positions and every input value
//! loaded serves 16 filters, with the sums in registers until the block is done.
//!
//! The weights are packed once per layer ([`PackedInt8`], [`PackedF32`]) into the order the
//! kernel reads them: slabs of 16 filters, one filter per lane. The input is copied once per
//! call into a padded map ([`Work`]), so that no position needs a test at the border: the
//! padding holds the input's zero point (int8) or 0 (f32).
//!
//! int8: `vpdpbusd` multiplies unsigned bytes by signed ones, so the kernel reads each
//! activation `x` as `u = x + 128` (a flipped top bit) and subtracts `(zero_point + 128) *
//! sum(weights)` per filter afterwards, which also makes the padding, `u = zero_point + 128`,
//! add nothing. A kernel row's bytes are taken four at a time; where its length is not a
//! multiple of four the last group reads up to three bytes more, against zero weights. The
//! sums are exact: core/FORMAT.md bounds every accumulator below 2^31, and `u * w` is within
//! the same bound. A pooled convolution takes the maximum of its four positions' sums before
//! requantising, which the format allows (the multipliers are non-negative, so requantisation
//! is monotonic). The requantisation is TensorFlow Lite's, lane by lane, with the core's
//! saturation rules ([`tinycnn::quant`]), so the bytes equal the portable kernels'.

use std::arch::x86_64::*;

use tinycnn::arch::{Activation, Shape};
use tinycnn::kernels::general::WindowGeometry;
use tinycnn::kernels::{ConvGeometry, f32 as kf32, int8 as ki8};

use super::requant::{self, Bounds, LANES, Lanes};

/// Slabs the inner kernel takes at once (32 filters).
const SLABS: usize = 2;
/// Positions per block: for a pooled convolution, those of `POSITIONS / 4` pooled outputs.
/// With [`SLABS`], 24 of the 32 vector registers hold sums.
const POSITIONS: usize = 12;
/// Pooled outputs per block.
const POOLED: usize = POSITIONS / 4;
const _: () = assert!(POSITIONS.is_multiple_of(4));

// Every function with intrinsics is compiled for "avx512f,avx512bw,avx512vl,avx512vnni"
// (AVX-512 F, BW and VL with VNNI). Calling them is sound only on a processor that has them
// all, which `Isa::Avx512` guarantees.

/// A convolution as the blocked kernels run it: a square stride-1 one of the tutorial's layers
/// (a [`ConvGeometry`], its 2x2 max-pool fused in or not) or one of any window, stride and
/// padding (a [`WindowGeometry`], never pooled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Blocks {
    input: Shape,
    /// The convolution's output, before any pool.
    output: Shape,
    kernel_height: usize,
    kernel_width: usize,
    stride_height: usize,
    stride_width: usize,
    pad_top: usize,
    pad_left: usize,
    pooled: bool,
}

impl Blocks {
    pub(super) fn of_conv(geometry: &ConvGeometry) -> Self {
        Blocks {
            pooled: geometry.pooled,
            ..Blocks::of_window(&geometry.window_geometry())
        }
    }

    pub(super) fn of_window(geometry: &WindowGeometry) -> Self {
        Blocks {
            input: geometry.input,
            output: geometry.output,
            kernel_height: geometry.kernel_height,
            kernel_width: geometry.kernel_width,
            stride_height: geometry.stride_height,
            stride_width: geometry.stride_width,
            pad_top: geometry.pad_top,
            pad_left: geometry.pad_left,
            pooled: false,
        }
    }

    fn filters(&self) -> usize {
        self.output.channels
    }

    /// Weights per filter.
    fn fan_in(&self) -> usize {
        self.kernel_height * self.kernel_width * self.input.channels
    }

    /// What the kernel writes: the pooled map when pooled.
    fn written(&self) -> Shape {
        if self.pooled {
            Shape::new(
                self.output.height / 2,
                self.output.width / 2,
                self.output.channels,
            )
        } else {
            self.output
        }
    }

    /// Columns of the padded input: the input after its left padding, and every column a
    /// window reads.
    fn padded_width(&self) -> usize {
        (self.input.width + self.pad_left)
            .max((self.output.width - 1) * self.stride_width + self.kernel_width)
    }

    /// Rows of the padded input, likewise.
    fn padded_height(&self) -> usize {
        (self.input.height + self.pad_top)
            .max((self.output.height - 1) * self.stride_height + self.kernel_height)
    }

    /// Whether the shapes are ones the kernels run: no size zero, every window starting
    /// inside the padded input.
    fn is_consistent(&self) -> bool {
        self.input.values() > 0
            && self.output.values() > 0
            && self.kernel_height > 0
            && self.kernel_width > 0
            && self.stride_height > 0
            && self.stride_width > 0
            && (!self.pooled || (self.stride_height == 1 && self.stride_width == 1))
    }
}

/// How the inner kernel walks one position's window in the padded input: `rows` rows,
/// `row_stride` elements apart, each `run` elements long (`kernel_width * channels`).
#[derive(Clone, Copy, Debug)]
struct Walk {
    rows: usize,
    row_stride: usize,
    run: usize,
}

impl Walk {
    /// The walk of `geometry` over its padded input.
    fn of(geometry: &Blocks) -> Self {
        let channels = geometry.input.channels;
        Walk {
            rows: geometry.kernel_height,
            row_stride: geometry.padded_width() * channels,
            run: geometry.kernel_width * channels,
        }
    }

    /// One past the last element a window at `base` reads, reading `step` elements at a time.
    fn end(&self, base: usize, step: usize) -> usize {
        base + (self.rows - 1) * self.row_stride + self.run.div_ceil(step) * step
    }
}

/// Whether weights packed for `packed_for` serve `geometry`: the packing and the blocks read
/// the kernel's rows and columns, the input channels, the filters and the fused pool, not the
/// map's size, its padding or the stride (the core runs a layer in bands of rows, each call
/// with its own geometry, and the host keeps one packing per layer).
fn packs_alike(packed_for: &Blocks, geometry: &Blocks) -> bool {
    packed_for.kernel_height == geometry.kernel_height
        && packed_for.kernel_width == geometry.kernel_width
        && packed_for.input.channels == geometry.input.channels
        && packed_for.filters() == geometry.filters()
        && packed_for.pooled == geometry.pooled
}

/// Per-call buffers: the padded input and the first element of every position's window.
#[derive(Debug, Default)]
pub(super) struct Work<T> {
    padded: Vec<T>,
    bases: Vec<usize>,
}

impl<T: Copy> Work<T> {
    /// Copies `input` (a `height x width x channels` map) into a map padded with `border`
    /// (`geometry.pad_top` rows above, `geometry.pad_left` columns to the left, and as many
    /// below and to the right as the windows read), each value through `convert`, with `slack`
    /// values after it for reads past the last window's end.
    // Inlined into its callers, which are compiled for AVX-512: `convert` is a closure of
    // theirs, which shares their target features and so is inlined only into code that has
    // them (a call per value otherwise).
    #[inline(always)]
    fn pad<S: Copy>(
        &mut self,
        geometry: &Blocks,
        input: &[S],
        border: T,
        convert: impl Fn(S) -> T,
    ) {
        let channels = geometry.input.channels;
        let row = geometry.input.width * channels;
        let padded_row = geometry.padded_width() * channels;
        let slack = 64;
        self.padded.clear();
        self.padded
            .resize(geometry.padded_height() * padded_row + slack, border);
        for (y, source) in input.chunks_exact(row).enumerate() {
            let start = (y + geometry.pad_top) * padded_row + geometry.pad_left * channels;
            for (to, &from) in self.padded[start..start + row].iter_mut().zip(source) {
                *to = convert(from);
            }
        }
    }

    /// The windows' first elements in the padded input, in the order the blocks take them: for
    /// a pooled convolution the four positions of each pooled output, else every position; the
    /// last block is filled up by repeating its last entry (its last four when pooled). Returns
    /// the number of outputs.
    fn positions(&mut self, geometry: &Blocks) -> usize {
        let channels = geometry.input.channels;
        let width = geometry.padded_width();
        let (stride_y, stride_x) = (geometry.stride_height, geometry.stride_width);
        let base = |y: usize, x: usize| (y * stride_y * width + x * stride_x) * channels;
        let out = geometry.written();
        self.bases.clear();
        if geometry.pooled {
            for y in 0..out.height {
                for x in 0..out.width {
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        self.bases.push(base(2 * y + dy, 2 * x + dx));
                    }
                }
            }
        } else {
            for y in 0..out.height {
                for x in 0..out.width {
                    self.bases.push(base(y, x));
                }
            }
        }
        let filled = self.bases.len().div_ceil(POSITIONS) * POSITIONS;
        let repeat = if geometry.pooled { 4 } else { 1 };
        while self.bases.len() < filled {
            let from = self.bases.len() - repeat;
            self.bases.push(self.bases[from]);
        }
        out.height * out.width
    }

    /// Whether every window of every block lies inside the padded input.
    fn windows_inside(&self, walk: &Walk, step: usize) -> bool {
        let last = self.bases.iter().copied().max().unwrap_or(0);
        walk.end(last, step) <= self.padded.len()
    }

    /// Everything a call needs before the blocks: `None` unless the layer's geometry packs its
    /// weights as they were packed ([`packs_alike`]; a layer run in bands of rows calls with
    /// several geometries) and the slices have its lengths; then the padded input
    /// ([`Work::pad`]), the windows ([`Work::positions`], each checked to lie inside it when
    /// read `step` values at a time), the number of outputs and the walk.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn prepare<S: Copy>(
        &mut self,
        geometry: &Blocks,
        packed_for: &Blocks,
        input: &[S],
        output_len: usize,
        border: T,
        convert: impl Fn(S) -> T,
        step: usize,
    ) -> Option<(usize, Walk)> {
        if !packs_alike(packed_for, geometry)
            || !geometry.is_consistent()
            || input.len() != geometry.input.values()
            || output_len != geometry.written().values()
        {
            return None;
        }
        self.pad(geometry, input, border, convert);
        let outputs = self.positions(geometry);
        let walk = Walk::of(geometry);
        self.windows_inside(&walk, step).then_some((outputs, walk))
    }
}

/// The slab groups of a layer with `slabs` slabs, in order: the first slab and how many the
/// group has, [`SLABS`] while that many are left, then one.
fn slab_groups(slabs: usize) -> impl Iterator<Item = (usize, usize)> {
    let full = slabs / SLABS;
    (0..full)
        .map(|group| (group * SLABS, SLABS))
        .chain((full * SLABS..slabs).map(|slab| (slab, 1)))
}

/// Hands each output of block `index` to `finish`: its index, the slab within the group, and
/// the sums of its position, or for a pooled convolution the largest (by `max`) of its four
/// positions' sums. Outputs past `outputs` (the last block's filling) are left out.
#[inline(always)]
fn each_output<V: Copy, const S: usize>(
    sums: &[[V; S]; POSITIONS],
    pooled: bool,
    index: usize,
    outputs: usize,
    max: impl Fn(V, V) -> V,
    mut finish: impl FnMut(usize, usize, V) -> Option<()>,
) -> Option<()> {
    if pooled {
        for (pooled, four) in sums.as_chunks::<4>().0.iter().enumerate() {
            let out_index = index * POOLED + pooled;
            if out_index >= outputs {
                break;
            }
            for s in 0..S {
                let [a, b, c, d] = four.map(|sums| sums[s]);
                finish(out_index, s, max(max(a, b), max(c, d)))?;
            }
        }
    } else {
        for (position, sums) in sums.iter().enumerate() {
            let out_index = index * POSITIONS + position;
            if out_index >= outputs {
                break;
            }
            for (s, &sums) in sums.iter().enumerate() {
                finish(out_index, s, sums)?;
            }
        }
    }
    Some(())
}

/// An int8 convolution's weights in the order of [`conv_int8`]: per slab of 16 filters, per
/// kernel row, per group of four bytes of the row, the 16 filters' four bytes (64 bytes, a
/// register); zero past a row's end and for the filters that fill up the last slab.
#[derive(Debug)]
pub(super) struct PackedInt8 {
    geometry: Blocks,
    groups: usize,
    weights: Vec<u8>,
    /// Each filter's weights added up (zero for the fill-up filters).
    sums: Vec<i32>,
}

impl PackedInt8 {
    /// Packs `layer`'s weights.
    pub(super) fn new(layer: &ki8::ConvLayer<'_>) -> Self {
        Self::for_blocks(Blocks::of_conv(layer.geometry()), layer.filters())
    }

    /// Packs the weights of a convolution of any window (`[filter][ky][kx][channel]`).
    pub(super) fn for_window(geometry: &WindowGeometry, weights: &[u8]) -> Self {
        Self::for_blocks(Blocks::of_window(geometry), weights)
    }

    fn for_blocks(geometry: Blocks, filters: &[u8]) -> Self {
        let walk = Walk::of(&geometry);
        let groups = walk.run.div_ceil(4);
        let slabs = geometry.filters().div_ceil(LANES);
        let slab_bytes = geometry.kernel_height * groups * 4 * LANES;
        let mut weights = vec![0u8; slabs * slab_bytes];
        let mut sums = vec![0i32; slabs * LANES];
        let fan_in = geometry.fan_in().max(1);
        for (filter, own) in filters
            .chunks_exact(fan_in)
            .take(geometry.filters())
            .enumerate()
        {
            let (slab, lane) = (filter / LANES, filter % LANES);
            sums[filter] = own
                .iter()
                .fold(0i32, |sum, &byte| sum.wrapping_add(i32::from(byte as i8)));
            for (ky, row) in own.chunks_exact(walk.run).enumerate() {
                for (j, &byte) in row.iter().enumerate() {
                    let group = ky * groups + j / 4;
                    weights[slab * slab_bytes + group * 4 * LANES + lane * 4 + j % 4] = byte;
                }
            }
        }
        PackedInt8 {
            geometry,
            groups,
            weights,
            sums,
        }
    }

    fn slab_bytes(&self) -> usize {
        self.geometry.kernel_height * self.groups * 4 * LANES
    }
}

/// The `M x S` sums of `M` windows (starting at `bases`) against `S` slabs of `weights`
/// (starting at the first) into `sums` (written in place: returned, the registers would be
/// copied through memory), `None` if a window or a slab is not all inside its slice.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_int8<const M: usize, const S: usize>(
    input: &[u8],
    bases: &[usize; M],
    walk: &Walk,
    groups: usize,
    weights: &[u8],
    sums: &mut [[__m512i; S]; M],
) -> Option<()> {
    let slab_bytes = walk.rows * groups * 4 * LANES;
    let inside = bases.iter().all(|&base| walk.end(base, 4) <= input.len());
    if !inside || S * slab_bytes > weights.len() || walk.run > 4 * groups {
        return None;
    }
    let mut acc = [[_mm512_setzero_si512(); S]; M];
    let mut packed = weights.as_ptr();
    let activations = input.as_ptr();
    for ky in 0..walk.rows {
        let row = ky * walk.row_stride;
        for group in 0..groups {
            let offset = row + 4 * group;
            let mut w = [_mm512_setzero_si512(); S];
            for (s, w) in w.iter_mut().enumerate() {
                // SAFETY: `packed` is `(ky * groups + group) * 64` bytes into the first slab,
                // and `S` slabs fit in `weights`: 64 readable bytes `s` slabs on. Unaligned.
                *w = unsafe { _mm512_loadu_si512(packed.add(s * slab_bytes).cast()) };
            }
            for (sum, &base) in acc.iter_mut().zip(bases) {
                // SAFETY: `base + offset + 4 <= walk.end(base, 4) <= input.len()` (checked
                // above): four readable bytes. Unaligned.
                let word = unsafe {
                    activations
                        .add(base + offset)
                        .cast::<i32>()
                        .read_unaligned()
                };
                let x = _mm512_set1_epi32(word);
                for (sum, &w) in sum.iter_mut().zip(&w) {
                    *sum = _mm512_dpbusd_epi32(*sum, x, w);
                }
            }
            // SAFETY: stays within the first slab (or one past its end after the last group).
            packed = unsafe { packed.add(4 * LANES) };
        }
    }
    *sums = acc;
    Some(())
}

/// The requantisation constants of every slab of `packed`'s layer, and whether the fast form
/// applies to it.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn requant_slabs(
    packed: &PackedInt8,
    requantization: &ki8::Requantization<'_>,
    slabs: &mut Vec<Lanes>,
) -> Option<bool> {
    // The activations were read as `x + 128`: each filter's sum of weights times the zero
    // point's, wrapping as the portable kernel's accumulators do. The lanes that fill up the
    // last slab keep zeros; their results are not stored.
    let offset = _mm512_set1_epi32(requantization.input_zero_point() + 128);
    let filters = packed.geometry.filters();
    slabs.clear();
    for (slab, sums) in packed.sums.chunks_exact(LANES).enumerate() {
        let sums = requant::load_lanes(sums.try_into().ok()?);
        let count = LANES.min(filters - slab * LANES);
        let offsets = _mm512_mullo_epi32(sums, offset);
        slabs.push(Lanes::of_stored(
            requantization,
            slab * LANES,
            count,
            offsets,
        )?);
    }
    let bound = requant::accumulator_bound(packed.geometry.fan_in());
    Some(slabs.iter().all(|lanes| lanes.fast_applies(bound)))
}

/// The layer-wide part of an int8 convolution call.
struct Int8Call<'a> {
    packed: &'a PackedInt8,
    walk: Walk,
    padded: &'a [u8],
    bases: &'a [usize],
    slabs: &'a [Lanes],
    outputs: usize,
    bounds: Bounds,
}

/// [`tinycnn::kernels::int8::conv`], bit for bit, with `packed` made from the same layer.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn conv_int8(
    packed: &PackedInt8,
    work: &mut Work<u8>,
    requant: &mut Vec<Lanes>,
    input: &[i8],
    layer: &ki8::ConvLayer<'_>,
    output: &mut [i8],
) -> Option<()> {
    let geometry = Blocks::of_conv(layer.geometry());
    blocks_int8(
        packed,
        work,
        requant,
        input,
        &geometry,
        layer.requantization(),
        output,
    )
}

/// [`tinycnn::kernels::general::conv`] (a convolution of any window, stride and padding), bit
/// for bit, with `packed` made from the same layer ([`PackedInt8::for_window`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn window_conv_int8(
    packed: &PackedInt8,
    work: &mut Work<u8>,
    requant: &mut Vec<Lanes>,
    input: &[i8],
    geometry: &WindowGeometry,
    requantization: &ki8::Requantization<'_>,
    output: &mut [i8],
) -> Option<()> {
    if !geometry.is_consistent() || requantization.outputs() != geometry.output.channels {
        return None;
    }
    let geometry = Blocks::of_window(geometry);
    blocks_int8(
        packed,
        work,
        requant,
        input,
        &geometry,
        requantization,
        output,
    )
}

/// The convolution of `geometry`, whose weights `packed` holds.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn blocks_int8(
    packed: &PackedInt8,
    work: &mut Work<u8>,
    requant: &mut Vec<Lanes>,
    input: &[i8],
    geometry: &Blocks,
    requantization: &ki8::Requantization<'_>,
    output: &mut [i8],
) -> Option<()> {
    if requantization.rounding() != tinycnn::quant::Rounding::Double
        || requantization.outputs() != packed.geometry.filters()
    {
        return None;
    }
    let border = (requantization.input_zero_point() + 128) as u8;
    // `x as u8 ^ 0x80` is `x + 128`.
    let flip = |x: i8| x as u8 ^ 0x80;
    let packed_for = &packed.geometry;
    let (outputs, walk) =
        work.prepare(geometry, packed_for, input, output.len(), border, flip, 4)?;
    let fast = requant_slabs(packed, requantization, requant)?;
    let call = Int8Call {
        packed,
        walk,
        padded: &work.padded,
        bases: &work.bases,
        slabs: requant,
        outputs,
        bounds: Bounds::of(requantization),
    };
    for (slab, count) in slab_groups(requant.len()) {
        match (count == SLABS, fast) {
            (true, true) => slabs_int8::<SLABS, true>(&call, slab, output)?,
            (true, false) => slabs_int8::<SLABS, false>(&call, slab, output)?,
            (false, true) => slabs_int8::<1, true>(&call, slab, output)?,
            (false, false) => slabs_int8::<1, false>(&call, slab, output)?,
        }
    }
    Some(())
}

/// Every output of `S` slabs from `slab` on.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn slabs_int8<const S: usize, const FAST: bool>(
    call: &Int8Call<'_>,
    slab: usize,
    output: &mut [i8],
) -> Option<()> {
    let geometry = &call.packed.geometry;
    let filters = geometry.filters();
    let weights = call.packed.weights.get(slab * call.packed.slab_bytes()..)?;
    let mut sums = [[_mm512_setzero_si512(); S]; POSITIONS];
    for (index, bases) in call.bases.chunks_exact(POSITIONS).enumerate() {
        let bases: &[usize; POSITIONS] = bases.try_into().ok()?;
        let (walk, groups) = (&call.walk, call.packed.groups);
        dot_int8::<POSITIONS, S>(call.padded, bases, walk, groups, weights, &mut sums)?;
        let finish = |out_index: usize, s: usize, sums: __m512i| -> Option<()> {
            let first_filter = (slab + s) * LANES;
            let lanes = call.slabs.get(slab + s)?;
            let bytes = requant::requantize::<FAST>(sums, lanes, &call.bounds);
            let count = LANES.min(filters - first_filter);
            requant::store_bytes(output, out_index * filters + first_filter, count, bytes)
        };
        let max = |a, b| _mm512_max_epi32(a, b);
        each_output(&sums, geometry.pooled, index, call.outputs, max, finish)?;
    }
    Some(())
}

/// An f32 convolution's weights in the order of [`conv_f32`]: per slab of 16 filters, per
/// kernel row, per value of the row, the 16 filters' weights (a register); zero for the filters
/// that fill up the last slab.
#[derive(Debug)]
pub(super) struct PackedF32 {
    geometry: Blocks,
    weights: Vec<f32>,
    biases: Vec<f32>,
    activation: Activation,
}

impl PackedF32 {
    /// Packs `layer`'s weights.
    pub(super) fn new(layer: &kf32::ConvLayer<'_>) -> Self {
        let geometry = Blocks::of_conv(layer.geometry());
        let walk = Walk::of(&geometry);
        let slabs = geometry.filters().div_ceil(LANES);
        let slab_len = geometry.kernel_height * walk.run * LANES;
        let mut weights = vec![0f32; slabs * slab_len];
        let mut biases = vec![0f32; slabs * LANES];
        let fan_in = geometry.fan_in();
        for (filter, own) in layer.filters().chunks_exact(fan_in).enumerate() {
            let (slab, lane) = (filter / LANES, filter % LANES);
            for (j, &bytes) in own.iter().enumerate() {
                weights[slab * slab_len + j * LANES + lane] = f32::from_le_bytes(bytes);
            }
        }
        for (bias, &bytes) in biases.iter_mut().zip(layer.biases()) {
            *bias = f32::from_le_bytes(bytes);
        }
        PackedF32 {
            geometry,
            weights,
            biases,
            activation: layer.activation(),
        }
    }

    fn slab_len(&self) -> usize {
        self.geometry.fan_in() * LANES
    }
}

/// The `M x S` sums of `M` windows against `S` slabs of f32 `weights` into `sums`, as
/// [`dot_int8`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_f32<const M: usize, const S: usize>(
    input: &[f32],
    bases: &[usize; M],
    walk: &Walk,
    weights: &[f32],
    sums: &mut [[__m512; S]; M],
) -> Option<()> {
    let slab_len = walk.rows * walk.run * LANES;
    let inside = bases.iter().all(|&base| walk.end(base, 1) <= input.len());
    if !inside || S * slab_len > weights.len() {
        return None;
    }
    let mut acc = [[_mm512_setzero_ps(); S]; M];
    let mut packed = weights.as_ptr();
    let activations = input.as_ptr();
    for ky in 0..walk.rows {
        let row = ky * walk.row_stride;
        for j in 0..walk.run {
            let offset = row + j;
            let mut w = [_mm512_setzero_ps(); S];
            for (s, w) in w.iter_mut().enumerate() {
                // SAFETY: `packed` is `(ky * run + j) * 16` values into the first slab, and `S`
                // slabs fit in `weights`: 16 readable values `s` slabs on. Unaligned.
                *w = unsafe { _mm512_loadu_ps(packed.add(s * slab_len)) };
            }
            for (sum, &base) in acc.iter_mut().zip(bases) {
                // SAFETY: `base + offset < walk.end(base, 1) <= input.len()` (checked above).
                let x = _mm512_set1_ps(unsafe { *activations.add(base + offset) });
                for (sum, &w) in sum.iter_mut().zip(&w) {
                    *sum = _mm512_fmadd_ps(x, w, *sum);
                }
            }
            // SAFETY: stays within the first slab (or one past its end after the last value).
            packed = unsafe { packed.add(LANES) };
        }
    }
    *sums = acc;
    Some(())
}

/// [`tinycnn::kernels::f32::conv`] up to rounding, with `packed` made from the same layer.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn conv_f32(
    packed: &PackedF32,
    work: &mut Work<f32>,
    input: &[f32],
    layer: &kf32::ConvLayer<'_>,
    output: &mut [f32],
) -> Option<()> {
    let geometry = Blocks::of_conv(layer.geometry());
    let (outputs, walk) = work.prepare(
        &geometry,
        &packed.geometry,
        input,
        output.len(),
        0.0,
        |x| x,
        1,
    )?;
    for (slab, count) in slab_groups(geometry.filters().div_ceil(LANES)) {
        if count == SLABS {
            slabs_f32::<SLABS>(packed, work, walk, outputs, slab, output)?;
        } else {
            slabs_f32::<1>(packed, work, walk, outputs, slab, output)?;
        }
    }
    Some(())
}

/// Every output of `S` slabs from `slab` on.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn slabs_f32<const S: usize>(
    packed: &PackedF32,
    work: &Work<f32>,
    walk: Walk,
    outputs: usize,
    slab: usize,
    output: &mut [f32],
) -> Option<()> {
    let geometry = &packed.geometry;
    let filters = geometry.filters();
    let weights = packed.weights.get(slab * packed.slab_len()..)?;
    let relu = packed.activation == Activation::Relu;
    let mut sums = [[_mm512_setzero_ps(); S]; POSITIONS];
    for (index, bases) in work.bases.chunks_exact(POSITIONS).enumerate() {
        let bases: &[usize; POSITIONS] = bases.try_into().ok()?;
        dot_f32::<POSITIONS, S>(&work.padded, bases, &walk, weights, &mut sums)?;
        let finish = |out_index: usize, s: usize, sums: __m512| -> Option<()> {
            let first_filter = (slab + s) * LANES;
            let biases = packed.biases.get(first_filter..first_filter + LANES)?;
            // SAFETY: `biases` is 16 readable values; unaligned.
            let mut value = _mm512_add_ps(sums, unsafe { _mm512_loadu_ps(biases.as_ptr()) });
            if relu {
                value = _mm512_max_ps(value, _mm512_setzero_ps());
            }
            let mut lanes = [0f32; LANES];
            // SAFETY: `lanes` is 16 writable values; unaligned.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), value) };
            let count = LANES.min(filters - first_filter);
            let start = out_index * filters + first_filter;
            output
                .get_mut(start..start + count)?
                .copy_from_slice(&lanes[..count]);
            Some(())
        };
        let max = |a, b| _mm512_max_ps(a, b);
        each_output(&sums, geometry.pooled, index, outputs, max, finish)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    //! The blocked kernels against the core's portable ones on random layers: every kernel
    //! side, both paddings, pooled or not, both activations, channel counts that do and do not
    //! fill a group of four, filter counts that do and do not fill a slab, the extreme
    //! multipliers and shifts; and convolutions of any window (1..=11 by 1..=11), stride (1 to
    //! 3), padding and clamp against the core's general kernel. Skipped (with a line saying so)
    //! on a processor without AVX-512.

    use super::*;
    use crate::deploy::random_layers::{Constants, rng};
    use proptest::prelude::*;
    use proptest::test_runner::TestRng;
    use tinycnn::arch::{Conv, Padding, Shape};
    use tinycnn::kernels::general;

    fn avx512() -> bool {
        let here = crate::deploy::kernels::Isa::Avx512.runs_here();
        if !here {
            eprintln!("this processor lacks AVX-512 with VNNI: the blocked kernels are not tested");
        }
        here
    }

    /// A random geometry validation accepts, up to 40 filters and 20 channels.
    fn random_geometry(rng: &mut TestRng) -> (Conv, ConvGeometry) {
        let pooled = rng.random_bool(0.5);
        let kernel: u8 = [1, 3, 5][rng.random_range(0..3usize)];
        let padding = if rng.random_bool(0.5) {
            Padding::Same
        } else {
            Padding::Valid
        };
        let activation = if rng.random_bool(0.5) {
            Activation::Relu
        } else {
            Activation::None
        };
        let conv = Conv::square(
            kernel,
            padding,
            [1, 5, 16, 17, 32, 40][rng.random_range(0..6usize)],
            activation,
        );
        let smallest = if padding == Padding::Valid {
            usize::from(kernel)
        } else {
            1
        } + usize::from(pooled);
        let input = Shape::new(
            rng.random_range(smallest..=smallest + 9),
            rng.random_range(smallest..=smallest + 9),
            [1, 2, 3, 4, 5, 8, 20][rng.random_range(0..7usize)],
        );
        (conv, ConvGeometry::new(&conv, input, pooled))
    }

    fn int8_case(seed: u64) {
        let mut rng = rng(seed);
        let (conv, geometry) = random_geometry(&mut rng);
        let filters = geometry.filters;
        let extreme = rng.random_bool(0.3);
        let input: Vec<i8> = (0..geometry.input.values()).map(|_| rng.random()).collect();
        let weights: Vec<u8> = (0..filters * geometry.fan_in())
            .map(|_| rng.random_range(-127i8..=127) as u8)
            .collect();
        let (mut bias, mut multipliers, mut shifts) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..filters {
            let (multiplier, shift): (i32, i8) = if extreme {
                (rng.random_range(0..=i32::MAX), rng.random_range(-31..=30))
            } else {
                (
                    rng.random_range(1 << 30..=i32::MAX),
                    rng.random_range(-14..=-4),
                )
            };
            let range = if extreme { i32::MAX } else { 20_000 };
            bias.extend(rng.random_range(-range..=range).to_le_bytes());
            multipliers.extend(multiplier.to_le_bytes());
            shifts.push(shift as u8);
        }
        let requantization = ki8::Requantization::new(
            filters,
            &bias,
            &multipliers,
            &shifts,
            rng.random(),
            rng.random(),
            conv.activation,
        )
        .unwrap();
        let layer = ki8::ConvLayer::new(geometry, &weights, requantization).unwrap();
        let mut expected = vec![0i8; geometry.output().values()];
        ki8::conv(&input, &layer, &mut expected).unwrap();
        let packed = PackedInt8::new(&layer);
        let (mut work, mut slabs) = (Work::default(), Vec::new());
        let mut got = vec![0i8; expected.len()];
        // SAFETY: `avx512()` saw the features the kernel is compiled with.
        unsafe { conv_int8(&packed, &mut work, &mut slabs, &input, &layer, &mut got) }.unwrap();
        assert_eq!(got, expected, "{geometry:?} seed={seed}");
        // Weights packed for another map size serve this one: the core runs a layer in bands
        // of rows, each call with its own geometry, and the host keeps one packing per layer.
        let taller = ConvGeometry {
            input: Shape::new(
                geometry.input.height + 3,
                geometry.input.width,
                geometry.input.channels,
            ),
            ..geometry
        };
        let requantization = *layer.requantization();
        let other = ki8::ConvLayer::new(taller, &weights, requantization).unwrap();
        let packed = PackedInt8::new(&other);
        let mut got = vec![0i8; expected.len()];
        // SAFETY: as above.
        unsafe { conv_int8(&packed, &mut work, &mut slabs, &input, &layer, &mut got) }.unwrap();
        assert_eq!(
            got, expected,
            "packed for {taller:?}, run on {geometry:?}, seed={seed}"
        );
    }

    fn f32_case(seed: u64) {
        let mut rng = rng(seed);
        let (conv, geometry) = random_geometry(&mut rng);
        let floats = |n: usize, rng: &mut TestRng| -> Vec<u8> {
            (0..n)
                .flat_map(|_| rng.random_range(-1f32..1f32).to_le_bytes())
                .collect()
        };
        let input: Vec<f32> = (0..geometry.input.values())
            .map(|_| rng.random_range(0f32..1f32))
            .collect();
        let weights = floats(geometry.filters * geometry.fan_in(), &mut rng);
        let bias = floats(geometry.filters, &mut rng);
        let layer = kf32::ConvLayer::new(geometry, &weights, &bias, conv.activation).unwrap();
        let mut expected = vec![0f32; geometry.output().values()];
        kf32::conv(&input, &layer, &mut expected).unwrap();
        let packed = PackedF32::new(&layer);
        let mut work = Work::default();
        let mut got = vec![0f32; expected.len()];
        // SAFETY: `avx512()` saw the features the kernel is compiled with.
        unsafe { conv_f32(&packed, &mut work, &input, &layer, &mut got) }.unwrap();
        // Sums of up to 500 products of magnitude below 1, in another order.
        let tolerance = 1e-5 * (geometry.fan_in() as f32).sqrt();
        for (index, (a, b)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= tolerance,
                "{geometry:?} seed={seed} output {index}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn int8_convolutions_give_the_portable_kernels_bytes() {
        if avx512() {
            (0..400).for_each(int8_case);
        }
    }

    #[test]
    fn f32_convolutions_give_the_portable_kernels_values() {
        if avx512() {
            (0..200).for_each(f32_case);
        }
    }

    fn window_case(seed: u64) {
        let mut rng = rng(seed);
        let channels = [1, 2, 3, 4, 5, 8, 16, 17, 64][rng.random_range(0..9usize)];
        let filters = [1, 5, 8, 16, 17, 32, 40, 64][rng.random_range(0..8usize)];
        let kernel = (rng.random_range(1..=11usize), rng.random_range(1..=11usize));
        let stride = (rng.random_range(1..=3usize), rng.random_range(1..=3usize));
        let same = rng.random_bool(0.5);
        let side = |k: usize, rng: &mut TestRng| {
            let smallest = if same { 1 } else { k };
            rng.random_range(smallest..=smallest + 10)
        };
        let input_shape = Shape::new(side(kernel.0, &mut rng), side(kernel.1, &mut rng), channels);
        let geometry = general::WindowGeometry::resolve(
            input_shape,
            kernel.0,
            kernel.1,
            stride.0,
            stride.1,
            same,
            filters,
        )
        .unwrap();
        let fan_in = kernel.0 * kernel.1 * channels;
        let input: Vec<i8> = (0..input_shape.values()).map(|_| rng.random()).collect();
        let weights: Vec<u8> = (0..filters * fan_in)
            .map(|_| rng.random_range(-128i8..=127) as u8)
            .collect();
        let constants = Constants::draw(&mut rng, filters);
        let requantization = constants.requantization();
        let mut expected = vec![0i8; geometry.output.values()];
        general::conv(&input, &geometry, &weights, &requantization, &mut expected).unwrap();
        let packed = PackedInt8::for_window(&geometry, &weights);
        let (mut work, mut slabs) = (Work::default(), Vec::new());
        let mut got = vec![0i8; expected.len()];
        // SAFETY: `avx512()` saw the features the kernel is compiled with.
        unsafe {
            window_conv_int8(
                &packed,
                &mut work,
                &mut slabs,
                &input,
                &geometry,
                &requantization,
                &mut got,
            )
        }
        .unwrap();
        assert_eq!(got, expected, "{geometry:?} seed={seed}");
    }

    #[test]
    fn window_convolutions_give_the_general_kernels_bytes() {
        if avx512() {
            (0..600).for_each(window_case);
        }
    }
}
