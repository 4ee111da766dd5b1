//! The one walk over a PNG's chunks, and the header checks made before any pixel buffer
//! is allocated.
//!
//! [`PngChunks::read`] walks the file once: the signature, every chunk's length within the
//! file and its CRC, up to `IEND`. On the way it keeps the first chunk (which must be a
//! valid `IHDR`) and the body of every `IDAT` chunk, in order, as slices of the input. The
//! decoders inflate from those slices and never walk the file again. Because a crop-aware
//! decode stops inflating after the last row it needs, checking every CRC here is what
//! keeps a corrupt or truncated tail from passing unnoticed.
//!
//! [`Header::check`] holds the file to a [`DecodeSpec`]; its pixel limit is the guard
//! against decompression bombs (a small file whose header claims a huge image).

use super::error::DecodeError;

/// The eight bytes every PNG file starts with.
pub(crate) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// What a decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSpec {
    /// Required bit depth (8 or 16).
    pub bit_depth: u8,
    /// Required width, if fixed.
    pub width: Option<u32>,
    /// Required height, if fixed.
    pub height: Option<u32>,
    /// Headers claiming more pixels are refused before any allocation.
    pub max_pixels: u64,
}

/// The fields of a PNG's `IHDR` chunk, checked for validity against the PNG specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Width in pixels (at least 1).
    pub width: u32,
    /// Height in pixels (at least 1).
    pub height: u32,
    /// Bits per sample.
    pub bit_depth: u8,
    /// PNG colour type (0 grayscale, 2 RGB, 3 indexed, 4 grayscale + alpha, 6 RGBA).
    pub color_type: u8,
    /// Interlace method 1 (Adam7).
    pub interlaced: bool,
}

/// A PNG file walked once: its header and the bodies of its `IDAT` chunks.
#[derive(Debug, Clone)]
pub struct PngChunks<'a> {
    /// The `IHDR` fields.
    pub header: Header,
    idat: Vec<&'a [u8]>,
}

impl<'a> PngChunks<'a> {
    /// Walk `bytes` once (see the module docs): signature, chunk bounds, every CRC, an
    /// `IEND`, a valid `IHDR` first. Allocates nothing but the list of `IDAT` slices.
    pub fn read(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::corrupt("the file is empty (0 bytes)"));
        }
        if bytes.len() < 8 || bytes[..8] != SIGNATURE {
            return Err(DecodeError::corrupt("not a PNG file (bad signature)"));
        }
        let mut first: Option<(&[u8], &[u8])> = None;
        let mut idat = Vec::new();
        let mut pos = 8usize;
        loop {
            let Some(head) = bytes.get(pos..pos + 8) else {
                return Err(DecodeError::corrupt(format!(
                    "truncated: the file ends at byte {} inside a chunk header",
                    bytes.len()
                )));
            };
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let kind = &head[4..8];
            let end = pos.saturating_add(12).saturating_add(len);
            if end > bytes.len() {
                return Err(DecodeError::corrupt(format!(
                    "truncated: chunk {} at byte {pos} needs {} bytes, the file has {}",
                    String::from_utf8_lossy(kind),
                    end - pos,
                    bytes.len() - pos
                )));
            }
            let crc = u32::from_be_bytes([
                bytes[end - 4],
                bytes[end - 3],
                bytes[end - 2],
                bytes[end - 1],
            ]);
            if crc32fast::hash(&bytes[pos + 4..end - 4]) != crc {
                return Err(DecodeError::corrupt(format!(
                    "bad CRC in chunk {} at byte {pos}",
                    String::from_utf8_lossy(kind)
                )));
            }
            let body = &bytes[pos + 8..end - 4];
            first.get_or_insert((kind, body));
            match kind {
                b"IEND" => break,
                b"IDAT" => idat.push(body),
                _ => {}
            }
            pos = end;
        }
        // The loop breaks only after it has seen a chunk, so `first` is set.
        let (kind, body) = first.unwrap_or((b"IEND", &[]));
        Ok(Self {
            header: Header::parse(kind, body)?,
            idat,
        })
    }

    /// The bodies of the `IDAT` chunks, in file order.
    pub fn idat(&self) -> &[&'a [u8]] {
        &self.idat
    }

    /// The zlib stream: the one `IDAT` body in place (what most encoders write for a
    /// single image), or every body copied, in order, into `scratch`.
    pub fn zlib_stream<'s>(&'s self, scratch: &'s mut Vec<u8>) -> &'s [u8] {
        if let [only] = self.idat[..] {
            return only;
        }
        scratch.clear();
        for body in &self.idat {
            scratch.extend_from_slice(body);
        }
        scratch
    }
}

impl Header {
    /// Parse the first chunk, which the PNG specification requires to be a valid `IHDR`.
    fn parse(kind: &[u8], body: &[u8]) -> Result<Self, DecodeError> {
        if kind != b"IHDR" {
            return Err(DecodeError::corrupt(format!(
                "invalid PNG: the first chunk is {}, not IHDR",
                String::from_utf8_lossy(kind)
            )));
        }
        let &[
            w0,
            w1,
            w2,
            w3,
            h0,
            h1,
            h2,
            h3,
            bit_depth,
            color_type,
            compression,
            filter,
            interlace,
        ] = body
        else {
            return Err(DecodeError::corrupt(format!(
                "invalid PNG: IHDR has {} bytes, not 13",
                body.len()
            )));
        };
        let width = u32::from_be_bytes([w0, w1, w2, w3]);
        let height = u32::from_be_bytes([h0, h1, h2, h3]);
        let max = (1u32 << 31) - 1;
        if width == 0 || height == 0 || width > max || height > max {
            return Err(DecodeError::corrupt(format!(
                "invalid PNG: image size {width}x{height}"
            )));
        }
        let depths: &[u8] = match color_type {
            0 => &[1, 2, 4, 8, 16],
            3 => &[1, 2, 4, 8],
            2 | 4 | 6 => &[8, 16],
            _ => &[],
        };
        if !depths.contains(&bit_depth) {
            return Err(DecodeError::corrupt(format!(
                "invalid PNG: bit depth {bit_depth} with colour type {color_type}"
            )));
        }
        if compression != 0 || filter != 0 || interlace > 1 {
            return Err(DecodeError::corrupt(format!(
                "invalid PNG: compression method {compression}, filter method {filter}, \
                 interlace method {interlace}"
            )));
        }
        Ok(Self {
            width,
            height,
            bit_depth,
            color_type,
            interlaced: interlace == 1,
        })
    }

    /// Check the header against `spec`: the pixel limit first (nothing has been allocated
    /// for pixels yet), then grayscale, bit depth and expected size.
    pub fn check(&self, spec: &DecodeSpec) -> Result<(), DecodeError> {
        spec.check_pixels(self.width, self.height)?;
        if self.color_type != 0 {
            let name = match self.color_type {
                2 => "Rgb",
                3 => "Indexed",
                4 => "GrayscaleAlpha",
                _ => "Rgba",
            };
            return Err(DecodeError::format(format!(
                "colour type {name}; a single-channel grayscale PNG is expected"
            )));
        }
        spec.check_depth_and_size(self.width, self.height, self.bit_depth)
    }
}

impl DecodeSpec {
    /// A header's pixel count against the limit, before anything is allocated.
    pub fn check_pixels(&self, w: u32, h: u32) -> Result<(), DecodeError> {
        if u64::from(w) * u64::from(h) > self.max_pixels {
            return Err(DecodeError::format(format!(
                "the header claims {w}x{h} pixels, over the limit of {} pixels (refused before decoding)",
                self.max_pixels
            )));
        }
        Ok(())
    }

    /// A header's bit depth and size against the pipeline's.
    pub fn check_depth_and_size(&self, w: u32, h: u32, depth: u8) -> Result<(), DecodeError> {
        if depth != self.bit_depth {
            return Err(DecodeError::format(format!(
                "bit depth {depth}; the pipeline expects {}",
                self.bit_depth
            )));
        }
        if self.width.is_some_and(|x| x != w) || self.height.is_some_and(|x| x != h) {
            return Err(DecodeError::format(format!(
                "size {w}x{h}; the pipeline expects {}x{}",
                self.width.map_or("any".into(), |x| x.to_string()),
                self.height.map_or("any".into(), |x| x.to_string())
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::png::error::DecodeErrorKind;
    use crate::png::fixtures::{chunk, encode_rows};

    fn with_ihdr(body: &[u8]) -> Vec<u8> {
        let mut png = SIGNATURE.to_vec();
        chunk(&mut png, b"IHDR", body);
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn one_walk_finds_the_header_and_every_idat_in_order() {
        let px: Vec<u16> = (0..40 * 30).map(|i| u16::try_from(i).unwrap()).collect();
        let png = encode_rows(40, 30, 16, &px, &[4, 1], 7);
        let c = PngChunks::read(&png).unwrap();
        assert_eq!(
            c.header,
            Header {
                width: 40,
                height: 30,
                bit_depth: 16,
                color_type: 0,
                interlaced: false
            }
        );
        assert!(c.idat().len() > 1 && c.idat().iter().all(|b| b.len() <= 7));
        let mut scratch = Vec::new();
        let stream = c.zlib_stream(&mut scratch).to_vec();
        assert_eq!(stream, c.idat().concat());
        let one = encode_rows(40, 30, 16, &px, &[4, 1], 1 << 20);
        let c = PngChunks::read(&one).unwrap();
        let mut unused = Vec::new();
        // A single IDAT is used in place, not copied.
        assert_eq!(c.zlib_stream(&mut unused).as_ptr(), c.idat()[0].as_ptr());
        assert!(unused.is_empty());
    }

    #[test]
    fn an_invalid_ihdr_is_corrupt() {
        let ok = [0, 0, 0, 4, 0, 0, 0, 4, 16, 0, 0, 0, 0];
        assert!(PngChunks::read(&with_ihdr(&ok)).is_ok());
        for (body, words) in [
            (
                &[0, 0, 0, 0, 0, 0, 0, 4, 16, 0, 0, 0, 0][..],
                "image size 0x4",
            ),
            (&[0, 0, 0, 4, 0, 0, 0, 4, 3, 0, 0, 0, 0], "bit depth 3"),
            (&[0, 0, 0, 4, 0, 0, 0, 4, 16, 3, 0, 0, 0], "colour type 3"),
            (
                &[0, 0, 0, 4, 0, 0, 0, 4, 16, 0, 1, 0, 0],
                "compression method 1",
            ),
            (
                &[0, 0, 0, 4, 0, 0, 0, 4, 16, 0, 0, 0, 2],
                "interlace method 2",
            ),
            (&ok[..12], "12 bytes"),
        ] {
            let e = PngChunks::read(&with_ihdr(body)).unwrap_err();
            assert_eq!(e.kind, DecodeErrorKind::Corrupt);
            assert!(e.message.contains(words), "{e}");
        }
        let mut no_ihdr = SIGNATURE.to_vec();
        chunk(&mut no_ihdr, b"IEND", &[]);
        let e = PngChunks::read(&no_ihdr).unwrap_err();
        assert!(e.message.contains("first chunk is IEND"), "{e}");
    }

    #[test]
    fn a_huge_chunk_length_is_truncation_not_a_panic() {
        let mut png = SIGNATURE.to_vec();
        png.extend_from_slice(&u32::MAX.to_be_bytes());
        png.extend_from_slice(b"IDAT");
        let e = PngChunks::read(&png).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
    }
}
