//! The GEMM behind the fused convolution (a safe front for the `gemm` crate) and
//! the matrix helpers around it.

/// A read-only strided matrix: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub(in crate::train::fastconv) struct Strided<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix whose rows start `row_stride` apart.
    pub(in crate::train::fastconv) fn row_major(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride,
            col_stride: 1,
        }
    }
    /// The transpose of the row-major matrix whose rows start `row_stride` apart.
    pub(in crate::train::fastconv) fn transposed(data: &'a [f32], row_stride: usize) -> Self {
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
pub(in crate::train::fastconv) fn gemm(
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

/// `dst[c][r] = src[r][c]` for a `rows x cols` source.
#[inline(always)]
pub(super) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for r in 0..rows {
        let row = &src[r * cols..][..cols];
        for (c, v) in row.iter().enumerate() {
            dst[c * rows + r] = *v;
        }
    }
}
