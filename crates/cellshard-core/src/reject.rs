//! Why an input did not make it into the store. Every reject row carries one of these codes.

use std::fmt;

/// A closed set of reject reasons; `code()` is what the `rejects` table stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// A site lacks one or more channel files.
    MissingChannels,
    /// Two objects claim the same site and channel.
    DuplicateChannel,
    /// A channel number outside 1..=channels.
    ChannelOutOfRange,
    /// A key matched the layout but a value is unusable (path traversal, partition characters).
    InvalidKey,
    /// The site has no metadata row.
    NoMetadata,
    /// The metadata for the site is contradictory.
    MetadataConflict,
    /// The object could not be read from the store.
    ReadFailed,
    /// The PNG could not be decoded (not a PNG, truncated, bad CRC, ...).
    Decode,
    /// The PNG decoded but has the wrong bit depth, colour type or size for the pipeline.
    Format,
    /// The channels of one site disagree in size or depth.
    InconsistentChannels,
    /// The plate could not be normalized (no reference pixels).
    Normalize,
    /// The plate's illumination function could not be computed or read.
    Illumination,
    /// A metadata row (or a whole metadata file) could not be used.
    BadMetadataRow,
}

impl RejectReason {
    /// Stable code stored in the `rejects` table.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MissingChannels => "missing_channels",
            RejectReason::DuplicateChannel => "duplicate_channel",
            RejectReason::ChannelOutOfRange => "channel_out_of_range",
            RejectReason::InvalidKey => "invalid_key",
            RejectReason::NoMetadata => "no_metadata",
            RejectReason::MetadataConflict => "metadata_conflict",
            RejectReason::ReadFailed => "read_failed",
            RejectReason::Decode => "decode_error",
            RejectReason::Format => "unexpected_format",
            RejectReason::InconsistentChannels => "inconsistent_channels",
            RejectReason::Normalize => "normalize_failed",
            RejectReason::Illumination => "illumination_failed",
            RejectReason::BadMetadataRow => "bad_metadata_row",
        }
    }

    /// The pipeline stage that rejects for this reason.
    pub fn stage(self) -> &'static str {
        match self {
            RejectReason::MissingChannels
            | RejectReason::DuplicateChannel
            | RejectReason::ChannelOutOfRange
            | RejectReason::InvalidKey
            | RejectReason::NoMetadata
            | RejectReason::MetadataConflict => "discover",
            RejectReason::ReadFailed => "read",
            RejectReason::Decode | RejectReason::Format | RejectReason::InconsistentChannels => {
                "decode"
            }
            RejectReason::Normalize => "normalize",
            RejectReason::Illumination => "illumination",
            RejectReason::BadMetadataRow => "metadata",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
