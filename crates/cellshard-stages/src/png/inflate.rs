//! Inflating a PNG's zlib stream only as far as the rows a decode needs.
//!
//! Two paths give the same bytes. [`BulkInflater`] calls libdeflate once with an output
//! buffer that ends just past the last needed byte: libdeflate stops when the buffer is
//! full, having written everything before the point where it stopped. A stream libdeflate
//! rejects, or one that ends before the needed rows, goes through [`stream_rows`]: fdeflate
//! as a stream into a small window that keeps the 32 KiB of back-reference history. That
//! path names the row where the data fails, so its error is the one reported.
//!
//! Neither path reads the stream's Adler-32 trailer (a decode usually stops before it): the
//! chunk CRCs, checked by the walk in [`super::chunks`], stand in for it.

use super::error::DecodeError;

/// Deflate back-references reach at most this far back.
const WINDOW: usize = 32 * 1024;
/// Room for new output in the window beyond the history it keeps.
const FRESH: usize = 256 * 1024;
/// Slack past the last needed byte for the bulk inflate: libdeflate stops, without writing
/// it, at a stored block (up to 65,535 bytes) or a match (up to 258) that would overrun the
/// buffer, so with this much room every byte before the slack is written when it stops.
const BULK_SLACK: usize = 65_535 + 258 + 1;

/// libdeflate with a reusable output buffer, inflating a zlib stream up to a byte count.
#[derive(Default)]
pub struct BulkInflater {
    decompressor: Option<libdeflater::Decompressor>,
    out: Vec<u8>,
}

impl std::fmt::Debug for BulkInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkInflater")
            .field("out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl BulkInflater {
    /// An inflater with an empty buffer; it grows on first use and is kept.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inflate the zlib `stream` until at least `limit` bytes are out and return those
    /// `limit` bytes. `None` when it cannot: a corrupt or short stream, a preset dictionary.
    pub fn inflate(&mut self, stream: &[u8], limit: usize) -> Option<&[u8]> {
        // The zlib header: deflate method, no preset dictionary, a valid check value.
        let [cmf, flg, ..] = *stream else {
            return None;
        };
        if cmf & 0x0f != 8 || flg & 0x20 != 0 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
            return None;
        }
        let size = limit + BULK_SLACK;
        if self.out.len() < size {
            self.out.resize(size, 0);
        }
        let d = self
            .decompressor
            .get_or_insert_with(libdeflater::Decompressor::new);
        let complete = match d.deflate_decompress(&stream[2..], &mut self.out[..size]) {
            Ok(n) => n >= limit,
            Err(libdeflater::DecompressionError::InsufficientSpace) => true,
            Err(libdeflater::DecompressionError::BadData) => false,
        };
        complete.then(|| &self.out[..limit])
    }
}

/// The streaming path: inflate `stream` with fdeflate through `window`, handing rows
/// `0..rows` of `row_len` bytes each (filter byte included) to `each` as they complete.
pub(crate) fn stream_rows(
    window: &mut Vec<u8>,
    stream: &[u8],
    row_len: usize,
    rows: usize,
    mut each: impl FnMut(usize, &[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    window.clear();
    window.resize(WINDOW + FRESH + row_len, 0);
    let mut inflater = fdeflate::Decompressor::new();
    inflater.ignore_adler32();
    let mut in_pos = 0usize;
    // Window state: bytes [0, out_pos) hold output; [row_pos, out_pos) is not yet consumed.
    let mut out_pos = 0usize;
    let mut row_pos = 0usize;
    for y in 0..rows {
        while out_pos - row_pos < row_len {
            if out_pos + row_len > window.len() {
                // Keep the back-reference history and the unconsumed bytes; drop the rest.
                let keep_from = out_pos.saturating_sub(WINDOW).min(row_pos);
                window.copy_within(keep_from..out_pos, 0);
                out_pos -= keep_from;
                row_pos -= keep_from;
            }
            if inflater.is_done() {
                return Err(DecodeError::truncated(y));
            }
            let (consumed, produced) = inflater
                .read(&stream[in_pos..], window, out_pos, true)
                .map_err(|e| match e {
                    fdeflate::DecompressionError::InsufficientInput => DecodeError::truncated(y),
                    e => DecodeError::corrupt(format!(
                        "invalid PNG: corrupt deflate stream in row {y}: {e:?}"
                    )),
                })?;
            in_pos += consumed;
            out_pos += produced;
            if consumed == 0 && produced == 0 && out_pos - row_pos < row_len {
                return Err(DecodeError::truncated(y));
            }
        }
        each(y, &window[row_pos..row_pos + row_len])?;
        row_pos += row_len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "keeps the low byte: a pseudo-random byte pattern"
    )]
    fn bulk_stops_at_the_limit_and_refuses_what_it_cannot_inflate() {
        let raw: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let z = fdeflate::compress_to_vec(&raw);
        let mut b = BulkInflater::new();
        assert_eq!(b.inflate(&z, 1000).unwrap(), &raw[..1000]);
        assert_eq!(b.inflate(&z, raw.len()).unwrap(), &raw[..]);
        assert!(b.inflate(&z, raw.len() + 1).is_none());
        assert!(b.inflate(&z[..z.len() / 2], raw.len()).is_none());
        assert!(b.inflate(&[0x78], 1).is_none());
    }

    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "keeps the low byte: a pseudo-random byte pattern"
    )]
    fn streamed_rows_match_and_a_short_stream_names_its_row() {
        let raw: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let z = fdeflate::compress_to_vec(&raw);
        let mut window = Vec::new();
        let mut got = Vec::new();
        stream_rows(&mut window, &z, 1000, 300, |y, row| {
            assert_eq!(got.len(), y * 1000);
            got.extend_from_slice(row);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, raw);
        let e = stream_rows(&mut window, &z, 1000, 301, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.message, "truncated: image data ends before row 300");
    }
}
