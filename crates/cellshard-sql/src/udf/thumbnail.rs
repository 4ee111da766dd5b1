//! `tensor_thumbnail`: a small RGB PNG of a tensor in its channels' colours (RxRx1's viewer
//! colours for `w1`..`w6`, the stain colours of named channels: [`Palette`]).

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder};
use datafusion::common::{DataFusionError, Result, exec_err};

use cellshard_core::palette::Palette;

use super::tensor::{Dtype, TensorSpec};

/// Values on the 0..255 display scale: uint8 as is, uint16 / 257, floats (z-scores) mapped
/// from -3..3 onto 0..255.
fn display_scale(v: f64, dtype: Dtype) -> f64 {
    match dtype {
        Dtype::U8 => v,
        Dtype::U16 => v / 257.0,
        Dtype::F16 | Dtype::F32 => ((v + 3.0) / 6.0).clamp(0.0, 1.0) * 255.0,
    }
}

/// Channel `c`'s (1-based) intensity in 0..1 of each of `size` x `size` boxes: the box mean
/// on the display scale over the channel's display maximum, capped at 1.
pub fn channel_intensity(spec: &TensorSpec, t: &[u8], c: usize, size: usize) -> Result<Vec<f64>> {
    let palette = Palette::new(spec.channels, &[]);
    channel_intensity_with(spec, t, c, size, &palette.maxima)
}

/// [`channel_intensity`] with other display maxima (0..255 display scale).
pub fn channel_intensity_with(
    spec: &TensorSpec,
    t: &[u8],
    c: usize,
    size: usize,
    maxima: &[f64],
) -> Result<Vec<f64>> {
    let limit = spec.height.min(spec.width);
    if size < 1 || size > limit {
        return exec_err!("image size {size} is outside 1..={limit}");
    }
    let top = spec.channels.min(maxima.len());
    if c < 1 || c > top {
        return exec_err!("channel {c} is outside 1..={top}");
    }
    let v = spec.channel_values(t, c as i64)?;
    let mut out = Vec::with_capacity(size * size);
    for oy in 0..size {
        let (y0, y1) = (oy * spec.height / size, (oy + 1) * spec.height / size);
        for ox in 0..size {
            let (x0, x1) = (ox * spec.width / size, (ox + 1) * spec.width / size);
            let mut sum = 0.0;
            for y in y0..y1 {
                sum += v[y * spec.width + x0..y * spec.width + x1]
                    .iter()
                    .sum::<f64>();
            }
            let mean = sum / ((y1 - y0) * (x1 - x0)) as f64;
            out.push((display_scale(mean, spec.dtype) / maxima[c - 1].max(1e-9)).min(1.0));
        }
    }
    Ok(out)
}

/// A `size` x `size` RGB composite (row-major, 3 bytes a pixel) of `channels` (1-based) in
/// the colours of `palette`: x = min(1, box mean / display max) per channel,
/// rgb = clip(sum x * colour).
pub fn composite(
    spec: &TensorSpec,
    t: &[u8],
    size: usize,
    channels: &[usize],
    palette: &Palette,
) -> Result<Vec<u8>> {
    composite_with(spec, t, size, channels, palette, &palette.maxima)
}

/// [`composite`] with other display maxima (0..255 display scale).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "clamped to 0..=255 first"
)]
pub fn composite_with(
    spec: &TensorSpec,
    t: &[u8],
    size: usize,
    channels: &[usize],
    palette: &Palette,
    maxima: &[f64],
) -> Result<Vec<u8>> {
    let mut rgb = vec![0f64; size * size * 3];
    for &c in channels {
        let x = channel_intensity_with(spec, t, c, size, maxima)?;
        let Some(colour) = palette.colours.get(c - 1) else {
            return exec_err!("channel {c} has no colour");
        };
        for (px, x) in rgb.chunks_exact_mut(3).zip(x) {
            for k in 0..3 {
                px[k] += x * colour[k];
            }
        }
    }
    Ok(rgb
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect())
}

/// Display maxima that put each channel's `q` quantile (0..1) of `t` at full colour: for
/// stores whose normalization spreads values over the whole output range.
pub fn auto_maxima(spec: &TensorSpec, t: &[u8], q: f64) -> Result<Vec<f64>> {
    let mut out = vec![1.0; spec.channels];
    for (c, m) in out.iter_mut().enumerate() {
        let mut v: Vec<f64> = spec
            .channel_values(t, c as i64 + 1)?
            .into_iter()
            .map(|v| display_scale(v, spec.dtype))
            .collect();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "q is clamped to 0..=1, so k is in 0..len"
        )]
        let k = ((v.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
        let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
        *m = x.max(1.0);
    }
    Ok(out)
}

/// Encode `w` x `h` RGB bytes as PNG.
pub fn rgb_png(w: usize, h: usize, rgb: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
        return exec_err!("an image of {w} x {h} pixels is too large for PNG");
    };
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc
        .write_header()
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    wr.write_image_data(rgb)
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    wr.finish()
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(out)
}

/// A `size` x `size` RGB PNG of all channels.
fn thumbnail(spec: &TensorSpec, t: &[u8], size: i64, palette: &Palette) -> Result<Vec<u8>> {
    let limit = spec.height.min(spec.width);
    let Some(size) = usize::try_from(size)
        .ok()
        .filter(|s| (1..=limit).contains(s))
    else {
        return exec_err!("thumbnail size {size} is outside 1..={limit}");
    };
    let channels: Vec<usize> = (1..=spec.channels).collect();
    rgb_png(size, size, &composite(spec, t, size, &channels, palette)?)
}

/// `tensor_thumbnail` of each tensor: `size` px where `sized` (the second argument was
/// given), else 128 px capped at the tensor's height and width.
pub(super) fn thumbnails(
    spec: &TensorSpec,
    tensors: &[Option<&[u8]>],
    size: &[Option<i64>],
    sized: bool,
    names: &[String],
) -> Result<ArrayRef> {
    let palette = Palette::new(spec.channels, names);
    let mut b = BinaryBuilder::new();
    for (i, t) in tensors.iter().enumerate() {
        match t {
            Some(t) => {
                let size = if sized {
                    size[i]
                } else {
                    Some(128.min(spec.height.min(spec.width)) as i64)
                };
                match size {
                    Some(s) => b.append_value(thumbnail(spec, t, s, &palette)?),
                    None => b.append_null(),
                }
            }
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "expected bytes, in 0..=255"
    )]
    fn thumbnail_uses_rxrx1_colours() {
        // One pixel, six channels, each at its display maximum except channel 1 at zero.
        let s = TensorSpec {
            channels: 6,
            height: 1,
            width: 1,
            dtype: Dtype::U8,
        };
        let t = vec![0u8, 0, 0, 0, 0, 0];
        let png_bytes = thumbnail(&s, &t, 1, &Palette::new(6, &[])).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..3], &[0, 0, 0]);
        // Channel 1 alone at half its maximum: half of [19, 0, 249].
        let t = vec![25u8, 0, 0, 0, 0, 0];
        let png_bytes = thumbnail(&s, &t, 1, &Palette::new(6, &[])).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        r.next_frame(&mut buf).unwrap();
        let x: f64 = 25.0 / 51.0;
        assert_eq!(
            &buf[..3],
            &[(19.0 * x).round() as u8, 0, (249.0 * x).round() as u8]
        );
        // Saturation clips at 255.
        let t = vec![255u8; 6];
        let png_bytes = thumbnail(&s, &t, 1, &Palette::new(6, &[])).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        r.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..3], &[255, 255, 255]);
        assert!(thumbnail(&s, &t, 2, &Palette::new(6, &[])).is_err());
    }
}
