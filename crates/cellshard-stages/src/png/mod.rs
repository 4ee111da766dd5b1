//! PNG decoding to u16 samples, with guards, and the crop-aware fused path.
//!
//! Every entry point walks the file once ([`PngChunks::read`]: signature, chunk bounds,
//! every CRC, `IHDR`), checks the header against the [`DecodeSpec`] before allocating any
//! pixels, and decodes from the `IDAT` slices that walk found. [`decode_full`] decodes every
//! row. [`decode_transformed`] produces exactly
//! `center_crop(downsample(decode_full(png)))` with the crop-aware decoder ([`CropDecoder`]):
//! it inflates only up to the last row the crop needs, unfilters only the columns left of
//! the crop's right edge and downsamples as row pairs complete.
//!
//! Submodules depend one way: `error`, `chunks`, `inflate` and `unfilter` at the bottom,
//! `crop` above them, `full` above `crop`, and the entry points here.

mod chunks;
mod crop;
mod error;
mod full;
mod inflate;
mod unfilter;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod tests;

pub use chunks::{DecodeSpec, Header, PngChunks};
pub use crop::{CropDecoder, CropGeometry};
pub use error::{DecodeError, DecodeErrorKind};
pub use inflate::BulkInflater;
pub use unfilter::unfilter;

use crate::Plane;

/// Decode every pixel (the straightforward path).
pub fn decode_full(bytes: &[u8], spec: &DecodeSpec) -> Result<Plane, DecodeError> {
    let png = PngChunks::read(bytes)?;
    png.header.check(spec)?;
    full::decode(&png)
}

/// Decode, downsample by `factor` and center-crop to `crop`, doing only the work the crop
/// needs (see [`CropDecoder`]). Equals `center_crop(downsample(decode_full(..)))`.
/// Interlaced images, whose rows arrive in passes, take the straightforward path.
pub fn decode_transformed(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<Plane, DecodeError> {
    let png = PngChunks::read(bytes)?;
    png.header.check(spec)?;
    let g = CropGeometry::new(&png.header, factor, crop)?;
    if png.header.interlaced {
        let full = full::decode(&png)?;
        return Ok(crate::crop::downsample_then_crop(full, factor, crop));
    }
    crop::with_thread_decoder(|d| d.decode(&png, &g))
}
