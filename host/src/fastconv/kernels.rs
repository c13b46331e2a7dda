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

/// A read-only strided matrix: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix whose rows start `row_stride` apart.
    fn row_major(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride,
            col_stride: 1,
        }
    }
    /// The transpose of the row-major matrix whose rows start `row_stride` apart.
    fn transposed(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: row_stride,
        }
    }
}

/// `dst[m x n] = a[m x k] * b[k x n]`, or `+=` with `accumulate`; `dst` is row-major with rows
/// `dst_row_stride` apart. A safe, bounds-checked front for `gemm::gemm`, whose raw-pointer API
/// is what lets one GEMM read im2col rows, transposed weights and sub-matrices in place.
fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    a: Strided,
    b: Strided,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The last element each operand reaches must be inside its slice, and distinct (row, col)
    // pairs of `dst` must be distinct elements (no overlapping rows), since gemm writes them.
    assert!(m == 1 || dst_row_stride >= n, "gemm: dst rows overlap");
    assert!(
        dst.len() > (m - 1) * dst_row_stride + (n - 1),
        "gemm: dst too short"
    );
    if k > 0 {
        assert!(
            a.data.len() > (m - 1) * a.row_stride + (k - 1) * a.col_stride,
            "gemm: a too short"
        );
        assert!(
            b.data.len() > (k - 1) * b.row_stride + (n - 1) * b.col_stride,
            "gemm: b too short"
        );
    }
    let stride = |s: usize| isize::try_from(s).expect("gemm: stride exceeds isize");
    // SAFETY: the asserts above keep every element gemm reads or writes (rows < m, columns < n,
    // reduction index < k, at the given strides) inside the three slices, and stop it from
    // writing one `dst` element twice. `dst` is borrowed mutably, so it aliases neither `a` nor
    // `b`. `Parallelism::None`: no other thread touches the slices during the call.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            stride(dst_row_stride),
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Valid output-column range for kernel column `kx`: `ix = ox + kx - pad` stays inside `[0, w)`.
#[inline(always)]
fn valid_cols(s: &ConvShape, kx: usize) -> (usize, usize) {
    let start = s.pad.saturating_sub(kx);
    let end = (s.w + s.pad).saturating_sub(kx).min(s.wo());
    (start, end.max(start))
}

/// With "same" output size, row `(ci, ky, kx)` of im2col is the input plane shifted by the
/// constant flat offset `(ky - pad) * w + (kx - pad)`, with zeros where the kernel column
/// falls outside the image. One long copy (or add) per row instead of one per output row: the
/// rows are only 7-28 values long in this network.
struct Shift {
    /// Flat offset from an output position to its input position.
    off: isize,
    /// Output positions whose row and flat input index are inside the image.
    lo: usize,
    hi: usize,
    /// Valid output columns `[ox0, ox1)`.
    ox0: usize,
    ox1: usize,
}

impl Shift {
    #[inline(always)]
    fn new(s: &ConvShape, ky: usize, kx: usize) -> Self {
        let (h, w) = (s.h, s.w);
        let oy0 = s.pad.saturating_sub(ky);
        let oy1 = (h + s.pad).saturating_sub(ky).min(h).max(oy0);
        let (ox0, ox1) = valid_cols(s, kx);
        let off = (ky as isize - s.pad as isize) * w as isize + (kx as isize - s.pad as isize);
        let lo = ((oy0 * w) as isize).max(-off) as usize;
        let hi = (((oy1 * w) as isize).min((h * w) as isize - off)).max(lo as isize) as usize;
        Self {
            off,
            lo,
            hi,
            ox0,
            ox1,
        }
    }

    /// Positions in `[lo, hi)` whose column is outside `[ox0, ox1)`: they wrap into the
    /// neighbouring image row and must read (or receive) zero.
    #[inline(always)]
    fn for_each_wrapped(&self, w: usize, mut f: impl FnMut(usize)) {
        if self.ox0 == 0 && self.ox1 == w {
            return;
        }
        let first_row = self.lo / w;
        for row in first_row..self.hi.div_ceil(w) {
            let base = row * w;
            for ox in (0..self.ox0).chain(self.ox1..w) {
                let i = base + ox;
                if i >= self.lo && i < self.hi {
                    f(i);
                }
            }
        }
    }
}

#[inline(always)]
fn same_size(s: &ConvShape) -> bool {
    s.ho() == s.h && s.wo() == s.w
}

/// Writes the im2col rows of one sample at column offset `col_off` of a `[K, ld]` matrix.
#[inline(always)]
fn im2col(s: &ConvShape, x: &[f32], col: &mut [f32], ld: usize, col_off: usize) {
    if same_size(s) {
        return im2col_same(s, x, col, ld, col_off);
    }
    let (h, w, ho, wo) = (s.h, s.w, s.ho(), s.wo());
    for ci in 0..s.c_in {
        let plane = &x[ci * h * w..][..h * w];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let r = (ci * s.kh + ky) * s.kw + kx;
                let row = &mut col[r * ld + col_off..][..ho * wo];
                let (ox0, ox1) = valid_cols(s, kx);
                for oy in 0..ho {
                    let dst = &mut row[oy * wo..][..wo];
                    let iy = oy + ky;
                    if iy < s.pad || iy - s.pad >= h {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[(iy - s.pad) * w..][..w];
                    dst[..ox0].fill(0.0);
                    dst[ox1..].fill(0.0);
                    let ix0 = ox0 + kx - s.pad;
                    dst[ox0..ox1].copy_from_slice(&src[ix0..ix0 + (ox1 - ox0)]);
                }
            }
        }
    }
}

#[inline(always)]
fn im2col_same(s: &ConvShape, x: &[f32], col: &mut [f32], ld: usize, col_off: usize) {
    let hw = s.h * s.w;
    for ci in 0..s.c_in {
        let plane = &x[ci * hw..][..hw];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let r = (ci * s.kh + ky) * s.kw + kx;
                let row = &mut col[r * ld + col_off..][..hw];
                let sh = Shift::new(s, ky, kx);
                row[..sh.lo].fill(0.0);
                row[sh.hi..].fill(0.0);
                let src = (sh.lo as isize + sh.off) as usize;
                row[sh.lo..sh.hi].copy_from_slice(&plane[src..src + (sh.hi - sh.lo)]);
                sh.for_each_wrapped(s.w, |i| row[i] = 0.0);
            }
        }
    }
}

/// Adds the im2col-shaped gradient of one sample back onto its input gradient. Clobbers the
/// wrapped entries of `dcol` (scratch) so that rows can be added in one contiguous run.
#[inline(always)]
fn col2im_add(s: &ConvShape, dcol: &mut [f32], ld: usize, col_off: usize, dx: &mut [f32]) {
    if same_size(s) {
        let hw = s.h * s.w;
        for ci in 0..s.c_in {
            let plane = &mut dx[ci * hw..][..hw];
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let r = (ci * s.kh + ky) * s.kw + kx;
                    let row = &mut dcol[r * ld + col_off..][..hw];
                    let sh = Shift::new(s, ky, kx);
                    sh.for_each_wrapped(s.w, |i| row[i] = 0.0);
                    let dst = (sh.lo as isize + sh.off) as usize;
                    let n = sh.hi - sh.lo;
                    for (d, v) in plane[dst..dst + n].iter_mut().zip(&row[sh.lo..sh.hi]) {
                        *d += v;
                    }
                }
            }
        }
        return;
    }
    let (h, w, ho, wo) = (s.h, s.w, s.ho(), s.wo());
    for ci in 0..s.c_in {
        let plane = &mut dx[ci * h * w..][..h * w];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let r = (ci * s.kh + ky) * s.kw + kx;
                let row = &dcol[r * ld + col_off..][..ho * wo];
                let (ox0, ox1) = valid_cols(s, kx);
                if ox0 == ox1 {
                    continue;
                }
                let ix0 = ox0 + kx - s.pad;
                for oy in 0..ho {
                    let iy = oy + ky;
                    if iy < s.pad || iy - s.pad >= h {
                        continue;
                    }
                    let dst = &mut plane[(iy - s.pad) * w + ix0..][..ox1 - ox0];
                    let src = &row[oy * wo + ox0..][..ox1 - ox0];
                    for (d, v) in dst.iter_mut().zip(src) {
                        *d += v;
                    }
                }
            }
        }
    }
}

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

/// Forward: `dropout(pool2(relu(conv(x, w) + b)))`. Returns the pooled output (NCHW) and, per
/// pooled value, the position of the maximum inside its 2x2 window (`dy * 2 + dx`), or
/// [`NO_GRAD`] where the ReLU clipped it or dropout zeroed it.
pub fn conv_relu_pool_forward(
    s: &ConvShape,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    dropout: Option<DropoutMask>,
) -> (Vec<f32>, Vec<u8>) {
    assert!(
        s.is_supported(),
        "conv_relu_pool: unsupported geometry {s:?}"
    );
    assert!(
        dropout.is_none_or(|d| (0.0..1.0).contains(&d.prob)),
        "dropout prob must be in [0, 1)"
    );
    assert_eq!(x.len(), s.batch * s.in_len());
    assert_eq!(weight.len(), s.weight_len());
    assert_eq!(bias.len(), s.c_out);
    let pooled_len = s.pooled_len();
    let mut out = vec![0.0f32; s.batch * pooled_len];
    let mut argmax = vec![NO_GRAD; s.batch * pooled_len];
    let nb = s.samples_per_gemm();
    let ld = nb * s.ho() * s.wo();
    let f = Forward {
        s,
        x,
        weight,
        bias,
        dropout,
        nb,
        ld,
    };
    // One task per GEMM group of `nb` samples; rayon balances them over the threads, which
    // matters on a machine where another process holds part of a core.
    out.par_chunks_mut(nb * pooled_len)
        .zip(argmax.par_chunks_mut(nb * pooled_len))
        .enumerate()
        .for_each_init(
            || (vec![0.0f32; s.k() * ld], vec![0.0f32; s.c_out * ld]),
            |(col, act), (chunk, (out, arg))| forward_chunk(&f, chunk, col, act, out, arg),
        );
    (out, argmax)
}

struct Forward<'a> {
    s: &'a ConvShape,
    x: &'a [f32],
    weight: &'a [f32],
    bias: &'a [f32],
    dropout: Option<DropoutMask>,
    /// Samples per GEMM and the row length of the im2col / activation scratch.
    nb: usize,
    ld: usize,
}

multiversioned!(fn forward_chunk(
    f: &Forward,
    chunk: usize,
    col: &mut [f32],
    act: &mut [f32],
    out: &mut [f32],
    arg: &mut [u8],
) = forward_chunk_body;);

#[inline(always)]
fn forward_chunk_body(
    f: &Forward,
    chunk: usize,
    col: &mut [f32],
    act: &mut [f32],
    out: &mut [f32],
    arg: &mut [u8],
) {
    let s = f.s;
    let (wo, ph, pw, ld) = (s.wo(), s.ph(), s.pw(), f.ld);
    let spatial = s.ho() * wo;
    let pooled_len = s.pooled_len();
    let b = chunk * f.nb;
    let nbc = out.len() / pooled_len;
    for j in 0..nbc {
        im2col(
            s,
            &f.x[(b + j) * s.in_len()..][..s.in_len()],
            col,
            ld,
            j * spatial,
        );
    }
    // act[c_out, positions] = W[c_out, K] * col[K, positions]
    gemm(
        (s.c_out, nbc * spatial, s.k()),
        act,
        ld,
        false,
        Strided::row_major(f.weight, s.k()),
        Strided::row_major(col, ld),
    );
    for j in 0..nbc {
        for co in 0..s.c_out {
            let a = &act[co * ld + j * spatial..][..spatial];
            let at = j * pooled_len + co * ph * pw;
            let (o, g) = (&mut out[at..at + ph * pw], &mut arg[at..at + ph * pw]);
            pool_plane(a, wo, ph, pw, f.bias[co], o, g);
            if let Some(d) = &f.dropout {
                apply_dropout(d, (b + j) * s.c_out + co, o, g);
            }
        }
    }
}

#[inline(always)]
fn pool_plane(
    a: &[f32],
    wo: usize,
    ph: usize,
    pw: usize,
    bias: f32,
    out: &mut [f32],
    arg: &mut [u8],
) {
    for py in 0..ph {
        let r0 = &a[2 * py * wo..][..2 * pw];
        let r1 = &a[(2 * py + 1) * wo..][..2 * pw];
        let o = &mut out[py * pw..][..pw];
        let g = &mut arg[py * pw..][..pw];
        // Branch-free so that it vectorises; ties keep the first position in reading order,
        // as a sequential scan with `>` would.
        for px in 0..pw {
            let (a0, a1, a2, a3) = (r0[2 * px], r0[2 * px + 1], r1[2 * px], r1[2 * px + 1]);
            let (m01, i01) = if a1 > a0 { (a1, 1u8) } else { (a0, 0u8) };
            let (m23, i23) = if a3 > a2 { (a3, 3u8) } else { (a2, 2u8) };
            let (m, i) = if m23 > m01 { (m23, i23) } else { (m01, i01) };
            let v = m + bias;
            let positive = v > 0.0;
            o[px] = if positive { v } else { 0.0 };
            g[px] = if positive { i } else { NO_GRAD };
        }
    }
}

#[inline(always)]
fn apply_dropout(d: &DropoutMask, plane: usize, out: &mut [f32], arg: &mut [u8]) {
    const BLOCK: usize = 64;
    let mut rng = d.plane_rng(plane);
    let scale = d.scale();
    let threshold = d.threshold();
    let mut draws = [0u16; BLOCK];
    for (o, g) in out.chunks_mut(BLOCK).zip(arg.chunks_mut(BLOCK)) {
        for quad in draws[..o.len().next_multiple_of(4)].chunks_exact_mut(4) {
            let bits = rng.next_u64();
            for (i, r) in quad.iter_mut().enumerate() {
                *r = (bits >> (16 * i)) as u16;
            }
        }
        for ((o, g), r) in o.iter_mut().zip(g.iter_mut()).zip(&draws) {
            let keep = (*r as u32) < threshold;
            *o = if keep { *o * scale } else { 0.0 };
            *g = if keep { *g } else { NO_GRAD };
        }
    }
}

/// Gradients of [`conv_relu_pool_forward`]'s inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGrads {
    /// Gradient of the input, when it was asked for.
    pub x: Option<Vec<f32>>,
    /// Gradient of the weight, `[c_out, c_in, kh, kw]`.
    pub weight: Vec<f32>,
    /// Gradient of the bias, `[c_out]`.
    pub bias: Vec<f32>,
}

/// Which backward algorithm [`conv_relu_pool_backward`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackwardAlgo {
    /// [`BackwardAlgo::Sparse`] when each gradient carries enough input channels to fill SIMD
    /// lanes and few enough pooled values carry one, else [`BackwardAlgo::Dense`].
    Auto,
    /// Unpools into a dense `dY` and runs two GEMMs (im2col / col2im).
    Dense,
    /// Visits only the pooled values that carry a gradient.
    Sparse,
}

/// What the backward pass reads: the forward's inputs and mask, and the output's gradient.
#[derive(Clone, Copy, Debug)]
pub struct BackwardInputs<'a> {
    /// Geometry of the layer.
    pub shape: ConvShape,
    /// The forward's input, `[batch, c_in, h, w]`.
    pub x: &'a [f32],
    /// The forward's weight, `[c_out, c_in, kh, kw]`.
    pub weight: &'a [f32],
    /// The mask [`conv_relu_pool_forward`] returned with the output.
    pub argmax: &'a [u8],
    /// Gradient of the pooled output, `[batch, c_out, ph, pw]`.
    pub grad_out: &'a [f32],
    /// Multiplies the gradient of kept values: the dropout scale ([`dropout_scale`]).
    pub grad_scale: f32,
}

/// Gradients of x (when `want_x_grad`), weight and bias.
pub fn conv_relu_pool_backward(
    inputs: &BackwardInputs,
    want_x_grad: bool,
    algo: BackwardAlgo,
) -> ConvGrads {
    let s = &inputs.shape;
    assert!(
        s.is_supported(),
        "conv_relu_pool: unsupported geometry {s:?}"
    );
    assert_eq!(inputs.x.len(), s.batch * s.in_len());
    assert_eq!(inputs.weight.len(), s.weight_len());
    assert_eq!(inputs.argmax.len(), s.batch * s.pooled_len());
    assert_eq!(inputs.grad_out.len(), inputs.argmax.len());
    let sparse = match algo {
        BackwardAlgo::Auto => {
            s.c_in >= 16 && carrying_fraction(inputs.argmax) <= SPARSE_MAX_FRACTION
        }
        BackwardAlgo::Dense => false,
        BackwardAlgo::Sparse => true,
    };
    if sparse {
        backward_sparse(inputs, want_x_grad)
    } else {
        backward_dense(inputs, want_x_grad)
    }
}

/// Above this fraction of pooled values carrying a gradient the dense GEMMs win. Measured on
/// the 14x14x64 and 7x7x128 layers: sparse is 1.6-2.1x faster at 44% (the most dropout 0.5
/// leaves), so they cross near 70-90%.
const SPARSE_MAX_FRACTION: f64 = 0.6;

fn carrying_fraction(argmax: &[u8]) -> f64 {
    argmax.iter().filter(|a| **a != NO_GRAD).count() as f64 / argmax.len().max(1) as f64
}

/// Weight and bias gradient accumulators of one task, plus its scratch.
struct Acc {
    dw: Vec<f32>,
    db: Vec<f32>,
    scratch_a: Vec<f32>,
    scratch_b: Vec<f32>,
}

impl Acc {
    fn new(s: &ConvShape, scratch_a: usize, scratch_b: usize) -> Self {
        Self {
            dw: vec![0.0; s.weight_len()],
            db: vec![0.0; s.c_out],
            scratch_a: vec![0.0; scratch_a],
            scratch_b: vec![0.0; scratch_b],
        }
    }
}

/// Accumulator groups per backward call. A fixed split, summed in a fixed order, keeps the
/// gradients bit-identical from run to run whatever the thread timing (rayon's adaptive `fold`
/// does not); eight groups still balance two threads when another process takes a share.
const GRADIENT_GROUPS: usize = 8;

/// Runs `task(acc, item, dx)` over `items`, `dx` being the item's slice of the x gradient when
/// one is wanted, in [`GRADIENT_GROUPS`] parallel groups of consecutive items, and sums the
/// groups' accumulators in group order.
fn run_tasks(
    s: &ConvShape,
    items: usize,
    dx_per_item: usize,
    want_x_grad: bool,
    new_acc: impl Fn() -> Acc + Sync + Send,
    task: impl Fn(&mut Acc, usize, Option<&mut [f32]>) + Sync + Send,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let per_group = items.div_ceil(GRADIENT_GROUPS).max(1);
    let groups = items.div_ceil(per_group);
    let run_group = |group: usize, dx: Option<&mut [f32]>| {
        let mut acc = new_acc();
        let first = group * per_group;
        let last = (first + per_group).min(items);
        match dx {
            Some(dx) => {
                for (i, dx) in (first..last).zip(dx.chunks_mut(dx_per_item)) {
                    task(&mut acc, i, Some(dx));
                }
            }
            None => (first..last).for_each(|i| task(&mut acc, i, None)),
        }
        (acc.dw, acc.db)
    };
    let mut dx = vec![0.0f32; if want_x_grad { s.batch * s.in_len() } else { 0 }];
    let partials: Vec<(Vec<f32>, Vec<f32>)> = if want_x_grad {
        dx.par_chunks_mut(per_group * dx_per_item)
            .enumerate()
            .map(|(g, dx)| run_group(g, Some(dx)))
            .collect()
    } else {
        (0..groups)
            .into_par_iter()
            .map(|g| run_group(g, None))
            .collect()
    };
    let mut partials = partials.into_iter();
    let (mut dw, mut db) = partials
        .next()
        .unwrap_or_else(|| (vec![0.0; s.weight_len()], vec![0.0; s.c_out]));
    for (pw, pb) in partials {
        dw.iter_mut().zip(&pw).for_each(|(p, q)| *p += q);
        db.iter_mut().zip(&pb).for_each(|(p, q)| *p += q);
    }
    (want_x_grad.then_some(dx), dw, db)
}

/// Dense backward: unpool into `dY` per GEMM group, then `dW += dY * col^T`,
/// `dcol = W^T * dY` and col2im.
fn backward_dense(bw: &BackwardInputs, want_x_grad: bool) -> ConvGrads {
    let s = &bw.shape;
    let nb = s.samples_per_gemm();
    let ld = nb * s.ho() * s.wo();
    let (x, dw, db) = run_tasks(
        s,
        s.batch.div_ceil(nb),
        nb * s.in_len(),
        want_x_grad,
        || Acc::new(s, s.k() * ld, s.c_out * ld),
        |acc, chunk, dx| dense_chunk(bw, nb, ld, chunk, acc, dx),
    );
    ConvGrads {
        x,
        weight: dw,
        bias: db,
    }
}

multiversioned!(fn dense_chunk(
    bw: &BackwardInputs,
    nb: usize,
    ld: usize,
    chunk: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) = dense_chunk_body;);

#[inline(always)]
fn dense_chunk_body(
    bw: &BackwardInputs,
    nb: usize,
    ld: usize,
    chunk: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) {
    let s = &bw.shape;
    let (wo, ph, pw, k) = (s.wo(), s.ph(), s.pw(), s.k());
    let spatial = s.ho() * wo;
    let pooled_len = s.pooled_len();
    let b = chunk * nb;
    let nbc = nb.min(s.batch - b);
    let n = nbc * spatial;
    let Acc {
        dw,
        db,
        scratch_a: col,
        scratch_b: dy,
    } = acc;
    // Unpool + ReLU/dropout mask: the pooled gradient goes to the window's maximum only.
    for co in 0..s.c_out {
        dy[co * ld..co * ld + n].fill(0.0);
    }
    for j in 0..nbc {
        let base = (b + j) * pooled_len;
        for co in 0..s.c_out {
            let g = &bw.grad_out[base + co * ph * pw..][..ph * pw];
            let am = &bw.argmax[base + co * ph * pw..][..ph * pw];
            let d = &mut dy[co * ld + j * spatial..][..spatial];
            let mut sum = 0.0f32;
            for py in 0..ph {
                for px in 0..pw {
                    let i = py * pw + px;
                    let a = am[i];
                    if a != NO_GRAD {
                        let v = g[i] * bw.grad_scale;
                        d[(2 * py + (a / 2) as usize) * wo + 2 * px + (a % 2) as usize] = v;
                        sum += v;
                    }
                }
            }
            db[co] += sum;
        }
    }
    for j in 0..nbc {
        im2col(
            s,
            &bw.x[(b + j) * s.in_len()..][..s.in_len()],
            col,
            ld,
            j * spatial,
        );
    }
    // dW[c_out, K] += dY[c_out, n] * col[K, n]^T
    gemm(
        (s.c_out, k, n),
        dw,
        k,
        true,
        Strided::row_major(dy, ld),
        Strided::transposed(col, ld),
    );
    if let Some(dx) = dx {
        // dcol[K, n] = W[c_out, K]^T * dY[c_out, n], reusing the im2col buffer.
        gemm(
            (k, n, s.c_out),
            col,
            ld,
            false,
            Strided::transposed(bw.weight, k),
            Strided::row_major(dy, ld),
        );
        for j in 0..nbc {
            col2im_add(
                s,
                col,
                ld,
                j * spatial,
                &mut dx[j * s.in_len()..(j + 1) * s.in_len()],
            );
        }
    }
}

/// Sparse backward. Each pooled value that carries a gradient `g` came from one output
/// position `p`; for every kernel tap `t` whose input position `p + t` is inside the image it
/// contributes `dW[co, t, :] += g * x[p + t, :]` and `dX[p + t, :] += g * W[co, t, :]`, two
/// AXPYs over the input channels. Channels-last copies of x, W and dX (per sample) make them
/// contiguous. Its work is proportional to the number of values carrying a gradient: with
/// 15-20% of them it does 1/20 of the dense GEMMs' multiply-adds, at a lower rate per
/// multiply-add (AXPYs are load/store bound).
fn backward_sparse(bw: &BackwardInputs, want_x_grad: bool) -> ConvGrads {
    let s = &bw.shape;
    let (hw, taps, c_in) = (s.h * s.w, s.kh * s.kw, s.c_in);
    // [c_out][c_in][tap] -> [c_out][tap][c_in]
    // At least 1: a layer without input channels has an empty weight and nothing to permute.
    let per_filter = (c_in * taps).max(1);
    let mut w_t = vec![0.0f32; s.weight_len()];
    for (filter, filter_t) in bw
        .weight
        .chunks_exact(per_filter)
        .zip(w_t.chunks_exact_mut(per_filter))
    {
        transpose(filter, c_in, taps, filter_t);
    }
    let (x, dw_t, db) = run_tasks(
        s,
        s.batch,
        s.in_len(),
        want_x_grad,
        || Acc::new(s, hw * c_in, if want_x_grad { hw * c_in } else { 0 }),
        |acc, b, dx| sparse_sample(bw, &w_t, b, acc, dx),
    );
    // [c_out][tap][c_in] -> [c_out][c_in][tap]
    let mut dw = vec![0.0f32; s.weight_len()];
    for (filter_t, filter) in dw_t
        .chunks_exact(per_filter)
        .zip(dw.chunks_exact_mut(per_filter))
    {
        transpose(filter_t, taps, c_in, filter);
    }
    ConvGrads {
        x,
        weight: dw,
        bias: db,
    }
}

multiversioned!(fn sparse_sample(
    bw: &BackwardInputs,
    w_t: &[f32],
    b: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) = sparse_sample_body;);

#[inline(always)]
fn sparse_sample_body(
    bw: &BackwardInputs,
    w_t: &[f32],
    b: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) {
    let s = &bw.shape;
    let (ph, pw, c_in, kw, hw) = (s.ph(), s.pw(), s.c_in, s.kw, s.h * s.w);
    let taps = s.kh * s.kw;
    let pooled_len = s.pooled_len();
    let Acc {
        dw: dw_t,
        db,
        scratch_a: x_t,
        scratch_b: dx_t,
    } = acc;
    transpose(&bw.x[b * s.in_len()..][..s.in_len()], c_in, hw, x_t);
    if dx.is_some() {
        dx_t.fill(0.0);
    }
    let argmax = &bw.argmax[b * pooled_len..][..pooled_len];
    let grad = &bw.grad_out[b * pooled_len..][..pooled_len];
    for co in 0..s.c_out {
        let am = &argmax[co * ph * pw..][..ph * pw];
        let g = &grad[co * ph * pw..][..ph * pw];
        let dwr = &mut dw_t[co * taps * c_in..][..taps * c_in];
        let wr = &w_t[co * taps * c_in..][..taps * c_in];
        let mut sum = 0.0f32;
        for q in 0..ph * pw {
            let a = am[q];
            if a == NO_GRAD {
                continue;
            }
            let v = g[q] * bw.grad_scale;
            sum += v;
            let oy = 2 * (q / pw) + (a / 2) as usize;
            let ox = 2 * (q % pw) + (a % 2) as usize;
            // Taps of one kernel row hit consecutive input positions, and both channels-last
            // layouts keep (tap, channel) and (position, channel) contiguous: one AXPY per
            // kernel row, of length (valid taps) x c_in.
            let kx0 = s.pad.saturating_sub(ox);
            let kx1 = (s.w + s.pad - ox).min(kw);
            if kx0 >= kx1 {
                continue;
            }
            let span = (kx1 - kx0) * c_in;
            for ky in 0..s.kh {
                let iy = oy + ky;
                if iy < s.pad || iy - s.pad >= s.h {
                    continue;
                }
                let p0 = (iy - s.pad) * s.w + (ox + kx0 - s.pad);
                let t0 = ky * kw + kx0;
                let xin = &x_t[p0 * c_in..][..span];
                for (d, xv) in dwr[t0 * c_in..][..span].iter_mut().zip(xin) {
                    *d += v * xv;
                }
                if dx.is_some() {
                    let wt = &wr[t0 * c_in..][..span];
                    for (d, wv) in dx_t[p0 * c_in..][..span].iter_mut().zip(wt) {
                        *d += v * wv;
                    }
                }
            }
        }
        db[co] += sum;
    }
    if let Some(dx) = dx {
        transpose(dx_t, hw, c_in, dx);
    }
}

/// `dst[c][r] = src[r][c]` for a `rows x cols` source.
#[inline(always)]
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for r in 0..rows {
        let row = &src[r * cols..][..cols];
        for (c, v) in row.iter().enumerate() {
            dst[c * rows + r] = *v;
        }
    }
}
