//! The decode stage for any supported format: the pipeline's choice, or by the object's
//! name and first bytes.

use cellshard_core::ImageFormat;

use crate::Plane;
use crate::png::{DecodeError, DecodeSpec};

/// The format a file is decoded as: the pipeline's `png` or `tiff`, or for `auto` the
/// object's extension (`.png`, `.tif`, `.tiff`, in any case), else its signature.
pub fn format_of(choice: ImageFormat, name: &str, bytes: &[u8]) -> ImageFormat {
    if choice != ImageFormat::Auto {
        return choice;
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".png") {
        ImageFormat::Png
    } else if lower.ends_with(".tif") || lower.ends_with(".tiff") || crate::tiff::is_tiff(bytes) {
        ImageFormat::Tiff
    } else {
        ImageFormat::Png
    }
}

/// Decode object `name`, downsample by `factor` and center-crop to `crop`, in the format
/// `choice` resolves to.
pub fn decode_transformed(
    bytes: &[u8],
    name: &str,
    choice: ImageFormat,
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<Plane, DecodeError> {
    match format_of(choice, name, bytes) {
        ImageFormat::Tiff => crate::tiff::decode_transformed(bytes, spec, factor, crop),
        _ => crate::png::decode_transformed(bytes, spec, factor, crop),
    }
}
