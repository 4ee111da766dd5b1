//! Illumination correction as Cell Painting pipelines do it: CellProfiler's
//! CorrectIlluminationCalculate ("Regular", all images of a plate, median smoothing,
//! robust-minimum rescale) and CorrectIlluminationApply ("divide").
//!
//! Unlike CellProfiler, the median window is a square, not an octagon, and runs on a
//! block-averaged grid that is bilinearly expanded, as JUMP's recipe does at 1/4 resolution
//! (the function is smooth at the filter's scale: ~`block^2` faster, no visible difference).
//! Sums are integers, so the function is byte-identical in any order of planes. Memory: 8 bytes
//! per pixel per channel for the sum, 4 bytes per pixel for the expanded function.

use crate::Plane;

/// Why an illumination step failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IllumError {
    /// An image, sum or function of another size.
    #[error("size {}x{} does not match {}x{}", .got.0, .got.1, .expected.0, .expected.1)]
    Size {
        /// (width, height) it must have.
        expected: (u32, u32),
        /// (width, height) it has.
        got: (u32, u32),
    },
    /// `compute` on a sum of no images.
    #[error("no images to average")]
    Empty,
    /// A `.npy` file that cannot be read, with the reason.
    #[error("npy: {0}")]
    Npy(String),
    /// An illumination value that is not finite and > 0.
    #[error("illumination value {value} at index {index} is not finite and > 0")]
    Value {
        /// Index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// Parameters, dimensions or buffer lengths that cannot describe a function.
    #[error("invalid illumination input: {0}")]
    Invalid(String),
}

fn pixels(width: u32, height: u32) -> usize {
    width as usize * height as usize
}

fn check_size(expected: (u32, u32), got: (u32, u32)) -> Result<(), IllumError> {
    (expected == got)
        .then_some(())
        .ok_or(IllumError::Size { expected, got })
}

fn check_len(expected: usize, actual: usize) -> Result<(), IllumError> {
    let msg = || IllumError::Invalid(format!("{actual} values, expected {expected}"));
    (expected == actual).then_some(()).ok_or_else(msg)
}

/// Per-pixel sum of every plane of one plate and channel (exact, order-independent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllumSum {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Number of planes added.
    pub images: u64,
    /// `width * height` sums, row-major.
    pub sum: Vec<u64>,
}

impl IllumSum {
    /// An empty sum for planes of this size.
    pub fn new(width: u32, height: u32) -> Self {
        let sum = vec![0; pixels(width, height)];
        Self {
            width,
            height,
            images: 0,
            sum,
        }
    }

    /// Adds one plane; a plane of another size is an error (IllumError::Size) naming both sizes.
    pub fn add(&mut self, plane: &Plane) -> Result<(), IllumError> {
        check_size((self.width, self.height), (plane.width, plane.height))?;
        check_len(self.sum.len(), plane.data.len())?;
        for (s, &v) in self.sum.iter_mut().zip(&plane.data) {
            *s += u64::from(v);
        }
        self.images += 1;
        Ok(())
    }

    /// Adds another partial sum (from another worker); sizes must agree.
    pub fn merge(&mut self, other: &IllumSum) -> Result<(), IllumError> {
        check_size((self.width, self.height), (other.width, other.height))?;
        check_len(self.sum.len(), other.sum.len())?;
        for (s, &o) in self.sum.iter_mut().zip(&other.sum) {
            *s += o;
        }
        self.images += other.images;
        Ok(())
    }
}

/// Parameters of `compute`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IllumParams {
    /// Block-averaging factor of the mean image before smoothing (JUMP: 1/4 resolution), >= 1.
    pub block: u32,
    /// Median filter side as a fraction of the image's longer side (0.075: JUMP's 20 px on a
    /// quarter-resolution 1080 image); the window is round(fraction * grid longer side) grid
    /// pixels, made odd, at least 3 and at most the grid's longer side made odd.
    pub filter_fraction: f64,
    /// Robust minimum percentile (CellProfiler: 2 %): values below it are raised to it, then the
    /// function is divided by it, so the function is >= 1 everywhere.
    pub robust_min_percentile: f64,
}

impl Default for IllumParams {
    fn default() -> Self {
        let (block, filter_fraction, robust_min_percentile) = (4, 0.075, 2.0);
        Self {
            block,
            filter_fraction,
            robust_min_percentile,
        }
    }
}

/// `x` (finite, >= 0 and below `usize::MAX`; NaN gives 0) rounded down.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Callers bound x.
fn floor_usize(x: f64) -> usize {
    x.floor() as usize
}

/// `x` rounded to the nearest f32 (the function's stored precision).
#[allow(clippy::cast_possible_truncation)] // Narrowing is the point.
fn narrow(x: f64) -> f32 {
    x as f32
}

/// Median window side in grid pixels for a `gw x gh` grid (see `IllumParams::filter_fraction`).
pub(crate) fn window_side(fraction: f64, gw: u32, gh: u32) -> usize {
    let longer = gw.max(gh) as usize;
    let side = floor_usize((fraction * longer as f64).round().clamp(0.0, longer as f64));
    (side | 1).max(3).min(longer | 1)
}

/// Median of `buf` (reordered); an even count gives the mean of the two middle values.
fn median(buf: &mut [f64]) -> f64 {
    let even = buf.len().is_multiple_of(2);
    let (lower, upper, _) = buf.select_nth_unstable_by(buf.len() / 2, f64::total_cmp);
    if !even {
        return *upper;
    }
    (lower.iter().copied().fold(f64::NEG_INFINITY, f64::max) + *upper) * 0.5
}

/// Square median filter (odd `side`) over a `w x h` grid, shrunk to in-bounds pixels at edges.
pub(crate) fn median_filter(values: &[f64], w: usize, h: usize, side: usize) -> Vec<f64> {
    let r = side / 2;
    let mut out = Vec::with_capacity(values.len());
    let mut buf = Vec::with_capacity(side * side);
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(r), (x + r).min(w - 1));
            buf.clear();
            for row in values[y0 * w..=y1 * w + x1].chunks(w) {
                buf.extend_from_slice(&row[x0..=x1]);
            }
            out.push(median(&mut buf));
        }
    }
    out
}

/// Mean image block-averaged to a grid `gw` wide; edge blocks average the pixels they have.
fn block_mean(sum: &IllumSum, block: u32, gw: u32) -> Vec<f64> {
    let (w, h) = (sum.width as usize, sum.height as usize);
    let (b, gw) = (block as usize, gw as usize);
    let mut acc = vec![0u128; gw * h.div_ceil(b)];
    for (y, row) in sum.sum.chunks_exact(w.max(1)).enumerate() {
        let acc_row = &mut acc[(y / b) * gw..][..gw];
        for (x, &v) in row.iter().enumerate() {
            acc_row[x / b] += u128::from(v);
        }
    }
    let mut out = Vec::with_capacity(acc.len());
    for (i, &s) in acc.iter().enumerate() {
        let count = b.min(w - (i % gw) * b) * b.min(h - (i / gw) * b);
        out.push(s as f64 / (count as u128 * u128::from(sum.images)) as f64);
    }
    out
}

/// CellProfiler's robust minimum (index `floor(n * p / 100)` of the sorted positive values):
/// values below it are raised to it, then divided by it. No positive value gives all ones.
fn robust_min_rescale(values: &[f64], percentile: f64) -> Vec<f32> {
    let mut positive: Vec<f64> = values.iter().copied().filter(|&v| v > 0.0).collect();
    if positive.is_empty() {
        return vec![1.0; values.len()];
    }
    positive.sort_unstable_by(f64::total_cmp);
    let n = positive.len();
    let rmin = positive[floor_usize(n as f64 * percentile / 100.0).min(n - 1)];
    values.iter().map(|&v| narrow(v.max(rmin) / rmin)).collect()
}

/// Per output pixel along one axis: the grid cells around its centre and the second's weight.
fn axis(image: u32, grid: u32) -> Vec<(usize, usize, f64)> {
    let (scale, last) = (f64::from(grid) / f64::from(image), grid as usize - 1);
    let at = |i: u32| ((f64::from(i) + 0.5) * scale - 0.5).clamp(0.0, last as f64);
    let cells = |u: f64| (floor_usize(u), (floor_usize(u) + 1).min(last), u.fract());
    (0..image).map(at).map(cells).collect()
}

/// An illumination function: a grid of f32 values, expanded to the image size by bilinear
/// interpolation at pixel centres (a grid of the image size expands to itself exactly).
#[derive(Debug, Clone, PartialEq)]
pub struct IllumFunction {
    /// Width of the images it corrects.
    pub image_width: u32,
    /// Height of the images it corrects.
    pub image_height: u32,
    /// Grid width (>= 1).
    pub grid_width: u32,
    /// Grid height (>= 1).
    pub grid_height: u32,
    /// `grid_width * grid_height` values, row-major, finite and >= 1 when computed here.
    pub grid: Vec<f32>,
}

impl IllumFunction {
    /// From a plate's sum: mean = sum / images (f64), block mean to the grid (edge blocks average
    /// the pixels they have), square median filter (shrunk to in-bounds pixels at the borders; an
    /// even count takes the mean of the middle two), robust minimum rescale. Error if images == 0.
    pub fn compute(sum: &IllumSum, params: IllumParams) -> Result<Self, IllumError> {
        let (p, w, h) = (params, sum.width, sum.height);
        let fraction_ok = p.filter_fraction.is_finite() && p.filter_fraction >= 0.0;
        if p.block == 0 || !fraction_ok || !(0.0..=100.0).contains(&p.robust_min_percentile) {
            return Err(IllumError::Invalid(format!("{p:?}")));
        }
        if sum.images == 0 {
            return Err(IllumError::Empty);
        }
        check_len(pixels(w, h), sum.sum.len())?;
        let (gw, gh) = (w.div_ceil(p.block), h.div_ceil(p.block));
        let mean = block_mean(sum, p.block, gw);
        let side = window_side(p.filter_fraction, gw, gh);
        let smooth = median_filter(&mean, gw as usize, gh as usize, side);
        let grid = robust_min_rescale(&smooth, p.robust_min_percentile);
        Self::from_grid(w, h, gw, gh, grid)
    }

    /// A function given at full resolution (read from a file): grid == image size.
    /// Values must be finite and > 0 (error names the first bad index and value).
    pub fn from_full(width: u32, height: u32, values: Vec<f32>) -> Result<Self, IllumError> {
        Self::from_grid(width, height, width, height, values)
    }

    fn from_grid(iw: u32, ih: u32, gw: u32, gh: u32, grid: Vec<f32>) -> Result<Self, IllumError> {
        if [iw, ih, gw, gh].contains(&0) {
            return Err(IllumError::Invalid("zero width or height".to_owned()));
        }
        check_len(pixels(gw, gh), grid.len())?;
        if let Some(index) = grid.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            let value = grid[index];
            return Err(IllumError::Value { index, value });
        }
        let (image_width, image_height, grid_width, grid_height) = (iw, ih, gw, gh);
        Ok(Self {
            image_width,
            image_height,
            grid_width,
            grid_height,
            grid,
        })
    }

    /// The full-resolution function (bilinear, pixel-centre aligned: grid cell centres sit at
    /// ((gx + 0.5) * image_width / grid_width - 0.5), clamp outside the outermost centres).
    pub fn expand(&self) -> Vec<f32> {
        let xs = axis(self.image_width, self.grid_width);
        let ys = axis(self.image_height, self.grid_height);
        let gw = self.grid_width as usize;
        let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
        let mut out = Vec::with_capacity(xs.len() * ys.len());
        for &(y0, y1, ty) in &ys {
            let (r0, r1) = (&self.grid[y0 * gw..][..gw], &self.grid[y1 * gw..][..gw]);
            for &(x0, x1, tx) in &xs {
                let top = lerp(f64::from(r0[x0]), f64::from(r0[x1]), tx);
                let bottom = lerp(f64::from(r1[x0]), f64::from(r1[x1]), tx);
                out.push(narrow(lerp(top, bottom, ty)));
            }
        }
        out
    }

    /// Divides a plane by the expanded function in place: round half to even of v / f, clamped
    /// to 0..=65535. Plane size must equal the image size (IllumError::Size).
    pub fn apply(&self, expanded: &[f32], plane: &mut Plane) -> Result<(), IllumError> {
        let (w, h) = (self.image_width, self.image_height);
        check_size((w, h), (plane.width, plane.height))?;
        check_len(pixels(w, h), expanded.len())?;
        check_len(pixels(w, h), plane.data.len())?;
        // In f32, branch-free so it vectorises: adding and taking away 2^23 rounds a value
        // in [0, 2^23) to the nearest integer, ties to even (IEEE default rounding); `as`
        // saturates and maps NaN (0 / 0) to 0.
        const ROUND: f32 = 8_388_608.0;
        for (v, &f) in plane.data.iter_mut().zip(expanded) {
            let q = f32::from(*v) / f;
            let q = if q >= 65535.0 { 65535.0 } else { q };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in 0..=65535
            {
                *v = ((q + ROUND) - ROUND) as u16;
            }
        }
        Ok(())
    }

    /// The grid as little-endian f32 bytes (the stored form).
    pub fn grid_le_bytes(&self) -> Vec<u8> {
        self.grid.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A function from its stored grid bytes (length checked, values finite and > 0).
    pub fn from_grid_le_bytes(
        image_width: u32,
        image_height: u32,
        grid_width: u32,
        grid_height: u32,
        bytes: &[u8],
    ) -> Result<Self, IllumError> {
        check_len(pixels(grid_width, grid_height) * 4, bytes.len())?;
        let value = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let grid = bytes.chunks_exact(4).map(value).collect();
        Self::from_grid(image_width, image_height, grid_width, grid_height, grid)
    }
}

fn npy<T>(reason: impl Into<String>) -> Result<T, IllumError> {
    Err(IllumError::Npy(reason.into()))
}

/// The text after `'key':` in the header, a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str, IllumError> {
    match header.split_once(&format!("'{key}':")) {
        Some((_, value)) => Ok(value.trim_start()),
        None => npy(format!("header has no '{key}'")),
    }
}

/// `(descr, fortran_order, shape)` from the header.
fn parse_header(header: &[u8]) -> Result<(String, bool, Vec<u32>), IllumError> {
    let text = String::from_utf8_lossy(header);
    let descr = header_field(&text, "descr")?.trim_start_matches('\'');
    let descr = descr.split(['\'', ',']).next().unwrap_or_default();
    let fortran = match header_field(&text, "fortran_order")? {
        f if f.starts_with("True") => true,
        f if f.starts_with("False") => false,
        _ => return npy("header: fortran_order is not True or False"),
    };
    let shape = header_field(&text, "shape")?.trim_start_matches('(');
    let shape = shape.split(')').next().unwrap_or_default();
    let dims = shape.split(',').map(str::trim).filter(|d| !d.is_empty());
    let dims: Result<Vec<u32>, _> = dims.map(|d| d.trim_end_matches('L').parse()).collect();
    let Ok(dims) = dims else {
        return npy(format!("header: bad shape ({shape}), need u32 sizes"));
    };
    Ok((descr.to_owned(), fortran, dims))
}

/// One float32 or float64 element, narrowed to f32.
fn npy_value(c: &[u8], big: bool) -> f32 {
    let mut b = [0u8; 8];
    b[..c.len()].copy_from_slice(c);
    match (c.len(), big) {
        (4, false) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        (4, true) => f32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        (_, false) => narrow(f64::from_le_bytes(b)),
        (_, true) => narrow(f64::from_be_bytes(b)),
    }
}

/// Reads a NumPy .npy file (format versions 1.0, 2.0 and 3.0) holding a 2-D array of float32 or
/// float64 in either byte order (`=` and `|` are native), C order or Fortran order (transposed
/// here). Returns (height, width, values as f32, row-major). Anything else (other dtypes or
/// shapes, truncated data, a header over 64 KiB, > 2^28 elements) is IllumError::Npy.
pub fn read_npy(bytes: &[u8]) -> Result<(u32, u32, Vec<f32>), IllumError> {
    let Some(rest) = bytes.strip_prefix(b"\x93NUMPY") else {
        return npy("bad magic, not a .npy file");
    };
    let (len, rest) = match rest {
        [1, 0, a, b, rest @ ..] => (u32::from(u16::from_le_bytes([*a, *b])), rest),
        [2 | 3, 0, a, b, c, d, rest @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]), rest),
        [] | [_] | [1..=3, 0, ..] => return npy("truncated header"),
        [major, minor, ..] => return npy(format!("unsupported format version {major}.{minor}")),
    };
    if len > 1 << 16 {
        return npy(format!("header too long ({len} bytes, limit 64 KiB)"));
    }
    let Some((header, data)) = rest.split_at_checked(len as usize) else {
        return npy("truncated header");
    };
    let (descr, fortran, shape) = parse_header(header)?;
    let (big, size) = match descr.as_bytes() {
        [o @ (b'<' | b'>' | b'=' | b'|'), b'f', s @ (b'4' | b'8')] => {
            let native_big = *o != b'<' && cfg!(target_endian = "big");
            (*o == b'>' || native_big, usize::from(*s - b'0'))
        }
        _ => return npy(format!("unsupported dtype '{descr}', need f4 or f8")),
    };
    let [h, w] = shape[..] else {
        return npy(format!("{}-D shape {shape:?}, need 2-D", shape.len()));
    };
    if !(1..=1 << 28).contains(&(u64::from(h) * u64::from(w))) {
        return npy(format!("shape ({h}, {w}) has 0 or more than 2^28 elements"));
    }
    let (need, have) = (pixels(w, h) * size, data.len());
    if have != need {
        let cause = ["trailing bytes", "truncated data"][usize::from(have < need)];
        return npy(format!("{cause}: need {need} data bytes, have {have}"));
    }
    let values: Vec<f32> = data.chunks_exact(size).map(|c| npy_value(c, big)).collect();
    if !fortran {
        return Ok((h, w, values));
    }
    let (hu, wu) = (h as usize, w as usize);
    let at = |i: usize| values[(i % wu) * hu + i / wu];
    Ok((h, w, (0..hu * wu).map(at).collect()))
}

/// Writes a 2-D little-endian float32 .npy (version 1.0), for tests and for exporting a
/// function. Panics if `values` does not hold `height * width` values.
pub fn write_npy_f32(height: u32, width: u32, values: &[f32]) -> Vec<u8> {
    assert_eq!(values.len(), pixels(width, height), "need h * w values");
    let shape = format!("({height}, {width})");
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Spaces and a newline up to a 64-byte boundary for the data, as NumPy pads it.
    let padded = (10 + dict.len() + 1).next_multiple_of(64) - 11;
    let header = format!("{dict:<padded$}\n");
    let len = u16::try_from(header.len()).expect("the header is under 128 bytes");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[cfg(test)]
#[path = "illum_tests.rs"]
mod tests;
