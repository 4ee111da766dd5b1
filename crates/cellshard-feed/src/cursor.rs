//! A feed's position: enough to continue an epoch exactly, the same bytes on every rank.

use crate::order::Tail;
use crate::{Error, Result};

/// Where a feed stands. World size and rank are not part of it: a cursor taken with W
/// ranks resumes with any W' (the global batches from there on are the same when G is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The store it was taken on: the first 16 bytes of the SHA-256 of the `sites` table's
    /// Delta id (all zero in a format-1 cursor, which carried none).
    pub store: [u8; 16],
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
    pub global_batch: u64,
    /// Clump size of the shuffle.
    pub clump: u64,
    /// Tail policy.
    pub tail: Tail,
}

const MAGIC: [u8; 3] = *b"CSF";
const FORMAT: u8 = 2;
/// Encoded length in bytes: magic and format, the store, seven u64 fields, the tail.
pub const CURSOR_BYTES: usize = 4 + 16 + 8 * 7 + 1;
/// Length of a format-1 cursor (no store; batch and clump in 32 bits), still read.
pub const CURSOR_BYTES_V1: usize = 4 + 8 * 5 + 4 + 4 + 1;

/// The store identity a cursor carries for a table id.
pub fn store_identity(table_id: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(table_id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl Cursor {
    /// The cursor as bytes (fixed layout, little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CURSOR_BYTES);
        out.extend(MAGIC);
        out.push(FORMAT);
        out.extend(self.store);
        for v in [
            self.version.unsigned_abs(),
            self.selection,
            self.seed,
            self.epoch,
            self.position,
            self.global_batch,
            self.clump,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.push(self.tail.code());
        out
    }

    /// A cursor from [`Self::to_bytes`] (or a format-1 cursor of an earlier release).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = |m: &str| Error::Usage(format!("not a cellshard feed cursor: {m}"));
        if b.len() < 4 || b[..3] != MAGIC {
            return Err(bad("wrong magic"));
        }
        let (format, want) = match b[3] {
            1 => (1, CURSOR_BYTES_V1),
            FORMAT => (FORMAT, CURSOR_BYTES),
            _ => return Err(bad("unknown format version")),
        };
        if b.len() != want {
            return Err(bad("wrong length"));
        }
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[o..o + 4]);
            u64::from(u32::from_le_bytes(a))
        };
        // Field offsets: format 1 has no store and 32-bit batch and clump.
        let (store, first) = if format == 1 {
            ([0u8; 16], 4)
        } else {
            let mut s = [0u8; 16];
            s.copy_from_slice(&b[4..20]);
            (s, 20)
        };
        let field = |i: usize| u64_at(first + 8 * i);
        let (global_batch, clump) = if format == 1 {
            (u32_at(44), u32_at(48))
        } else {
            (field(5), field(6))
        };
        let version = i64::try_from(field(0)).map_err(|_| bad("its version is out of range"))?;
        if global_batch == 0 || clump == 0 {
            return Err(bad("its batch size or clump is 0"));
        }
        Ok(Cursor {
            store,
            version,
            selection: field(1),
            seed: field(2),
            epoch: field(3),
            position: field(4),
            global_batch,
            clump,
            tail: Tail::from_code(b[want - 1]).ok_or_else(|| bad("unknown tail policy"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_in_77_bytes() {
        let c = Cursor {
            store: store_identity("3f0c1a52-0000-4000-8000-000000000000"),
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
        assert_eq!(CURSOR_BYTES, 77);
        assert_eq!(Cursor::from_bytes(&b).unwrap(), c);
        assert!(Cursor::from_bytes(&b[1..]).is_err());
    }

    /// A format-1 cursor (53 bytes) of an earlier release still resumes, with no store.
    #[test]
    fn format_1_cursors_of_53_bytes_are_read() {
        let mut b = MAGIC.to_vec();
        b.push(1);
        for v in [12u64, 0xDEAD_BEEF, 7, 3, 4096] {
            b.extend(v.to_le_bytes());
        }
        b.extend(256u32.to_le_bytes());
        b.extend(16u32.to_le_bytes());
        b.push(Tail::Repeat.code());
        assert_eq!(b.len(), CURSOR_BYTES_V1);
        assert_eq!(CURSOR_BYTES_V1, 53);
        let c = Cursor::from_bytes(&b).unwrap();
        assert_eq!(
            (
                c.store,
                c.version,
                c.selection,
                c.position,
                c.global_batch,
                c.clump,
                c.tail
            ),
            ([0; 16], 12, 0xDEAD_BEEF, 4096, 256, 16, Tail::Repeat)
        );
        assert!(Cursor::from_bytes(&b[..52]).is_err());
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
        fn forged_fields_parse_or_are_refused(fields in proptest::collection::vec(proptest::num::u8::ANY, CURSOR_BYTES - 4)) {
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
            store: [u8; 16],
            version in 0i64..=i64::MAX,
            selection: u64,
            seed: u64,
            epoch: u64,
            position: u64,
            global_batch in 1u64..,
            clump in 1u64..,
        ) {
            let c = Cursor { store, version, selection, seed, epoch, position, global_batch, clump, tail: Tail::PadMasked };
            proptest::prop_assert_eq!(Cursor::from_bytes(&c.to_bytes()).unwrap(), c);
        }
    }

    #[test]
    fn a_forged_negative_version_is_refused() {
        let mut b = Cursor {
            store: [0; 16],
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
        b[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = Cursor::from_bytes(&b).unwrap_err().to_string();
        assert!(e.contains("version is out of range"), "{e}");
    }
}
