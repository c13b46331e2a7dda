//! Plain f32 kernels on NCHW slices: a convolution (stride 1, symmetric zero padding) fused with
//! its bias, ReLU, a 2x2/2 max pool (rounding down) and inverted dropout, and its backward pass.
//! [`super::ext`] wraps them as a burn op; the tests in `host/tests/` hold them to burn's own
//! `conv2d -> relu -> max_pool2d -> dropout`.
//!
//! Forward: im2col + GEMM (the `gemm` crate) with bias, ReLU, pooling and dropout applied while
//! the GEMM result is still in cache; only the pooled output and one byte per pooled value (the
//! position of the window's maximum, which also encodes the ReLU and dropout masks) are stored,
//! instead of burn's full-size convolution, ReLU and pool outputs. The im2col matrix is
//! `[c_in*kh*kw, positions]`: each row is a shifted copy of one input plane (contiguous copies
//! from NCHW, no transpose), and the weight `[c_out, c_in, kh, kw]` already is the `[c_out, K]`
//! left operand. Several samples share one GEMM so that the 7x7 layer still gives it a wide
//! right operand.
//!
//! Backward: only pooled values that carry a gradient matter (at most one position in four;
//! 14-20% of pooled values while training the reference network on MNIST with dropout 0.5), so
//! the default backward visits those and does channel-wide AXPYs ([`BackwardAlgo::Sparse`]); the
//! dense GEMM backward remains for the 1-channel first layer, for dense gradients, and as the
//! reference the sparse one is tested against.
//!
//! Threads: rayon (burn-flex's pool) over groups of samples, each task with its own scratch and
//! gradient accumulator, summed at the end in a fixed order so that results do not depend on
//! thread timing (training runs, and resumed runs, must be reproducible bit for bit). The
//! per-task bodies are compiled for AVX-512 and AVX2 and picked at run time
//! (`multiversioned!`), so that their plain loops vectorise without a `target-cpu` build flag.

//!
//! - `gemm`: the GEMM front and the matrix helpers;
//! - `im2col`: unrolling windows into GEMM operands and back;
//! - `forward`: the fused forward pass ([`conv_relu_pool_forward`]);
//! - `backward`: its backward pass, dense and sparse;
//! - `conv`: a plain convolution of any window, stride and padding, forward and backward, for
//!   the convolutions that are not fused blocks.

/// Defines `fn $name(args)` that runs `$body(args)` compiled for AVX-512 (F/BW/VL) or
/// AVX2+FMA when the CPU has them, else for the baseline target. `$body` and what it calls must
/// be `#[inline(always)]`, so that they are compiled inside the `#[target_feature]` wrappers.
macro_rules! multiversioned {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) = $body:path;) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                fn v4($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                fn v3($($arg: $ty),*) {
                    $body($($arg),*)
                }
                let v3_features = std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("bmi1")
                    && std::arch::is_x86_feature_detected!("bmi2")
                    && std::arch::is_x86_feature_detected!("lzcnt")
                    && std::arch::is_x86_feature_detected!("popcnt");
                let v4_features = v3_features
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl");
                if v4_features {
                    // SAFETY: a `#[target_feature]` function is sound to call once the CPU is
                    // known to have every feature it enables: all nine were detected above.
                    return unsafe { v4($($arg),*) };
                }
                if v3_features {
                    // SAFETY: as above; the six features `v3` enables were detected.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

mod backward;
mod conv;
mod forward;
// The GEMM front is shared with the pointwise convolutions of `super::pointwise`.
pub(super) mod gemm;
mod im2col;

pub use backward::{BackwardAlgo, BackwardInputs, ConvGrads, conv_relu_pool_backward};
pub use conv::{PlainConvShape, conv_backward, conv_forward};
pub use forward::conv_relu_pool_forward;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use rayon::prelude::*;

/// Marks a pooled output clipped by the ReLU or zeroed by dropout: no gradient flows through it.
pub const NO_GRAD: u8 = u8::MAX;

/// Which pooled values inverted dropout keeps: each with probability `1 - prob`, scaled by
/// `1 / (1 - prob)`. The mask depends only on `seed` and the value's position (one random
/// stream per (sample, channel) plane), not on how the batch is split over threads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    /// Probability of zeroing a value, in `[0, 1)`; resolved to multiples of 1/65536.
    pub prob: f64,
    /// Seed of the mask.
    pub seed: u64,
}

impl DropoutMask {
    /// Kept values satisfy `16 random bits < threshold`: a 1/65536 resolution of the keep
    /// probability, and four decisions per 64-bit draw (the generator was 5% of a step at one
    /// draw per value).
    fn threshold(&self) -> u32 {
        ((1.0 - self.prob) * 65536.0).round() as u32
    }
    fn scale(&self) -> f32 {
        (1.0 / (1.0 - self.prob)) as f32
    }
    fn plane_rng(&self, plane: usize) -> SmallRng {
        SmallRng::seed_from_u64(self.seed ^ (plane as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

impl DropoutMask {
    /// Inverted dropout of `values` in place, with stream `stream`'s decisions: drawn as the
    /// fused block draws a plane's (16 bits each, four per 64-bit draw), so that a standalone
    /// dropout layer costs what the fused block's does, and applying it again to the output's
    /// gradient gives the input's.
    pub fn apply_to_stream(&self, stream: usize, values: &mut [f32]) {
        let mut rng = self.plane_rng(stream);
        let (scale, threshold) = (self.scale(), self.threshold());
        for quad in values.chunks_mut(4) {
            let bits = rng.next_u64();
            for (i, value) in quad.iter_mut().enumerate() {
                let keep = u32::from((bits >> (16 * i)) as u16) < threshold;
                *value = if keep { *value * scale } else { 0.0 };
            }
        }
    }

    /// [`apply_to_stream`](Self::apply_to_stream) on each image of `values` (`image` values
    /// each), image `n` with stream `n`, one rayon task per image.
    pub fn apply_per_image(&self, values: &mut [f32], image: usize) {
        if image > 0 {
            values
                .par_chunks_mut(image)
                .enumerate()
                .for_each(|(n, values)| self.apply_to_stream(n, values));
        }
    }
}

/// Scale applied to kept values (and to their gradients); 1 without dropout.
pub fn dropout_scale(dropout: Option<DropoutMask>) -> f32 {
    dropout.map_or(1.0, |d| d.scale())
}

/// Geometry of one convolution + ReLU + 2x2 max-pool layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Samples in the batch.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Zero padding on each of the four sides.
    pub pad: usize,
}

impl ConvShape {
    /// Whether the kernels can run this geometry: channels, and a kernel that leaves at least
    /// two convolution output rows and columns (`ho = h + 2*pad + 1 - kh >= 2`), hence one
    /// pooled value.
    pub fn is_supported(&self) -> bool {
        self.c_in >= 1
            && self.c_out >= 1
            && self.kh >= 1
            && self.kw >= 1
            && self.h + 2 * self.pad > self.kh
            && self.w + 2 * self.pad > self.kw
    }
    /// Convolution output height.
    pub fn ho(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.kh
    }
    /// Convolution output width.
    pub fn wo(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.kw
    }
    /// Reduction length of the GEMM: one column of im2col.
    pub fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
    /// Pooled output height (rounded down).
    pub fn ph(&self) -> usize {
        self.ho() / 2
    }
    /// Pooled output width (rounded down).
    pub fn pw(&self) -> usize {
        self.wo() / 2
    }
    /// Input values per sample.
    pub fn in_len(&self) -> usize {
        self.c_in * self.h * self.w
    }
    /// Pooled output values per sample.
    pub fn pooled_len(&self) -> usize {
        self.c_out * self.ph() * self.pw()
    }
    /// Weight values.
    pub fn weight_len(&self) -> usize {
        self.c_out * self.k()
    }
    /// Samples per GEMM: enough output positions (>= ~384) to keep the micro-kernel busy,
    /// without letting the im2col buffer outgrow the L2 cache.
    fn samples_per_gemm(&self) -> usize {
        let spatial = self.ho() * self.wo();
        let by_width = 384usize.div_ceil(spatial);
        let by_cache = ((1 << 20) / 4 / (self.k() * spatial)).max(1);
        by_width.min(by_cache).clamp(1, self.batch.max(1))
    }
}
