//! Metadata files as the run reads them: plain CSV, or zstd-compressed CSV (`.csv.zst`,
//! recognized by the frame's magic number, whatever the name).

use std::io::Read;

use cellshard_core::MetadataTable;
use cellshard_core::metadata::RowError;

/// The largest decompressed metadata file taken (a guard against zstd bombs). The RxRx1
/// design is 9 MB; RxRx3's and JUMP's are well under 1 GB.
pub const MAX_METADATA_BYTES: u64 = 1 << 30;

/// The zstd frame magic number (RFC 8878, section 3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Whether `bytes` begin with a zstd frame.
pub fn is_zstd(bytes: &[u8]) -> bool {
    bytes.starts_with(&ZSTD_MAGIC)
}

/// `bytes` as CSV text: decompressed when they are a zstd frame, as they are otherwise.
/// A corrupt or oversized frame is an error saying why.
pub fn csv_bytes(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if !is_zstd(bytes) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let decoder =
        zstd::Decoder::with_buffer(bytes).map_err(|e| format!("not a readable zstd file: {e}"))?;
    let mut out = Vec::new();
    let n = decoder
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("corrupt zstd stream: {e}"))?;
    if n as u64 > MAX_METADATA_BYTES {
        return Err(format!(
            "decompresses to more than {MAX_METADATA_BYTES} bytes, the limit for a metadata file"
        ));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Merge one metadata file into `table`. A file that cannot be decompressed is recorded in
/// [`MetadataTable::row_errors`] like any unusable file, so the run reports it and goes on.
pub fn add_metadata_file(
    table: &mut MetadataTable,
    url: &str,
    bytes: &[u8],
) -> cellshard_core::Result<usize> {
    match csv_bytes(bytes) {
        Ok(text) => table.add_csv(url, &text),
        Err(message) => {
            table.row_errors.push(RowError {
                at: url.to_string(),
                message,
            });
            Ok(0)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CSV: &str = "site_id,well_id,cell_type,dataset,experiment,plate,well,site,well_type,sirna_id\n\
        HUVEC-01_1_B02_1,HUVEC-01_1_B02,HUVEC,train,HUVEC-01,1,B02,1,negative_control,1138\n";

    #[test]
    fn compressed_and_plain_files_give_the_same_rows() {
        let mut plain = MetadataTable::new();
        assert_eq!(
            add_metadata_file(&mut plain, "m.csv", CSV.as_bytes()).unwrap(),
            1
        );
        let packed = zstd::encode_all(CSV.as_bytes(), 3).unwrap();
        assert!(is_zstd(&packed));
        let mut unpacked = MetadataTable::new();
        assert_eq!(
            add_metadata_file(&mut unpacked, "m.csv.zst", &packed).unwrap(),
            1
        );
        assert_eq!(plain.len(), unpacked.len());
        assert!(unpacked.row_errors.is_empty());
    }

    #[test]
    fn a_corrupt_frame_is_an_unusable_file_not_a_failure() {
        let mut packed = zstd::encode_all(CSV.as_bytes(), 3).unwrap();
        let n = packed.len();
        packed.truncate(n - 6);
        let mut t = MetadataTable::new();
        assert_eq!(add_metadata_file(&mut t, "m.csv.zst", &packed).unwrap(), 0);
        assert_eq!(t.row_errors.len(), 1);
        assert_eq!(t.row_errors[0].at, "m.csv.zst");
        assert!(
            t.row_errors[0].message.contains("zstd"),
            "{}",
            t.row_errors[0]
        );
    }
}
