//! A feed's position: enough to continue an epoch exactly, the same bytes on every rank.

use crate::order::Tail;
use crate::{Error, Result};

/// Where a feed stands. World size and rank are not part of it: a cursor taken with W
/// ranks resumes with any W' (the global batches from there on are the same when G is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The `sites` version the feed pinned.
    pub version: i64,
    /// Hash of the selection (predicate, split) the feed was opened with.
    pub selection: u64,
    /// Shuffle seed.
    pub seed: u64,
    /// Epoch.
    pub epoch: u64,
    /// Global positions of the epoch consumed so far.
    pub position: u64,
    /// Global batch size.
    pub global_batch: u32,
    /// Clump size of the shuffle.
    pub clump: u32,
    /// Tail policy.
    pub tail: Tail,
}

const MAGIC: [u8; 3] = *b"CSF";
const FORMAT: u8 = 1;
/// Encoded length in bytes.
pub const CURSOR_BYTES: usize = 4 + 8 * 5 + 4 + 4 + 1;

impl Cursor {
    /// The cursor as bytes (fixed layout, little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CURSOR_BYTES);
        out.extend(MAGIC);
        out.push(FORMAT);
        for v in [
            self.version as u64,
            self.selection,
            self.seed,
            self.epoch,
            self.position,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(self.global_batch.to_le_bytes());
        out.extend(self.clump.to_le_bytes());
        out.push(self.tail.code());
        out
    }

    /// A cursor from [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = |m: &str| Error::Usage(format!("not a cellshard feed cursor: {m}"));
        if b.len() != CURSOR_BYTES || b[..3] != MAGIC {
            return Err(bad("wrong length or magic"));
        }
        if b[3] != FORMAT {
            return Err(bad("unknown format version"));
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[4 + 8 * i..12 + 8 * i]);
            u64::from_le_bytes(a)
        };
        let u32_at = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[o..o + 4]);
            u32::from_le_bytes(a)
        };
        Ok(Cursor {
            version: u64_at(0) as i64,
            selection: u64_at(1),
            seed: u64_at(2),
            epoch: u64_at(3),
            position: u64_at(4),
            global_batch: u32_at(44),
            clump: u32_at(48),
            tail: Tail::from_code(b[52]).ok_or_else(|| bad("unknown tail policy"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_in_53_bytes() {
        let c = Cursor {
            version: 12,
            selection: 0xDEAD_BEEF,
            seed: 7,
            epoch: 3,
            position: 4096,
            global_batch: 256,
            clump: 16,
            tail: Tail::Repeat,
        };
        let b = c.to_bytes();
        assert_eq!(b.len(), CURSOR_BYTES);
        assert_eq!(CURSOR_BYTES, 53);
        assert_eq!(Cursor::from_bytes(&b).unwrap(), c);
        assert!(Cursor::from_bytes(&b[1..]).is_err());
    }
}
