//! The tensor column's pages, read without the general Parquet reader: cellshard writes one
//! tensor per page (a required, PLAIN-encoded binary, dictionary off), so a row's page is
//! found in the offset index, fetched by byte range, and its value decompressed with zstd
//! straight from the page bytes. Files written otherwise are refused when the feed opens.

use std::cell::RefCell;
use std::ops::Range;

use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaData;

mod header;

use header::{PageHeader, PageKind};

/// How a file's tensor pages are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Stored as is.
    Plain,
    /// zstd frames.
    Zstd,
    /// LZ4 blocks (Parquet's LZ4_RAW).
    Lz4,
}

impl Codec {
    /// Its name in a pipeline file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plain => "none",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
        }
    }
}

/// The tensor column of one file: its leaf index and codec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TensorColumn {
    pub(crate) leaf: usize,
    pub(crate) codec: Codec,
}

/// Checks that `meta`'s tensor column can be read page by page; returns its leaf and codec.
pub(crate) fn tensor_column(meta: &ParquetMetaData, name: &str) -> Result<TensorColumn, String> {
    let schema = meta.file_metadata().schema_descr();
    let leaf = schema
        .columns()
        .iter()
        .position(|c| c.path().string() == name)
        .ok_or_else(|| format!("no {name} column"))?;
    let col = schema.column(leaf);
    if col.max_def_level() != 0 || col.max_rep_level() != 0 {
        return Err(format!(
            "the {name} column is nullable or nested; cellshard writes it required"
        ));
    }
    let mut codec = None;
    for rg in meta.row_groups() {
        let chunk = rg.column(leaf);
        let c = match chunk.compression() {
            Compression::ZSTD(_) => Codec::Zstd,
            Compression::UNCOMPRESSED => Codec::Plain,
            Compression::LZ4_RAW => Codec::Lz4,
            other => {
                return Err(format!(
                    "{name} pages are compressed with {other}, not zstd, lz4 (LZ4_RAW) or none"
                ));
            }
        };
        if codec.is_some_and(|k| k != c) {
            return Err(format!(
                "{name} pages use different codecs across row groups"
            ));
        }
        codec = Some(c);
        if chunk.dictionary_page_offset().is_some() {
            return Err(format!("the {name} column has a dictionary page"));
        }
    }
    Ok(TensorColumn {
        leaf,
        codec: codec.unwrap_or(Codec::Plain),
    })
}

/// Byte range of the page that holds `row` (of the file) in the tensor column; it must hold
/// that row only.
pub(crate) fn locate(meta: &ParquetMetaData, leaf: usize, row: u32) -> Result<Range<u64>, String> {
    let index = meta
        .offset_index()
        .ok_or("the file has no offset index (cellshard writes one)")?;
    let row = i64::from(row);
    let mut first = 0i64;
    for (rg, columns) in meta.row_groups().iter().zip(index) {
        let rows = rg.num_rows();
        if row < first + rows {
            let pages = columns[leaf].page_locations();
            let local = row - first;
            // Pages are in row order: a binary search, as the feed locates every row at open.
            let at = pages
                .partition_point(|p| p.first_row_index <= local)
                .checked_sub(1)
                .ok_or_else(|| format!("row {row} is in no page"))?;
            let end = pages.get(at + 1).map_or(rows, |p| p.first_row_index);
            if pages[at].first_row_index != local || end != local + 1 {
                return Err(format!(
                    "the page of row {row} holds rows {}..{end} of its row group; the feed \
                     needs one tensor per page, as cellshard writes",
                    pages[at].first_row_index
                ));
            }
            let p = &pages[at];
            let start = u64::try_from(p.offset)
                .map_err(|_| format!("the page of row {row} has offset {}", p.offset))?;
            let size = u64::try_from(p.compressed_page_size).map_err(|_| {
                format!("the page of row {row} has size {}", p.compressed_page_size)
            })?;
            return Ok(start..start + size);
        }
        first += rows;
    }
    Err(format!("row {row} is past the file's {first} rows"))
}

/// What decoding one page found wrong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PageError {
    /// The page is not what the feed reads.
    Bad(String),
    /// The value has another length than the tensor's shape.
    Length(usize),
}

/// Bytes of the length ahead of a PLAIN binary value.
pub(crate) const PREFIX: usize = 4;

/// Decode the one value of a tensor page into `dst[room..]` (exactly the tensor's bytes);
/// `scratch` holds the decompressed page between calls. With `room` = [`PREFIX`], the
/// `PREFIX` bytes ahead of the value are free to clobber: a compressed page is then
/// decompressed in place, its length prefix landing in them, instead of into `scratch` and
/// copied. `room` is 0 or [`PREFIX`].
pub(crate) fn decode(
    page: &[u8],
    codec: Codec,
    dst: &mut [u8],
    room: usize,
    scratch: &mut Vec<u8>,
    zstd: &mut zstd::bulk::Decompressor<'static>,
) -> Result<(), PageError> {
    let bad = |m: &str| PageError::Bad(m.to_string());
    let (header, used) = PageHeader::parse(page).map_err(PageError::Bad)?;
    let body = page
        .get(used..used + header.compressed as usize)
        .ok_or_else(|| bad("the page is shorter than its header says"))?;
    if header.encoding != 0 {
        return Err(bad("the value is not PLAIN-encoded"));
    }
    if header.num_values != 1 {
        return Err(PageError::Bad(format!(
            "the page holds {} values, not one",
            header.num_values
        )));
    }
    // A v2 page keeps its (here empty) levels uncompressed ahead of the values.
    let (levels, compressed) = match header.kind {
        PageKind::V1 => (0, true),
        PageKind::V2 { levels, compressed } => (levels, compressed),
    };
    let values = body
        .get(levels..)
        .ok_or_else(|| bad("the page's levels overrun it"))?;
    let size = (header.uncompressed as usize).saturating_sub(levels);
    let in_place = room == PREFIX && size == dst.len() && compressed;
    let plain: &[u8] = match codec {
        Codec::Zstd if compressed => {
            if in_place && landed(zstd.decompress_to_buffer(values, dst).ok(), dst) {
                return Ok(());
            }
            scratch.clear();
            scratch.reserve(header.uncompressed as usize);
            zstd.decompress_to_buffer(values, scratch)
                .map_err(|e| PageError::Bad(format!("zstd: {e}")))?;
            scratch
        }
        Codec::Lz4 if compressed => {
            if in_place && landed(lz4_flex::block::decompress_into(values, dst).ok(), dst) {
                return Ok(());
            }
            scratch.resize(size, 0);
            let n = lz4_flex::block::decompress_into(values, scratch)
                .map_err(|e| PageError::Bad(format!("lz4: {e}")))?;
            &scratch[..n]
        }
        _ => values,
    };
    let out = &mut dst[room..];
    let len = plain
        .get(..PREFIX)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("the page has no value"))?;
    let value = plain
        .get(PREFIX..PREFIX + len)
        .ok_or_else(|| bad("the value is longer than its page"))?;
    if len != out.len() {
        return Err(PageError::Length(len));
    }
    out.copy_from_slice(value);
    Ok(())
}

/// Whether an in-place decompression of `n` bytes filled `dst` with a length prefix and a
/// value of exactly the rest. Anything else is decoded again through the scratch buffer,
/// which names what is wrong.
fn landed(n: Option<usize>, dst: &[u8]) -> bool {
    let value = dst.len() - PREFIX;
    n == Some(dst.len())
        && dst[..PREFIX].try_into().map(u32::from_le_bytes).ok() == u32::try_from(value).ok()
}

/// Whether `head`, the first bytes of an uncompressed tensor page of `page_len` bytes, is
/// everything ahead of its one value of `value_len` bytes: a PLAIN page whose value ends the
/// page. Then the value can be read straight into its place.
pub(crate) fn plain_head(head: &[u8], page_len: usize, value_len: usize) -> bool {
    let Ok((header, used)) = PageHeader::parse(head) else {
        return false;
    };
    let levels = match header.kind {
        PageKind::V1 => 0,
        PageKind::V2 { levels, .. } => levels,
    };
    let at = used + levels;
    header.encoding == 0
        && header.num_values == 1
        && used + header.compressed as usize == page_len
        && header.uncompressed == header.compressed
        && at + 4 == head.len()
        && head.len() + value_len == page_len
        && head[at..].try_into().map(u32::from_le_bytes).ok() == u32::try_from(value_len).ok()
}

/// The compressed value bytes of a tensor page (its levels skipped) and their decompressed
/// size: what zstd alone decompresses, for the feed's limit.
pub(crate) fn payload(page: &[u8]) -> Result<(&[u8], usize), String> {
    let (header, used) = PageHeader::parse(page)?;
    let levels = match header.kind {
        PageKind::V1 => 0,
        PageKind::V2 { levels, .. } => levels,
    };
    let body = page
        .get(used + levels..used + header.compressed as usize)
        .ok_or("the page is shorter than its header says")?;
    Ok((body, header.uncompressed as usize - levels))
}

thread_local! {
    /// Each decode thread's decompressed page and zstd context, kept between pages.
    static SCRATCH: RefCell<Option<(Vec<u8>, zstd::bulk::Decompressor<'static>)>> =
        const { RefCell::new(None) };
}

/// Decode one page into `dst[room..]` on the calling (pool) thread, with its scratch
/// buffer (see [`decode`]).
pub(crate) fn decode_one(
    page: &[u8],
    codec: Codec,
    dst: &mut [u8],
    room: usize,
) -> Result<(), PageError> {
    SCRATCH.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let z = zstd::bulk::Decompressor::new()
                .map_err(|e| PageError::Bad(format!("zstd context: {e}")))?;
            *cell = Some((Vec::new(), z));
        }
        let Some((scratch, z)) = cell.as_mut() else {
            return Err(PageError::Bad("no zstd context".into()));
        };
        decode(page, codec, dst, room, scratch, z)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BinaryArray, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::serialized_reader::ReadOptionsBuilder;

    use super::*;

    /// A file of `rows` tensors of `len` bytes, written as cellshard writes the column.
    fn file(rows: usize, len: usize, version: WriterVersion, codec: Compression) -> Bytes {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "tensor",
            DataType::Binary,
            false,
        )]));
        let values: Vec<Vec<u8>> = (0..rows)
            .map(|r| {
                (0..len)
                    .map(|i| u8::try_from((i * 7 + r * 31) % 251).unwrap())
                    .collect()
            })
            .collect();
        let col = BinaryArray::from_iter_values(values.iter());
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(col)]).unwrap();
        let props = WriterProperties::builder()
            .set_writer_version(version)
            .set_compression(codec)
            .set_dictionary_enabled(false)
            .set_data_page_size_limit(1)
            .set_data_page_row_count_limit(1)
            .set_encoding(parquet::basic::Encoding::PLAIN)
            .set_write_batch_size(1)
            .set_max_row_group_row_count(Some(3))
            .build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Bytes::from(out)
    }

    fn meta(bytes: &Bytes) -> Arc<ParquetMetaData> {
        let opts = ReadOptionsBuilder::new().with_page_index().build();
        let r = SerializedFileReader::new_with_options(bytes.clone(), opts).unwrap();
        Arc::new(r.metadata().clone())
    }

    fn expected(row: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i * 7 + row * 31) % 251).unwrap())
            .collect()
    }

    #[test]
    fn every_row_decodes_from_its_page_alone_in_both_page_versions_and_codecs() {
        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            for codec in [
                Compression::ZSTD(Default::default()),
                Compression::LZ4_RAW,
                Compression::UNCOMPRESSED,
            ] {
                let bytes = file(7, 1000, version, codec);
                let meta = meta(&bytes);
                let col = tensor_column(&meta, "tensor").unwrap();
                let mut z = zstd::bulk::Decompressor::new().unwrap();
                let mut scratch = Vec::new();
                for row in 0..7u32 {
                    let range = locate(&meta, col.leaf, row)
                        .unwrap_or_else(|e| panic!("{version:?} {codec}: {e}"));
                    let page = &bytes[usize::try_from(range.start).unwrap()
                        ..usize::try_from(range.end).unwrap()];
                    let mut out = vec![0u8; 1000];
                    decode(page, col.codec, &mut out, 0, &mut scratch, &mut z).unwrap();
                    assert_eq!(
                        out,
                        expected(row as usize, 1000),
                        "{version:?} {codec} {row}"
                    );
                    // In place: the value lands after the prefix room, which alone is
                    // clobbered; the bytes around are left alone.
                    let mut slots = vec![0xEEu8; 3 + PREFIX + 1000 + 3];
                    let dst = &mut slots[3..3 + PREFIX + 1000];
                    let mut unused = Vec::new();
                    decode(page, col.codec, dst, PREFIX, &mut unused, &mut z).unwrap();
                    assert_eq!(unused.capacity(), 0, "{version:?} {codec}: not in place");
                    assert_eq!(&slots[3 + PREFIX..3 + PREFIX + 1000], out.as_slice());
                    assert_eq!(&slots[..3], &[0xEE; 3]);
                    assert_eq!(&slots[3 + PREFIX + 1000..], &[0xEE; 3]);
                    // An uncompressed page's value is its last bytes, after a checked head.
                    let head = &page[..page.len().saturating_sub(1000)];
                    let direct = plain_head(head, page.len(), 1000);
                    assert_eq!(direct, codec == Compression::UNCOMPRESSED, "{version:?}");
                    if direct {
                        assert_eq!(&page[head.len()..], out.as_slice());
                        assert!(!plain_head(&page[..page.len() - 999], page.len(), 999));
                        assert!(!plain_head(&head[..head.len() - 1], page.len() - 1, 1000));
                    }
                }
                assert!(locate(&meta, col.leaf, 7).unwrap_err().contains("past"));
            }
        }
    }

    #[test]
    fn bad_pages_are_errors_not_garbage() {
        let bytes = file(
            2,
            500,
            WriterVersion::PARQUET_1_0,
            Compression::ZSTD(Default::default()),
        );
        let meta = meta(&bytes);
        let col = tensor_column(&meta, "tensor").unwrap();
        let range = locate(&meta, col.leaf, 1).unwrap();
        let page =
            &bytes[usize::try_from(range.start).unwrap()..usize::try_from(range.end).unwrap()];
        let mut z = zstd::bulk::Decompressor::new().unwrap();
        let mut scratch = Vec::new();
        let mut wrong = vec![0u8; 499];
        assert_eq!(
            decode(page, col.codec, &mut wrong, 0, &mut scratch, &mut z),
            Err(PageError::Length(500))
        );
        // A page that does not fill the room in place says why through the scratch path.
        let mut wrong = vec![0u8; PREFIX + 501];
        assert_eq!(
            decode(page, col.codec, &mut wrong, PREFIX, &mut scratch, &mut z),
            Err(PageError::Length(500))
        );
        let mut out = vec![0u8; 500];
        let cut = decode(
            &page[..page.len() - 9],
            col.codec,
            &mut out,
            0,
            &mut scratch,
            &mut z,
        );
        assert!(
            matches!(cut, Err(PageError::Bad(ref m)) if m.contains("shorter")),
            "{cut:?}"
        );
        let mut garbage = page.to_vec();
        let n = garbage.len();
        garbage[n - 40..].fill(0xAB);
        assert!(decode(&garbage, col.codec, &mut out, 0, &mut scratch, &mut z).is_err());
        assert!(decode(&[0x15], col.codec, &mut out, 0, &mut scratch, &mut z).is_err());
    }

    #[test]
    fn several_rows_per_page_are_refused_with_the_reason() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "tensor",
            DataType::Binary,
            false,
        )]));
        let col = BinaryArray::from_iter_values([b"ab".as_slice(), b"cd"]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(col)]).unwrap();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let bytes = Bytes::from(out);
        let meta = meta(&bytes);
        let col = tensor_column(&meta, "tensor");
        // The default writer dictionary-encodes: refused at the column already.
        assert!(col.unwrap_err().contains("dictionary"));
        let err = locate(&meta, 0, 0).unwrap_err();
        assert!(err.contains("one tensor per page"), "{err}");
    }
}
