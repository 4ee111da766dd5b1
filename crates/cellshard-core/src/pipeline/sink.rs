//! Where and how the store is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ByteSize;

/// The store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// Store root URL or local path; tables live in folders below it.
    pub url: String,
    /// How the tensor column is compressed: `zstd` (the default), `lz4` (Parquet's
    /// LZ4_RAW: faster to read, larger) or `none`. All are Parquet's own codecs, so every
    /// Parquet reader reads the store.
    #[serde(default, skip_serializing_if = "TensorCodec::is_default")]
    pub tensor_codec: TensorCodec,
    /// ZSTD level of the tensor column (1..=22), when it is zstd. The other columns are
    /// small and always LZ4 (LZ4_RAW), cheap for every reader to open.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Target uncompressed bytes per row group.
    #[serde(default = "default_row_group")]
    pub row_group_size: ByteSize,
    /// Target size of one Parquet file, in uncompressed tensor bytes like `row_group_size`:
    /// a plate's sites are cut, in order, into files of `target_file_size / tensor bytes`
    /// sites, which are written in parallel. The cut depends on the pipeline only.
    #[serde(default = "default_file_size")]
    pub target_file_size: ByteSize,
    /// Object store options for the sink.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The tensor column's codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorCodec {
    /// zstd at `zstd_level`.
    #[default]
    Zstd,
    /// LZ4 blocks (Parquet's LZ4_RAW).
    Lz4,
    /// Stored as is.
    None,
}

impl TensorCodec {
    /// Whether this is the default (zstd).
    pub fn is_default(&self) -> bool {
        *self == Self::Zstd
    }

    /// Its name in a pipeline file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
            Self::None => "none",
        }
    }
}

fn default_zstd_level() -> i32 {
    1
}
fn default_row_group() -> ByteSize {
    ByteSize::mib(32)
}
fn default_file_size() -> ByteSize {
    ByteSize::mib(256)
}
