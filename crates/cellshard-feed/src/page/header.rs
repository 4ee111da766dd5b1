//! A tensor page's header: the few `PageHeader` fields the feed needs, parsed from the
//! thrift compact protocol without the general Parquet reader.

/// A data page's version; a v2 page keeps its levels (`levels` bytes) uncompressed ahead
/// of its values.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PageKind {
    V1,
    V2 { levels: usize, compressed: bool },
}

/// The fields of a Parquet `PageHeader` the feed needs.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PageHeader {
    pub(super) kind: PageKind,
    pub(super) uncompressed: u32,
    pub(super) compressed: u32,
    pub(super) num_values: i32,
    pub(super) encoding: i32,
}

impl PageHeader {
    /// Parse a thrift-compact `PageHeader`; returns it and the bytes it took.
    pub(super) fn parse(bytes: &[u8]) -> Result<(PageHeader, usize), String> {
        let mut r = Compact {
            bytes,
            at: 0,
            depth: 0,
        };
        let (mut page_type, mut uncompressed, mut compressed) = (None, None, None);
        let (mut num_values, mut encoding) = (None, None);
        let (mut def_len, mut rep_len, mut is_compressed) = (0i64, 0i64, true);
        let mut last = 0i16;
        while let Some((id, ty)) = r.field(&mut last)? {
            match (id, ty) {
                (1, T_I32) => page_type = Some(r.int()?),
                (2, T_I32) => uncompressed = Some(r.int()?),
                (3, T_I32) => compressed = Some(r.int()?),
                // data_page_header: num_values (1), encoding (2).
                (5, T_STRUCT) => r.structure(|r, id, ty| {
                    match (id, ty) {
                        (1, T_I32) => num_values = Some(r.int()?),
                        (2, T_I32) => encoding = Some(r.int()?),
                        _ => r.skip(ty)?,
                    }
                    Ok(())
                })?,
                // data_page_header_v2: num_values (1), encoding (4), level lengths (5, 6),
                // is_compressed (7).
                (8, T_STRUCT) => r.structure(|r, id, ty| {
                    match (id, ty) {
                        (1, T_I32) => num_values = Some(r.int()?),
                        (4, T_I32) => encoding = Some(r.int()?),
                        (5, T_I32) => def_len = r.int()?,
                        (6, T_I32) => rep_len = r.int()?,
                        (7, T_TRUE | T_FALSE) => is_compressed = ty == T_TRUE,
                        _ => r.skip(ty)?,
                    }
                    Ok(())
                })?,
                _ => r.skip(ty)?,
            }
        }
        let missing = |what: &str| format!("the page header has no {what}");
        let size = |v: Option<i64>, what: &str| {
            v.ok_or_else(|| missing(what))
                .and_then(|v| u32::try_from(v).map_err(|_| format!("bad {what} {v}")))
        };
        let int32 = |v: Option<i64>, what: &str| {
            v.ok_or_else(|| missing(what))
                .and_then(|v| i32::try_from(v).map_err(|_| format!("bad {what} {v}")))
        };
        let kind = match page_type.ok_or_else(|| missing("page type"))? {
            0 => PageKind::V1,
            3 => PageKind::V2 {
                levels: def_len
                    .checked_add(rep_len)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| "bad level lengths".to_string())?,
                compressed: is_compressed,
            },
            other => return Err(format!("page type {other} is not a data page")),
        };
        let header = PageHeader {
            kind,
            uncompressed: size(uncompressed, "uncompressed size")?,
            compressed: size(compressed, "compressed size")?,
            num_values: int32(num_values, "value count")?,
            encoding: int32(encoding, "encoding")?,
        };
        Ok((header, r.at))
    }
}

const T_STOP: u8 = 0;
const T_TRUE: u8 = 1;
const T_FALSE: u8 = 2;
const T_BYTE: u8 = 3;
const T_I16: u8 = 4;
const T_I32: u8 = 5;
const T_I64: u8 = 6;
const T_DOUBLE: u8 = 7;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_SET: u8 = 10;
const T_MAP: u8 = 11;
const T_STRUCT: u8 = 12;

/// A reader of the thrift compact protocol, enough to walk and skip any struct.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Containers entered by `skip` (a forged header could nest them without end).
    depth: u32,
}

/// Deepest nesting of containers `skip` follows; Parquet's page headers nest a few.
const MAX_DEPTH: u32 = 32;

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or("the page header is cut short")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint in the page header is too long".into())
    }

    /// A length or count (a varint) as a `usize`.
    fn length(&mut self) -> Result<usize, String> {
        let v = self.varint()?;
        usize::try_from(v).map_err(|_| format!("a length {v} in the page header is too large"))
    }

    /// A zigzag varint (i16, i32 or i64).
    fn int(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// The next field's (id, type), or `None` at the struct's end.
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        let ty = b & 0x0f;
        if ty == T_STOP {
            return Ok(None);
        }
        let delta = i16::from(b >> 4);
        *last = if delta == 0 {
            i16::try_from(self.int()?).map_err(|_| "bad field id")?
        } else {
            *last + delta
        };
        Ok(Some((*last, ty)))
    }

    /// Walk a nested struct, handing each field to `f`.
    fn structure(
        &mut self,
        mut f: impl FnMut(&mut Self, i16, u8) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut last = 0;
        while let Some((id, ty)) = self.field(&mut last)? {
            f(self, id, ty)?;
        }
        Ok(())
    }

    /// Fail unless `n` more items, each at least `size` bytes, can fit in what is left.
    fn room(&self, n: usize, size: usize) -> Result<(), String> {
        if n.saturating_mul(size) > self.bytes.len().saturating_sub(self.at) {
            return Err("the page header is cut short".into());
        }
        Ok(())
    }

    fn skip(&mut self, ty: u8) -> Result<(), String> {
        if matches!(ty, T_LIST | T_SET | T_MAP | T_STRUCT) {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(format!(
                    "the page header nests more than {MAX_DEPTH} containers"
                ));
            }
        }
        match ty {
            T_TRUE | T_FALSE => {}
            T_BYTE => self.at = self.at.saturating_add(1),
            T_I16 | T_I32 | T_I64 => {
                self.varint()?;
            }
            T_DOUBLE => self.at = self.at.saturating_add(8),
            T_BINARY => {
                let n = self.length()?;
                self.at = self.at.saturating_add(n);
            }
            T_LIST | T_SET => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.length()?,
                    n => usize::from(n),
                };
                // Every element takes a byte or more.
                self.room(n, 1)?;
                for _ in 0..n {
                    // Booleans in a list take a byte each.
                    match h & 0x0f {
                        T_TRUE | T_FALSE => self.at += 1,
                        t => self.skip(t)?,
                    }
                }
            }
            T_MAP => {
                let n = self.length()?;
                self.room(n, 2)?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip(kv >> 4)?;
                        self.skip(kv & 0x0f)?;
                    }
                }
            }
            T_STRUCT => self.structure(|r, _, t| r.skip(t))?,
            other => return Err(format!("unknown thrift type {other} in the page header")),
        }
        if matches!(ty, T_LIST | T_SET | T_MAP | T_STRUCT) {
            self.depth -= 1;
        }
        if self.at > self.bytes.len() {
            return Err("the page header is cut short".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_count_or_nesting_is_refused_at_once() {
        // Field 4, a list of booleans whose count (a varint) is 2^35 - 1, and nothing after:
        // stepping over them one by one would spin.
        let huge = [0x49, 0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
        let e = PageHeader::parse(&huge).unwrap_err();
        assert!(e.contains("cut short"), "{e}");
        // Field 4, a struct holding a struct holding ... 100 deep.
        let mut deep = vec![0x4C];
        deep.extend(std::iter::repeat_n(0x1C, 100));
        let e = PageHeader::parse(&deep).unwrap_err();
        assert!(e.contains("nests more than"), "{e}");
    }

    proptest::proptest! {
        /// Any bytes are a header or an error, never a panic.
        #[test]
        fn any_bytes_parse_or_are_refused(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = PageHeader::parse(&b);
        }
    }
}
