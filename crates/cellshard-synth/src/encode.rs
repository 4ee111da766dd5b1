//! Samples to PNG bytes, and hand-built zlib streams for decoder tests.

use crate::{Error, Result, SynthConfig};

/// Encode `size * size` samples as a grayscale PNG of `cfg.bit_depth` bits.
pub fn encode_png(cfg: &SynthConfig, samples: &[u16]) -> Result<Vec<u8>> {
    let side = cfg.size as usize;
    if samples.len() != side * side {
        return Err(Error::Config(format!(
            "{} samples do not make a {side} x {side} image",
            samples.len()
        )));
    }
    let (depth, bytes) = match cfg.bit_depth {
        8 => {
            let mut bytes = Vec::with_capacity(samples.len());
            for &v in samples {
                let b = u8::try_from(v)
                    .map_err(|_| Error::Config(format!("sample {v} does not fit 8 bits")))?;
                bytes.push(b);
            }
            (png::BitDepth::Eight, bytes)
        }
        16 => (
            png::BitDepth::Sixteen,
            samples.iter().flat_map(|v| v.to_be_bytes()).collect(),
        ),
        other => {
            return Err(Error::Config(format!(
                "bit_depth is {other}, must be 8 or 16"
            )));
        }
    };
    let mut out = Vec::with_capacity(bytes.len() / 2 + 1024);
    let mut encoder = png::Encoder::new(&mut out, cfg.size, cfg.size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(depth);
    encoder.set_compression(cfg.compression.png());
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&bytes)?;
    writer.finish()?;
    Ok(out)
}

/// `raw` as a zlib stream of stored (uncompressed) deflate blocks of at most `block` bytes
/// (clamped to 1..=65,535): what some encoders write at level 0, and the case where a
/// bounded inflate stops furthest before the end of its buffer. For tests of decoders.
#[allow(
    clippy::cast_possible_truncation,
    reason = "block is clamped to 1..=65,535 first"
)]
pub fn zlib_stored(raw: &[u8], block: usize) -> Vec<u8> {
    let block = block.clamp(1, 65_535);
    let mut z = Vec::with_capacity(raw.len() + raw.len() / block * 5 + 11);
    z.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = raw.chunks(block).peekable();
    if blocks.peek().is_none() {
        // An empty final stored block.
        z.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(b) = blocks.next() {
        z.push(u8::from(blocks.peek().is_none()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &v in raw {
        a = (a + u32::from(v)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    z
}
