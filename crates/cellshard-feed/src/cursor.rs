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
        let version = i64::try_from(u64_at(0)).map_err(|_| bad("its version is out of range"))?;
        let (global_batch, clump) = (u32_at(44), u32_at(48));
        if global_batch == 0 || clump == 0 {
            return Err(bad("its batch size or clump is 0"));
        }
        Ok(Cursor {
            version,
            selection: u64_at(1),
            seed: u64_at(2),
            epoch: u64_at(3),
            position: u64_at(4),
            global_batch,
            clump,
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

    proptest::proptest! {
        /// Any bytes are a cursor or a clear error, never a panic or a negative version.
        #[test]
        fn any_bytes_parse_or_are_refused(b in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Ok(c) = Cursor::from_bytes(&b) {
                proptest::prop_assert!(c.version >= 0 && c.global_batch > 0 && c.clump > 0);
            }
        }

        /// Bytes with the right length and header but any fields: still never a panic.
        #[test]
        fn forged_fields_parse_or_are_refused(fields in proptest::collection::vec(proptest::num::u8::ANY, 49)) {
            let mut b = MAGIC.to_vec();
            b.push(FORMAT);
            b.extend(&fields);
            if let Ok(c) = Cursor::from_bytes(&b) {
                proptest::prop_assert!(c.version >= 0);
                proptest::prop_assert_eq!(Cursor::from_bytes(&c.to_bytes()).unwrap(), c);
            }
        }

        /// Every valid cursor round-trips.
        #[test]
        fn valid_cursors_round_trip(
            version in 0i64..=i64::MAX,
            selection: u64,
            seed: u64,
            epoch: u64,
            position: u64,
            global_batch in 1u32..,
            clump in 1u32..,
        ) {
            let c = Cursor { version, selection, seed, epoch, position, global_batch, clump, tail: Tail::PadMasked };
            proptest::prop_assert_eq!(Cursor::from_bytes(&c.to_bytes()).unwrap(), c);
        }
    }

    #[test]
    fn a_forged_negative_version_is_refused() {
        let mut b = Cursor {
            version: 1,
            selection: 0,
            seed: 0,
            epoch: 0,
            position: 0,
            global_batch: 1,
            clump: 1,
            tail: Tail::PadMasked,
        }
        .to_bytes();
        b[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = Cursor::from_bytes(&b).unwrap_err().to_string();
        assert!(e.contains("version is out of range"), "{e}");
    }
}
