//! Unrolling convolution windows into GEMM operands (im2col) and folding gradients
//! back (col2im).

use super::ConvShape;

/// Valid output-column range for kernel column `kx`: `ix = ox + kx - pad` stays inside `[0, w)`.
/// Empty (and inside `[0, wo]`) when the column lies wholly in the padding, as it can for a
/// kernel wider than the map.
#[inline(always)]
fn valid_cols(s: &ConvShape, kx: usize) -> (usize, usize) {
    let start = s.pad.saturating_sub(kx).min(s.wo());
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
        let lo = ((oy0 * w) as isize).max(-off);
        let hi = ((oy1 * w) as isize).min((h * w) as isize - off);
        if hi <= lo {
            // The kernel position reads nothing but padding (a kernel larger than the map):
            // an empty range at the start, so that no offset points outside the plane.
            return Self {
                off: 0,
                lo: 0,
                hi: 0,
                ox0,
                ox1,
            };
        }
        let (lo, hi) = (lo as usize, hi as usize);
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
pub(super) fn im2col(s: &ConvShape, x: &[f32], col: &mut [f32], ld: usize, col_off: usize) {
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
pub(super) fn col2im_add(
    s: &ConvShape,
    dcol: &mut [f32],
    ld: usize,
    col_off: usize,
    dx: &mut [f32],
) {
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
