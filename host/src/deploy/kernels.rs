//! The core's [`wide`] kernels built for the processor `host` runs on, for every command that
//! classifies (`eval`, `predict`, `fixture`, `bench infer`, the parity tests).
//!
//! On x86-64 they are compiled twice: for AVX2 and FMA, taken when the processor has them
//! (checked at run time, once), and for the x86-64 baseline (SSE2) otherwise; on aarch64 once,
//! for NEON, which every aarch64 processor has. The int8 ones give the core's portable kernels'
//! bytes exactly, the f32 ones its values up to rounding; the core's tests hold them to that.
//!
//! [`wide`]: tinycnn::kernels::wide

use tinycnn::kernels::{F32Kernels, Int8Kernels, f32 as kf32, int8 as ki8, wide};

/// An instruction set the kernels are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
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
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
        Isa::Baseline
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            Isa::Baseline if cfg!(target_arch = "aarch64") => "neon",
            Isa::Baseline if cfg!(target_arch = "x86_64") => "sse2",
            Isa::Baseline => "baseline",
        }
    }
}

/// The int8 kernels for one thread: the instruction set, and their buffers.
#[derive(Debug)]
pub struct FastInt8 {
    isa: Isa,
    buffers: Int8Buffers,
}

/// What the int8 kernels work in: the input widened to `i16`, and a pooled position's windows.
#[derive(Debug, Default)]
struct Int8Buffers {
    widened: Vec<i16>,
    patches: Vec<i16>,
}

impl FastInt8 {
    /// Kernels for this processor.
    pub fn new() -> Self {
        Self::with_isa(Isa::detect())
    }

    /// Kernels for `isa`; [`Isa::detect`] says which this processor runs.
    pub fn with_isa(isa: Isa) -> Self {
        Self {
            isa: checked(isa),
            buffers: Int8Buffers::default(),
        }
    }
}

impl Default for FastInt8 {
    fn default() -> Self {
        Self::new()
    }
}

/// The f32 kernels for one thread, and the buffer of a pooled position's windows.
#[derive(Debug)]
pub struct FastF32 {
    isa: Isa,
    patches: Vec<f32>,
}

impl FastF32 {
    /// Kernels for this processor.
    pub fn new() -> Self {
        Self::with_isa(Isa::detect())
    }

    /// Kernels for `isa`; [`Isa::detect`] says which this processor runs.
    pub fn with_isa(isa: Isa) -> Self {
        Self {
            isa: checked(isa),
            patches: Vec::new(),
        }
    }
}

impl Default for FastF32 {
    fn default() -> Self {
        Self::new()
    }
}

/// `isa` if this processor runs it, else the baseline: the one place that makes calling the
/// instruction set's functions sound.
fn checked(isa: Isa) -> Isa {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if Isa::detect() != Isa::Avx2 => Isa::Baseline,
        other => other,
    }
}

/// The four kernels compiled for one instruction set: `wide`'s functions are
/// `#[inline(always)]`, so each is built inside these with the features they enable.
macro_rules! kernels_for {
    ($module:ident, $dots:expr $(, $features:literal)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::{kf32, ki8, wide};

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
kernels_for!(avx2, super::avx2_dots::Avx2Dots::inside_avx2(), "avx2,fma");

/// The dot products of the wide convolutions in AVX2 and FMA intrinsics. The compiler does not
/// find the best instructions for them by itself: it widens every int8 product to 32 bits
/// instead of using `vpmaddwd`, which multiplies 16 pairs of 16-bit values and adds adjacent
/// products, and does not fuse f32 multiplies and adds (that changes rounding). One weight
/// register serves the four positions of a pooling window.
#[cfg(target_arch = "x86_64")]
mod avx2_dots {
    use std::arch::x86_64::{
        __m128i, __m256, __m256i, _mm_loadu_si128, _mm256_add_epi32, _mm256_cvtepi8_epi16,
        _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_setzero_ps,
        _mm256_setzero_si256, _mm256_storeu_ps, _mm256_storeu_si256,
    };

    use tinycnn::kernels::wide::{Dots, PlainDots};

    /// Proof that the code holding it runs on a processor with AVX2 and FMA.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Avx2Dots(());

    impl Avx2Dots {
        /// Only callable where AVX2 and FMA are enabled, which `Isa::Avx2` guarantees.
        #[target_feature(enable = "avx2,fma")]
        pub(super) fn inside_avx2() -> Self {
            Avx2Dots(())
        }
    }

    impl Dots for Avx2Dots {
        #[inline(always)]
        fn dot4(&self, activations: [&[i16]; 4], weights: &[u8]) -> [i32; 4] {
            // SAFETY: an `Avx2Dots` exists only once `inside_avx2` ran, which needs AVX2 and
            // FMA.
            unsafe { dot4(activations, weights) }
        }

        #[inline(always)]
        fn dot4_f32(&self, activations: [&[f32]; 4], weights: &[[u8; 4]]) -> [f32; 4] {
            // SAFETY: as in `dot4`.
            unsafe { dot4_f32(activations, weights) }
        }
    }

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2")]
    fn sum_i32(lanes: __m256i) -> i32 {
        let mut values = [0i32; 8];
        // SAFETY: `values` is 32 writable bytes; the store is unaligned.
        unsafe { _mm256_storeu_si256(values.as_mut_ptr().cast::<__m256i>(), lanes) };
        values.iter().sum()
    }

    #[target_feature(enable = "avx2")]
    fn sum_f32(lanes: __m256) -> f32 {
        let mut values = [0f32; 8];
        // SAFETY: `values` is 32 writable bytes; the store is unaligned.
        unsafe { _mm256_storeu_ps(values.as_mut_ptr(), lanes) };
        values.iter().sum()
    }

    /// [`PlainDots::dot4`], 16 weights at a time; the rest (fewer than 16) in plain Rust.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn dot4(activations: [&[i16]; 4], weights: &[u8]) -> [i32; 4] {
        let len = activations
            .iter()
            .map(|run| run.len())
            .fold(weights.len(), usize::min);
        let blocks = len / 16;
        let mut lanes = [_mm256_setzero_si256(); 4];
        for block in 0..blocks {
            let start = block * 16;
            // SAFETY: `start + 16 <= len <= weights.len()`: 16 readable bytes; the load is
            // unaligned.
            let packed = unsafe { _mm_loadu_si128(weights.as_ptr().add(start).cast::<__m128i>()) };
            let w = _mm256_cvtepi8_epi16(packed);
            for (lane, run) in lanes.iter_mut().zip(activations) {
                // SAFETY: `start + 16 <= len <= run.len()`: 16 readable `i16`s; unaligned.
                let x = unsafe { _mm256_loadu_si256(run.as_ptr().add(start).cast::<__m256i>()) };
                *lane = _mm256_add_epi32(*lane, _mm256_madd_epi16(x, w));
            }
        }
        let done = blocks * 16;
        let tail = weights.get(done..len).unwrap_or(&[]);
        let mut sums = [0i32; 4];
        for ((sum, lane), run) in sums.iter_mut().zip(lanes).zip(activations) {
            let rest = PlainDots.dot4([run.get(done..len).unwrap_or(&[]); 4], tail)[0];
            *sum = sum_i32(lane) + rest;
        }
        sums
    }

    /// [`PlainDots::dot4_f32`] with fused multiply-adds, 8 weights at a time.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn dot4_f32(activations: [&[f32]; 4], weights: &[[u8; 4]]) -> [f32; 4] {
        let len = activations
            .iter()
            .map(|run| run.len())
            .fold(weights.len(), usize::min);
        let blocks = len / 8;
        let mut lanes = [_mm256_setzero_ps(); 4];
        for block in 0..blocks {
            let start = block * 8;
            // SAFETY: `start + 8 <= len <= weights.len()`: 8 little-endian `f32`s (x86 is
            // little-endian) of 4 bytes each; the load is unaligned.
            let w = unsafe { _mm256_loadu_ps(weights.as_ptr().add(start).cast::<f32>()) };
            for (lane, run) in lanes.iter_mut().zip(activations) {
                // SAFETY: `start + 8 <= len <= run.len()`: 8 readable `f32`s; unaligned.
                let x = unsafe { _mm256_loadu_ps(run.as_ptr().add(start)) };
                *lane = _mm256_fmadd_ps(x, w, *lane);
            }
        }
        let done = blocks * 8;
        let tail = weights.get(done..len).unwrap_or(&[]);
        let mut sums = [0f32; 4];
        for ((sum, lane), run) in sums.iter_mut().zip(lanes).zip(activations) {
            let rest = PlainDots.dot4_f32([run.get(done..len).unwrap_or(&[]); 4], tail)[0];
            *sum = sum_f32(lane) + rest;
        }
        sums
    }
}

impl Int8Kernels for FastInt8 {
    fn name(&self) -> &'static str {
        self.isa.name()
    }

    fn conv(&mut self, input: &[i8], layer: &ki8::ConvLayer<'_>, output: &mut [i8]) -> Option<()> {
        self.buffers.widened.resize(input.len(), 0);
        let patches = wide::patches_len(layer.geometry());
        self.buffers.patches.resize(patches, 0);
        match self.isa {
            // SAFETY: `FastInt8` holds `Isa::Avx2` only after `checked` saw that the processor
            // has AVX2 and FMA, the features `avx2::conv` is compiled with.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::conv(input, &mut self.buffers, layer, output) },
            Isa::Baseline => baseline::conv(input, &mut self.buffers, layer, output),
        }
    }

    fn dense(
        &mut self,
        input: &[i8],
        layer: &ki8::DenseLayer<'_>,
        output: &mut [i8],
    ) -> Option<()> {
        self.buffers.widened.resize(input.len(), 0);
        match self.isa {
            // SAFETY: as in `conv`: `Isa::Avx2` is held only on a processor with AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::dense(input, &mut self.buffers, layer, output) },
            Isa::Baseline => baseline::dense(input, &mut self.buffers, layer, output),
        }
    }
}

impl F32Kernels for FastF32 {
    fn name(&self) -> &'static str {
        self.isa.name()
    }

    fn conv(
        &mut self,
        input: &[f32],
        layer: &kf32::ConvLayer<'_>,
        output: &mut [f32],
    ) -> Option<()> {
        self.patches
            .resize(wide::patches_len(layer.geometry()), 0.0);
        match self.isa {
            // SAFETY: `FastF32` holds `Isa::Avx2` only after `checked` saw that the processor
            // has AVX2 and FMA, the features `avx2::conv_f32` is compiled with.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::conv_f32(input, &mut self.patches, layer, output) },
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
            Isa::Baseline => baseline::dense_f32(input, layer, output),
        }
    }
}
