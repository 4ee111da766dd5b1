//! `tensor_thumbnail`: a small RGB PNG of a tensor in the RxRx1 viewer colours.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder};
use datafusion::common::{DataFusionError, Result, exec_err};

use super::tensor::{Dtype, TensorSpec};

/// RxRx1 viewer colours (rxrx1-utils) per channel, and display maxima on a 0..255 scale.
const RGB: [[f64; 3]; 6] = [
    [19.0, 0.0, 249.0],
    [42.0, 255.0, 31.0],
    [255.0, 0.0, 25.0],
    [45.0, 255.0, 252.0],
    [250.0, 0.0, 253.0],
    [254.0, 255.0, 40.0],
];
const DISPLAY_MAX: [f64; 6] = [51.0, 107.0, 64.0, 191.0, 89.0, 191.0];

/// Values on the 0..255 display scale: uint8 as is, uint16 / 257, floats (z-scores) mapped
/// from -3..3 onto 0..255.
fn display_scale(v: f64, dtype: Dtype) -> f64 {
    match dtype {
        Dtype::U8 => v,
        Dtype::U16 => v / 257.0,
        Dtype::F16 | Dtype::F32 => ((v + 3.0) / 6.0).clamp(0.0, 1.0) * 255.0,
    }
}

/// A `size` x `size` RGB PNG: box-averaged channels, x = min(1, v / max), rgb = clip(sum x * colour).
fn thumbnail(spec: &TensorSpec, t: &[u8], size: i64) -> Result<Vec<u8>> {
    let limit = spec.height.min(spec.width) as i64;
    if size < 1 || size > limit {
        return exec_err!("thumbnail size {size} is outside 1..={limit}");
    }
    let size = size as usize;
    let mut rgb = vec![0f64; size * size * 3];
    for c in 0..spec.channels.min(6) {
        let v = spec.channel_values(t, c as i64 + 1)?;
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
                let x = (display_scale(mean, spec.dtype) / DISPLAY_MAX[c]).min(1.0);
                let px = &mut rgb[(oy * size + ox) * 3..][..3];
                for k in 0..3 {
                    px[k] += x * RGB[c][k];
                }
            }
        }
    }
    let bytes: Vec<u8> = rgb
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size as u32, size as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc
            .write_header()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        w.write_image_data(&bytes)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
    }
    Ok(out)
}

/// `tensor_thumbnail` of each tensor: `size` px where `sized` (the second argument was
/// given), else 128 px capped at the tensor's height and width.
pub(super) fn thumbnails(
    spec: &TensorSpec,
    tensors: &[Option<&[u8]>],
    size: &[Option<i64>],
    sized: bool,
) -> Result<ArrayRef> {
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
                    Some(s) => b.append_value(thumbnail(spec, t, s)?),
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
    fn thumbnail_uses_rxrx1_colours() {
        // One pixel, six channels, each at its display maximum except channel 1 at zero.
        let s = TensorSpec {
            channels: 6,
            height: 1,
            width: 1,
            dtype: Dtype::U8,
        };
        let t = vec![0u8, 0, 0, 0, 0, 0];
        let png_bytes = thumbnail(&s, &t, 1).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..3], &[0, 0, 0]);
        // Channel 1 alone at half its maximum: half of [19, 0, 249].
        let t = vec![25u8, 0, 0, 0, 0, 0];
        let png_bytes = thumbnail(&s, &t, 1).unwrap();
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
        let png_bytes = thumbnail(&s, &t, 1).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        r.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..3], &[255, 255, 255]);
        assert!(thumbnail(&s, &t, 2).is_err());
    }
}
