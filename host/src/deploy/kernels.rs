//! The core's kernels built for the processor `host` runs on, for every command that
//! classifies (`eval`, `predict`, `fixture`, `bench infer`, the parity tests).
//!
//! On x86-64 the core's [`wide`] kernels are compiled three times: for AVX-512 with VNNI (the
//! 512-bit registers and the 16-bit dot-product instruction `vpdpwssd`), for AVX2 and FMA, and
//! for the x86-64 baseline (SSE2); the best one the processor has is taken, checked at run
//! time. With AVX-512 the convolutions run on register-blocked kernels of this crate instead
//! (`deploy/blocked.rs`), whose packed weights [`FastInt8::for_model`] and
//! [`FastF32::for_model`] keep between calls. On aarch64 the wide kernels are compiled once,
//! for NEON, which every aarch64 processor has. The int8 kernels give the core's portable
//! kernels' bytes exactly, the f32 ones its values up to rounding; the core's tests and this
//! crate's hold them to that.
//!
//! [`wide`]: tinycnn::kernels::wide

use tinycnn::kernels::general::{AddParams, WindowGeometry};
use tinycnn::kernels::{F32Kernels, Int8Kernels, f32 as kf32, int8 as ki8, wide};

/// An instruction set the kernels are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 with AVX-512 (F and BW) and its VNNI extension, with AVX2 and FMA (Ice Lake and
    /// later, Zen 4 and later).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// x86-64 with AVX2 and FMA (Haswell and later, Zen).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// What the target guarantees: SSE2 on x86-64, NEON on aarch64.
    Baseline,
}

impl Isa {
    /// The best instruction set this processor has.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        for isa in [Isa::Avx512, Isa::Avx2] {
            if isa.runs_here() {
                return isa;
            }
        }
        Isa::Baseline
    }

    /// Whether this processor runs code built for `self`: the one check that makes calling
    /// that code sound.
    pub fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        use std::arch::is_x86_feature_detected as has;
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                has!("avx512f")
                    && has!("avx512bw")
                    && has!("avx512vl")
                    && has!("avx512vnni")
                    && Isa::Avx2.runs_here()
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => has!("avx2") && has!("fma"),
            Isa::Baseline => true,
        }
    }

    /// Every instruction set built for this target, best first.
    pub fn all() -> &'static [Isa] {
        &[
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2,
            Isa::Baseline,
        ]
    }

    /// The instruction set of this [`name`](Self::name).
    pub fn named(name: &str) -> Option<Self> {
        Isa::all().iter().copied().find(|isa| isa.name() == name)
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512-vnni",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            Isa::Baseline if cfg!(target_arch = "aarch64") => "neon",
            Isa::Baseline if cfg!(target_arch = "x86_64") => "sse2",
            Isa::Baseline => "baseline",
        }
    }
}

/// The int8 kernels for one thread: the instruction set, their buffers, and the weights of
/// the model's layers packed for the AVX-512 convolutions, kept between calls.
#[derive(Debug)]
pub struct FastInt8<'m> {
    isa: Isa,
    buffers: Int8Buffers,
    // Only the AVX-512 convolutions pack their weights.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    packed: Packed<'m, PackedInt8>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    packed_depthwise: Packed<'m, Option<PackedDepthwise>>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    packed_dense: Packed<'m, PackedDense>,
}

/// What the int8 kernels work in: the input widened to `i16`, a pooled position's windows, and
/// the AVX-512 convolutions' padded input.
#[derive(Debug, Default)]
struct Int8Buffers {
    widened: Vec<i16>,
    patches: Vec<i16>,
    lanes: Vec<i32>,
    #[cfg(target_arch = "x86_64")]
    blocked: blocked::Work<u8>,
    #[cfg(target_arch = "x86_64")]
    requant: Vec<super::requant::Lanes>,
    #[cfg(target_arch = "x86_64")]
    depthwise: depthwise::Work,
    #[cfg(target_arch = "x86_64")]
    dense: dense::Work,
}

impl FastInt8<'static> {
    /// Kernels for this processor. They pack a layer's weights on every call; those of
    /// [`FastInt8::for_model`] keep them, which is faster.
    pub fn new() -> Self {
        Self::with_isa(Isa::detect())
    }

    /// Kernels for `isa`; [`Isa::detect`] says which this processor runs.
    pub fn with_isa(isa: Isa) -> Self {
        FastInt8::for_model_with_isa(&[], isa)
    }
}

impl<'m> FastInt8<'m> {
    /// Kernels for this processor that keep the packed weights of the layers of the model
    /// whose [`record_bytes`](tinycnn::Int8Model::record_bytes) are `weights`.
    pub fn for_model(weights: &'m [u8]) -> Self {
        Self::for_model_with_isa(weights, Isa::detect())
    }

    /// [`FastInt8::for_model`] for `isa`.
    pub fn for_model_with_isa(weights: &'m [u8], isa: Isa) -> Self {
        Self {
            isa: checked(isa),
            buffers: Int8Buffers::default(),
            packed: Packed::new(weights),
            packed_depthwise: Packed::new(weights),
            packed_dense: Packed::new(weights),
        }
    }
}

impl Default for FastInt8<'static> {
    fn default() -> Self {
        Self::new()
    }
}

/// The f32 kernels for one thread, the buffer of a pooled position's windows, and the packed
/// weights of the model's layers, as [`FastInt8`].
#[derive(Debug)]
pub struct FastF32<'m> {
    isa: Isa,
    patches: Vec<f32>,
    #[cfg(target_arch = "x86_64")]
    blocked: blocked::Work<f32>,
    // Only the AVX-512 convolutions pack their weights.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    packed: Packed<'m, PackedF32>,
}

impl FastF32<'static> {
    /// Kernels for this processor, packing a layer's weights on every call.
    pub fn new() -> Self {
        Self::with_isa(Isa::detect())
    }

    /// Kernels for `isa`; [`Isa::detect`] says which this processor runs.
    pub fn with_isa(isa: Isa) -> Self {
        FastF32::for_model_with_isa(&[], isa)
    }
}

impl<'m> FastF32<'m> {
    /// Kernels that keep the packed weights of the model whose
    /// [`record_bytes`](tinycnn::F32Model::record_bytes) are `weights`.
    pub fn for_model(weights: &'m [u8]) -> Self {
        Self::for_model_with_isa(weights, Isa::detect())
    }

    /// [`FastF32::for_model`] for `isa`.
    pub fn for_model_with_isa(weights: &'m [u8], isa: Isa) -> Self {
        Self {
            isa: checked(isa),
            patches: Vec::new(),
            #[cfg(target_arch = "x86_64")]
            blocked: blocked::Work::default(),
            packed: Packed::new(weights),
        }
    }
}

impl Default for FastF32<'static> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_arch = "x86_64")]
use super::blocked::{self, PackedF32, PackedInt8};
#[cfg(target_arch = "x86_64")]
use super::dense::{self, PackedDense};
#[cfg(target_arch = "x86_64")]
use super::depthwise::{self, PackedDepthwise};
/// Nothing is packed off x86-64.
#[cfg(not(target_arch = "x86_64"))]
type PackedInt8 = ();
#[cfg(not(target_arch = "x86_64"))]
type PackedDepthwise = ();
#[cfg(not(target_arch = "x86_64"))]
type PackedDense = ();
#[cfg(not(target_arch = "x86_64"))]
type PackedF32 = ();

/// Layers' weights packed once and kept, keyed by where the layer's weights lie in the
/// model's bytes. Only weights inside those bytes are kept: they are borrowed for `'m`, so the
/// same place holds the same weights for as long as the kernels live. Any other layer is
/// packed for the call and dropped.
#[derive(Debug)]
struct Packed<'m, T> {
    weights: &'m [u8],
    layers: Vec<(usize, usize, T)>,
}

impl<'m, T> Packed<'m, T> {
    fn new(weights: &'m [u8]) -> Self {
        Packed {
            weights,
            layers: Vec::new(),
        }
    }

    /// The packed form of the layer whose weights are `tensor`, made by `pack` the first
    /// time, and given to `run`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn with<R>(&mut self, tensor: &[u8], pack: impl FnOnce() -> T, run: impl FnOnce(&T) -> R) -> R {
        let start = (tensor.as_ptr() as usize).wrapping_sub(self.weights.as_ptr() as usize);
        let inside = start
            .checked_add(tensor.len())
            .is_some_and(|end| end <= self.weights.len());
        if !inside {
            return run(&pack());
        }
        let key = (start, tensor.len());
        let index = match self.layers.iter().position(|(s, l, _)| (*s, *l) == key) {
            Some(index) => index,
            None => {
                self.layers.push((key.0, key.1, pack()));
                self.layers.len() - 1
            }
        };
        run(&self.layers[index].2)
    }
}

/// `isa` if this processor runs it, else the best it runs: what makes calling the instruction
/// set's functions sound.
fn checked(isa: Isa) -> Isa {
    if isa.runs_here() { isa } else { Isa::detect() }
}

/// The kernels compiled for one instruction set: `wide`'s functions are `#[inline(always)]`,
/// so each is built inside these with the features they enable.
macro_rules! kernels_for {
    ($module:ident, $dots:expr $(, $features:literal)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::{AddParams, WindowGeometry, kf32, ki8, wide};

            $(#[target_feature(enable = $features)])?
            pub(super) fn window_conv(
                input: &[i8],
                buffers: &mut super::Int8Buffers,
                geometry: &WindowGeometry,
                weights: &[u8],
                requantization: &ki8::Requantization<'_>,
                output: &mut [i8],
            ) -> Option<()> {
                let zero_point = requantization.input_zero_point();
                wide::widen(input, zero_point, &mut buffers.widened)?;
                let dots = $dots;
                wide::window_conv_with(
                    &dots,
                    &buffers.widened,
                    &mut buffers.patches,
                    geometry,
                    weights,
                    requantization,
                    output,
                )
            }

            $(#[target_feature(enable = $features)])?
            pub(super) fn depthwise(
                input: &[i8],
                buffers: &mut super::Int8Buffers,
                geometry: &WindowGeometry,
                weights: &[u8],
                requantization: &ki8::Requantization<'_>,
                output: &mut [i8],
            ) -> Option<()> {
                wide::depthwise(
                    input,
                    &mut buffers.widened,
                    &mut buffers.lanes,
                    geometry,
                    weights,
                    requantization,
                    output,
                )
            }

            $(#[target_feature(enable = $features)])?
            pub(super) fn average_pool(
                input: &[i8],
                geometry: &WindowGeometry,
                activation_min: i32,
                activation_max: i32,
                output: &mut [i8],
            ) -> Option<()> {
                wide::average_pool(input, geometry, activation_min, activation_max, output)
            }

            $(#[target_feature(enable = $features)])?
            pub(super) fn add(
                a: &[i8],
                b: &[i8],
                params: &AddParams,
                output: &mut [i8],
            ) -> Option<()> {
                wide::add(a, b, params, output)
            }

            $(#[target_feature(enable = $features)])?
            pub(super) fn conv(
                input: &[i8],
                buffers: &mut super::Int8Buffers,
                layer: &ki8::ConvLayer<'_>,
                output: &mut [i8],
            ) -> Option<()> {
                let zero_point = layer.requantization().input_zero_point();
                wide::widen(input, zero_point, &mut buffers.widened)?;
                let dots = $dots;
                wide::conv_with(&dots, &buffers.widened, &mut buffers.patches, layer, output)
            }

            $(#[target_feature(enable = $features)])?
            pub(super) fn dense(
                input: &[i8],
                buffers: &mut super::Int8Buffers,
                layer: &ki8::DenseLayer<'_>,
                output: &mut [i8],
            ) -> Option<()> {
                let zero_point = layer.requantization().input_zero_point();
                wide::widen(input, zero_point, &mut buffers.widened)?;
                wide::dense(&buffers.widened, layer, output)
            }

            $(#[target_feature(enable = $features)])?
            pub(super) fn conv_f32(
                input: &[f32],
                patches: &mut [f32],
                layer: &kf32::ConvLayer<'_>,
                output: &mut [f32],
            ) -> Option<()> {
                let dots = $dots;
                wide::conv_f32_with(&dots, input, patches, layer, output)
            }

            $(#[target_feature(enable = $features)])?
            pub(super) fn dense_f32(
                input: &[f32],
                layer: &kf32::DenseLayer<'_>,
                output: &mut [f32],
            ) -> Option<()> {
                wide::dense_f32(input, layer, output)
            }
        }
    };
}

kernels_for!(baseline, wide::PlainDots);
#[cfg(target_arch = "x86_64")]
kernels_for!(avx2, super::avx2_dots::Avx2Dots::inside(), "avx2,fma");
#[cfg(target_arch = "x86_64")]
kernels_for!(
    avx512,
    super::avx512_dots::Avx512Dots::inside(),
    "avx512f,avx512bw,avx512vnni,avx2,fma"
);

/// A module of dot products for the wide convolutions in one instruction set's intrinsics: a
/// proof type that the processor runs it, and `Dots` written with `$mac` (int8 weights widened
/// to `i16`, `$block` at a time) and `$fma` (f32, `$f32_block` at a time). One weight register
/// serves the four positions of a pooling window.
macro_rules! dots_for {
    (
        $module:ident, $proof:ident, $features:literal,
        int8: $block:literal, $packed:ty, $load_packed:path, $widen:path,
        $vector:ty, $load:path, $zero:path, $mac:expr, $sum:expr,
        f32: $f32_block:literal, $load_f32:path, $zero_f32:path, $fma:path, $sum_f32:expr $(,)?
    ) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            #[allow(unused_imports)]
            use std::arch::x86_64::*;

            use tinycnn::kernels::wide::{Dots, PlainDots};

            /// Proof that the code holding it runs on a processor with the module's features.
            #[derive(Clone, Copy, Debug)]
            pub(super) struct $proof(());

            impl $proof {
                /// Only callable where the features are enabled, which the `Isa` that selects
                /// this module guarantees.
                #[target_feature(enable = $features)]
                pub(super) fn inside() -> Self {
                    $proof(())
                }
            }

            impl Dots for $proof {
                #[inline(always)]
                fn dot4(&self, activations: [&[i16]; 4], weights: &[u8]) -> [i32; 4] {
                    // SAFETY: a proof exists only once `inside` ran, which needs the features
                    // `dot4` is compiled with.
                    unsafe { dot4(activations, weights) }
                }

                #[inline(always)]
                fn dot4_f32(&self, activations: [&[f32]; 4], weights: &[[u8; 4]]) -> [f32; 4] {
                    // SAFETY: as in `dot4`.
                    unsafe { dot4_f32(activations, weights) }
                }
            }

            /// The shortest of the runs and the weights: what the sums cover.
            fn common_len<T>(activations: &[&[T]; 4], weights: usize) -> usize {
                activations
                    .iter()
                    .map(|run| run.len())
                    .fold(weights, usize::min)
            }

            /// [`PlainDots::dot4`], `$block` weights at a time; the rest in plain Rust.
            #[target_feature(enable = $features)]
            #[inline]
            fn dot4(activations: [&[i16]; 4], weights: &[u8]) -> [i32; 4] {
                let len = common_len(&activations, weights.len());
                let blocks = len / $block;
                let mut lanes = [$zero(); 4];
                for block in 0..blocks {
                    let start = block * $block;
                    let from = weights.as_ptr().wrapping_add(start).cast::<$packed>();
                    // SAFETY: `start + $block <= len <= weights.len()`: `$block` readable
                    // bytes; the load is unaligned.
                    let w = $widen(unsafe { $load_packed(from) });
                    for (lane, run) in lanes.iter_mut().zip(activations) {
                        // SAFETY: `start + $block <= len <= run.len()`: `$block` readable `i16`s;
                        // unaligned.
                        let x = unsafe { $load(run.as_ptr().add(start).cast::<$vector>()) };
                        *lane = $mac(*lane, x, w);
                    }
                }
                let done = blocks * $block;
                let tail = weights.get(done..len).unwrap_or(&[]);
                let mut sums = [0i32; 4];
                for ((sum, lane), run) in sums.iter_mut().zip(lanes).zip(activations) {
                    let rest = PlainDots.dot4([run.get(done..len).unwrap_or(&[]); 4], tail)[0];
                    *sum = $sum(lane) + rest;
                }
                sums
            }

            /// [`PlainDots::dot4_f32`] with fused multiply-adds, `$f32_block` weights at a time.
            #[target_feature(enable = $features)]
            #[inline]
            fn dot4_f32(activations: [&[f32]; 4], weights: &[[u8; 4]]) -> [f32; 4] {
                let len = common_len(&activations, weights.len());
                let blocks = len / $f32_block;
                let mut lanes = [$zero_f32(); 4];
                for block in 0..blocks {
                    let start = block * $f32_block;
                    // SAFETY: `start + $f32_block <= len <= weights.len()`: that many
                    // little-endian `f32`s (x86 is little-endian) of 4 bytes; unaligned.
                    let w = unsafe { $load_f32(weights.as_ptr().add(start).cast::<f32>()) };
                    for (lane, run) in lanes.iter_mut().zip(activations) {
                        // SAFETY: `start + $f32_block <= len <= run.len()`; unaligned.
                        let x = unsafe { $load_f32(run.as_ptr().add(start)) };
                        *lane = $fma(x, w, *lane);
                    }
                }
                let done = blocks * $f32_block;
                let tail = weights.get(done..len).unwrap_or(&[]);
                let mut sums = [0f32; 4];
                for ((sum, lane), run) in sums.iter_mut().zip(lanes).zip(activations) {
                    let rest = PlainDots.dot4_f32([run.get(done..len).unwrap_or(&[]); 4], tail)[0];
                    *sum = $sum_f32(lane) + rest;
                }
                sums
            }
        }
    };
}

// The compiler does not find these instructions by itself: it widens every int8 product to 32
// bits instead of using the 16-bit multiply-add (`vpmaddwd`: 16 or 32 pairs, adjacent products
// added), and may not fuse f32 multiplies and adds (that changes rounding).
dots_for!(
    avx2_dots, Avx2Dots, "avx2,fma",
    int8: 16, __m128i, _mm_loadu_si128, _mm256_cvtepi8_epi16,
    __m256i, _mm256_loadu_si256, _mm256_setzero_si256,
    |acc, x, w| _mm256_add_epi32(acc, _mm256_madd_epi16(x, w)),
    |lanes: __m256i| {
        let halves = _mm_add_epi32(_mm256_castsi256_si128(lanes), _mm256_extracti128_si256::<1>(lanes));
        let pairs = _mm_add_epi32(halves, _mm_unpackhi_epi64(halves, halves));
        _mm_cvtsi128_si32(_mm_add_epi32(pairs, _mm_shuffle_epi32::<0b01>(pairs)))
    },
    f32: 8, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_fmadd_ps,
    |lanes: __m256| {
        let mut values = [0f32; 8];
        // SAFETY: `values` is 32 writable bytes; the store is unaligned.
        unsafe { _mm256_storeu_ps(values.as_mut_ptr(), lanes) };
        values.iter().sum::<f32>()
    },
);
// AVX-512 with VNNI: `vpdpwssd` does the 16-bit multiply-add and the addition in one
// instruction, on 32 pairs.
dots_for!(
    avx512_dots, Avx512Dots, "avx512f,avx512bw,avx512vnni,avx2,fma",
    int8: 32, __m256i, _mm256_loadu_si256, _mm512_cvtepi8_epi16,
    __m512i, _mm512_loadu_si512, _mm512_setzero_si512, _mm512_dpwssd_epi32,
    _mm512_reduce_add_epi32,
    f32: 16, _mm512_loadu_ps, _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps,
);

/// Calls `$function` of the module built for `$isa`.
macro_rules! on_isa {
    ($isa:expr, $function:ident($($argument:expr),* $(,)?)) => {
        match $isa {
            // SAFETY: `FastInt8` holds `Isa::Avx2` only after `checked` saw that the processor
            // has AVX2 and FMA, the features the `avx2` module is compiled with.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::$function($($argument),*) },
            // SAFETY: as for AVX2: `Isa::Avx512` is held only where `runs_here` saw AVX-512 F,
            // BW and VNNI, AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::$function($($argument),*) },
            Isa::Baseline => baseline::$function($($argument),*),
        }
    };
}

impl Int8Kernels for FastInt8<'_> {
    fn name(&self) -> &'static str {
        self.isa.name()
    }

    fn conv(&mut self, input: &[i8], layer: &ki8::ConvLayer<'_>, output: &mut [i8]) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            let buffers = &mut self.buffers;
            let pack = || PackedInt8::new(layer);
            return self.packed.with(layer.filters(), pack, |packed| {
                // SAFETY: `Isa::Avx512` is held only where `runs_here` saw the features the
                // blocked kernels are compiled with.
                unsafe {
                    blocked::conv_int8(
                        packed,
                        &mut buffers.blocked,
                        &mut buffers.requant,
                        input,
                        layer,
                        output,
                    )
                }
            });
        }
        self.buffers.widened.resize(input.len(), 0);
        let patches = wide::patches_len(layer.geometry());
        self.buffers.patches.resize(patches, 0);
        match self.isa {
            // SAFETY: `FastInt8` holds `Isa::Avx2` only after `checked` saw that the processor
            // has AVX2 and FMA, the features `avx2::conv` is compiled with.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::conv(input, &mut self.buffers, layer, output) },
            // SAFETY: as for AVX2: `Isa::Avx512` is held only where `runs_here` saw AVX-512 F,
            // BW and VNNI, AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::conv(input, &mut self.buffers, layer, output) },
            Isa::Baseline => baseline::conv(input, &mut self.buffers, layer, output),
        }
    }

    fn dense(
        &mut self,
        input: &[i8],
        layer: &ki8::DenseLayer<'_>,
        output: &mut [i8],
    ) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            let work = &mut self.buffers.dense;
            let pack = || PackedDense::new(layer);
            return self.packed_dense.with(layer.rows(), pack, |packed| {
                // SAFETY: `Isa::Avx512` is held only where `runs_here` saw the features the
                // dense kernel is compiled with.
                unsafe { dense::dense_int8(packed, work, input, layer, output) }
            });
        }
        self.buffers.widened.resize(input.len(), 0);
        match self.isa {
            // SAFETY: as in `conv`: `Isa::Avx2` is held only on a processor with AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::dense(input, &mut self.buffers, layer, output) },
            // SAFETY: as in `conv`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::dense(input, &mut self.buffers, layer, output) },
            Isa::Baseline => baseline::dense(input, &mut self.buffers, layer, output),
        }
    }

    fn window_conv(
        &mut self,
        input: &[i8],
        geometry: &WindowGeometry,
        weights: &[u8],
        requantization: &ki8::Requantization<'_>,
        output: &mut [i8],
    ) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            let buffers = &mut self.buffers;
            let pack = || PackedInt8::for_window(geometry, weights);
            return self.packed.with(weights, pack, |packed| {
                // SAFETY: `Isa::Avx512` is held only where `runs_here` saw the features the
                // blocked kernels are compiled with.
                unsafe {
                    blocked::window_conv_int8(
                        packed,
                        &mut buffers.blocked,
                        &mut buffers.requant,
                        input,
                        geometry,
                        requantization,
                        output,
                    )
                }
            });
        }
        let isa = self.isa;
        let buffers = self.window_buffers(input, geometry);
        on_isa!(
            isa,
            window_conv(input, buffers, geometry, weights, requantization, output)
        )
    }

    fn depthwise(
        &mut self,
        input: &[i8],
        geometry: &WindowGeometry,
        weights: &[u8],
        requantization: &ki8::Requantization<'_>,
        output: &mut [i8],
    ) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            let work = &mut self.buffers.depthwise;
            let pack = || PackedDepthwise::new(geometry, weights);
            return self.packed_depthwise.with(weights, pack, |packed| {
                // SAFETY: `Isa::Avx512` is held only where `runs_here` saw the features the
                // depthwise kernel is compiled with.
                unsafe {
                    depthwise::depthwise_int8(
                        packed.as_ref()?,
                        work,
                        input,
                        geometry,
                        requantization,
                        output,
                    )
                }
            });
        }
        let buffers = &mut self.buffers;
        buffers.widened.resize(wide::depthwise_i16_len(geometry), 0);
        buffers.lanes.resize(wide::depthwise_i32_len(geometry), 0);
        on_isa!(
            self.isa,
            depthwise(input, buffers, geometry, weights, requantization, output)
        )
    }

    fn average_pool(
        &mut self,
        input: &[i8],
        geometry: &WindowGeometry,
        activation_min: i32,
        activation_max: i32,
        output: &mut [i8],
    ) -> Option<()> {
        on_isa!(
            self.isa,
            average_pool(input, geometry, activation_min, activation_max, output)
        )
    }

    fn add(&mut self, a: &[i8], b: &[i8], params: &AddParams, output: &mut [i8]) -> Option<()> {
        on_isa!(self.isa, add(a, b, params, output))
    }
}

impl FastInt8<'_> {
    /// The buffers of a convolution of any window on `input`: the widened input and four
    /// windows.
    fn window_buffers(&mut self, input: &[i8], geometry: &WindowGeometry) -> &mut Int8Buffers {
        self.buffers.widened.resize(input.len(), 0);
        self.buffers
            .patches
            .resize(wide::window_patches_len(geometry), 0);
        &mut self.buffers
    }
}

impl F32Kernels for FastF32<'_> {
    fn name(&self) -> &'static str {
        self.isa.name()
    }

    fn conv(
        &mut self,
        input: &[f32],
        layer: &kf32::ConvLayer<'_>,
        output: &mut [f32],
    ) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            let work = &mut self.blocked;
            let pack = || PackedF32::new(layer);
            return self
                .packed
                .with(layer.filters().as_flattened(), pack, |packed| {
                    // SAFETY: as for the int8 convolution: `Isa::Avx512` is held only where the
                    // processor has the blocked kernels' features.
                    unsafe { blocked::conv_f32(packed, work, input, layer, output) }
                });
        }
        self.patches
            .resize(wide::patches_len(layer.geometry()), 0.0);
        match self.isa {
            // SAFETY: `FastF32` holds `Isa::Avx2` only after `checked` saw that the processor
            // has AVX2 and FMA, the features `avx2::conv_f32` is compiled with.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::conv_f32(input, &mut self.patches, layer, output) },
            // SAFETY: as for AVX2, with the features `runs_here` checks for `Isa::Avx512`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::conv_f32(input, &mut self.patches, layer, output) },
            Isa::Baseline => baseline::conv_f32(input, &mut self.patches, layer, output),
        }
    }

    fn dense(
        &mut self,
        input: &[f32],
        layer: &kf32::DenseLayer<'_>,
        output: &mut [f32],
    ) -> Option<()> {
        match self.isa {
            // SAFETY: as in `conv`: `Isa::Avx2` is held only on a processor with AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::dense_f32(input, layer, output) },
            // SAFETY: as in `conv`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::dense_f32(input, layer, output) },
            Isa::Baseline => baseline::dense_f32(input, layer, output),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinycnn::{F32Model, Int8Model};

    /// Every instruction set this processor runs, the baseline included.
    fn instruction_sets() -> Vec<Isa> {
        let all = [
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2,
            Isa::Baseline,
        ];
        all.into_iter().filter(|isa| isa.runs_here()).collect()
    }

    /// Images unlike one another: gradients, stripes, noise.
    fn images(count: usize) -> Vec<[u8; 784]> {
        (0..count)
            .map(|n| std::array::from_fn(|i| ((i * (n + 3) + n * 97 + (i / 28) * n) % 256) as u8))
            .collect()
    }

    fn shipped(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn every_instruction_set_computes_the_portable_kernels_results() {
        for dir in ["", "small/"] {
            let int8_file = shipped(&format!("{dir}model-int8.tcnn"));
            let f32_file = shipped(&format!("{dir}model-f32.tcnn"));
            let int8 = Int8Model::from_bytes(&int8_file).unwrap();
            let f32_model = F32Model::from_bytes(&f32_file).unwrap();
            let mut scratch = vec![0i8; int8.scratch_bytes()];
            let mut f32_scratch = vec![0f32; f32_model.scratch_len()];
            for isa in instruction_sets() {
                let (mut fast, mut fast_f32) = (FastInt8::with_isa(isa), FastF32::with_isa(isa));
                // And the kernels that keep the packed weights, from the second image on.
                let mut kept = FastInt8::for_model_with_isa(int8.record_bytes(), isa);
                let mut kept_f32 = FastF32::for_model_with_isa(f32_model.record_bytes(), isa);
                for image in images(24) {
                    let portable = int8.classify(&image, &mut scratch).unwrap().logits.to_vec();
                    let got = int8
                        .classify_with_kernels(&mut fast, &image, &mut scratch, |_| {})
                        .unwrap()
                        .logits
                        .to_vec();
                    assert_eq!(got, portable, "{} int8, data/{dir}", isa.name());
                    let got = int8
                        .classify_with_kernels(&mut kept, &image, &mut scratch, |_| {})
                        .unwrap()
                        .logits
                        .to_vec();
                    assert_eq!(got, portable, "{} int8 kept, data/{dir}", isa.name());
                    let kept_f32 = f32_model
                        .classify_with_kernels(&mut kept_f32, &image, &mut f32_scratch, |_| {})
                        .unwrap()
                        .logits
                        .to_vec();
                    let portable = f32_model
                        .classify(&image, &mut f32_scratch)
                        .unwrap()
                        .logits
                        .to_vec();
                    let got = f32_model
                        .classify_with_kernels(&mut fast_f32, &image, &mut f32_scratch, |_| {})
                        .unwrap()
                        .logits
                        .to_vec();
                    let range = portable.iter().fold(1f32, |m, v| m.max(v.abs()));
                    for (a, b) in got.iter().chain(&kept_f32).zip(portable.iter().cycle()) {
                        assert!(
                            (a - b).abs() <= 1e-5 * range,
                            "{} f32: {a} vs {b}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn only_weights_inside_the_model_bytes_are_kept() {
        let model = vec![7u8; 64];
        let other = vec![7u8; 16];
        let mut packed = Packed::new(&model);
        let mut packs = 0;
        for _ in 0..3 {
            for tensor in [&model[8..24], &model[8..16], &model[48..64]] {
                packed.with(tensor, || packs += 1, |()| ());
            }
        }
        assert_eq!(packs, 3, "three places inside, each packed once");
        for _ in 0..3 {
            packed.with(&other, || packs += 1, |()| ());
            packed.with(&model[60..], || packs += 1, |()| ());
        }
        assert_eq!(packs, 3 + 3 + 1, "outside: every call; inside: once");
        assert_eq!(packed.layers.len(), 4);
    }

    #[test]
    fn an_instruction_set_the_processor_lacks_is_never_used() {
        for isa in instruction_sets() {
            assert_eq!(FastInt8::with_isa(isa).isa, isa);
        }
        assert!(Isa::detect().runs_here());
        assert!(Isa::Baseline.runs_here());
    }

    /// The four MLPerf Tiny networks of `data/mlperf/`.
    const MLPERF: [&str; 4] = ["kws", "vww", "resnet8", "autoencoder"];

    #[test]
    fn every_instruction_set_runs_the_mlperf_networks_as_the_portable_kernels() {
        use tinycnn::kernels::int8::Backend;
        for name in MLPERF {
            let file = shipped(&format!("mlperf/{name}.tcnn"));
            let model = Int8Model::from_bytes(&file).unwrap();
            let input_len = model.input_shape().values();
            let inputs: Vec<i8> = super::super::fixture::splitmix_bytes(7, 12 * input_len)
                .into_iter()
                .map(|b| b as i8)
                .collect();
            // The caller's kernels run whole steps with this much scratch, bands of rows with
            // what the portable kernels need.
            let mut whole = vec![0i8; model.scratch_bytes_with_kernels()];
            let mut scratch = vec![0i8; model.scratch_bytes()];
            for isa in instruction_sets() {
                // Kernels that keep packed weights (from the second input on) and ones that
                // pack them on every call.
                let mut kept = FastInt8::for_model_with_isa(model.record_bytes(), isa);
                let mut fresh = FastInt8::with_isa(isa);
                for input in inputs.chunks_exact(input_len) {
                    let portable = model
                        .run_quantized(Backend::Portable, input, &mut scratch, |_| {})
                        .unwrap()
                        .logits
                        .to_vec();
                    for run in 0..3 {
                        let (kernels, scratch) = match run {
                            0 => (&mut kept, &mut whole),
                            1 => (&mut fresh, &mut whole),
                            _ => (&mut kept, &mut scratch),
                        };
                        let mut ran = Vec::new();
                        let got = model
                            .run_quantized_with_kernels(kernels, input, scratch, |step| {
                                ran.push(step.kernels);
                            })
                            .unwrap()
                            .logits
                            .to_vec();
                        assert_eq!(got, portable, "{} {name}", isa.name());
                        // Every layer but the softmax ran on the caller's kernels.
                        let portable_steps = ran.iter().filter(|&&k| k == Backend::Portable);
                        assert!(portable_steps.count() <= 2, "{name}: {ran:?}");
                    }
                }
            }
        }
    }

    /// Random layers of the kinds beyond the tutorial's, through each instruction set's
    /// kernels, against the core's portable ones: windows 1..=6 by 1..=6, strides 1 to 3, both
    /// paddings, channel counts that do and do not fill a register, depthwise multipliers 1
    /// and 2, zero points at the extremes, every clamp, ordinary and extreme constants.
    #[test]
    fn every_instruction_set_computes_the_general_kernels_bytes() {
        use crate::deploy::random_layers::{Constants, rng, zero_point};
        use proptest::prelude::*;
        use proptest::test_runner::TestRng;
        use tinycnn::arch::Shape;
        use tinycnn::kernels::general;

        for isa in instruction_sets() {
            let mut kernels = FastInt8::with_isa(isa);
            for seed in 0..150u64 {
                let mut rng = rng(seed);
                let channels = [1, 2, 3, 8, 16, 17, 64][rng.random_range(0..7usize)];
                let kernel = (rng.random_range(1..=6usize), rng.random_range(1..=6usize));
                let stride = (rng.random_range(1..=3usize), rng.random_range(1..=3usize));
                let same = rng.random_bool(0.5);
                let side = |k: usize, rng: &mut TestRng| {
                    let smallest = if same { 1 } else { k };
                    rng.random_range(smallest..=smallest + 9)
                };
                let shape =
                    Shape::new(side(kernel.0, &mut rng), side(kernel.1, &mut rng), channels);
                let filters = [1, 8, 16, 17, 40][rng.random_range(0..5usize)];
                let multiplier = rng.random_range(1..=2usize);
                let window = |outputs| {
                    general::WindowGeometry::resolve(
                        shape, kernel.0, kernel.1, stride.0, stride.1, same, outputs,
                    )
                    .unwrap()
                };
                let (conv, depthwise, pool) = (
                    window(filters),
                    window(channels * multiplier),
                    window(channels),
                );
                let input: Vec<i8> = (0..shape.values()).map(|_| rng.random()).collect();
                let what = format!("{} seed {seed}", isa.name());

                let weights: Vec<u8> = (0..filters * kernel.0 * kernel.1 * channels)
                    .map(|_| rng.random())
                    .collect();
                let constants = Constants::draw(&mut rng, filters);
                let rq = constants.requantization();
                let mut expected = vec![0i8; conv.output.values()];
                general::conv(&input, &conv, &weights, &rq, &mut expected).unwrap();
                let mut got = vec![0i8; expected.len()];
                kernels
                    .window_conv(&input, &conv, &weights, &rq, &mut got)
                    .unwrap();
                assert_eq!(got, expected, "window conv, {what}, {conv:?}");

                let outputs = channels * multiplier;
                let weights: Vec<u8> = (0..kernel.0 * kernel.1 * outputs)
                    .map(|_| rng.random())
                    .collect();
                let constants = Constants::draw(&mut rng, outputs);
                let rq = constants.requantization();
                let mut expected = vec![0i8; depthwise.output.values()];
                general::depthwise(&input, &depthwise, &weights, &rq, &mut expected).unwrap();
                let mut got = vec![0i8; expected.len()];
                kernels
                    .depthwise(&input, &depthwise, &weights, &rq, &mut got)
                    .unwrap();
                assert_eq!(got, expected, "depthwise, {what}, {depthwise:?}");

                // The pool and the addition clamp as the depthwise layer did.
                let (low, high) = constants.range;
                let mut expected = vec![0i8; pool.output.values()];
                general::average_pool(&input, &pool, low, high, &mut expected).unwrap();
                let mut got = vec![0i8; expected.len()];
                kernels
                    .average_pool(&input, &pool, low, high, &mut got)
                    .unwrap();
                assert_eq!(got, expected, "average pool, {what}, {pool:?}");

                let other: Vec<i8> = (0..input.len()).map(|_| rng.random()).collect();
                let mut params = tinycnn::quant::add_params(
                    [
                        rng.random_range(0.001f32..1.0),
                        rng.random_range(0.001f32..1.0),
                    ],
                    [constants.input_zero_point, zero_point(&mut rng)],
                    rng.random_range(0.001f32..1.0),
                    constants.output_zero_point,
                );
                (params.activation_min, params.activation_max) = (low, high);
                let mut expected = vec![0i8; input.len()];
                general::add(&input, &other, &params, &mut expected).unwrap();
                let mut got = vec![0i8; expected.len()];
                kernels.add(&input, &other, &params, &mut got).unwrap();
                assert_eq!(got, expected, "add, {what}, {params:?}");
            }
        }
    }
}
