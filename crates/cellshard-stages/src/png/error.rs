//! Decode failures: a class the runtime maps to a reject reason, and a message in plain
//! words that says what is wrong with the file.

/// Broad class of a decode failure, mapped to reject reasons by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Not a PNG, truncated, bad CRC, corrupt stream.
    Corrupt,
    /// A valid PNG of the wrong bit depth, colour type or size.
    Format,
}

/// A decode failure with a message in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// Class of the failure.
    pub kind: DecodeErrorKind,
    /// What is wrong.
    pub message: String,
}

impl DecodeError {
    /// The file is not a well-formed PNG.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self {
            kind: DecodeErrorKind::Corrupt,
            message: message.into(),
        }
    }

    /// The file is a PNG, but not one the pipeline accepts.
    pub fn format(message: impl Into<String>) -> Self {
        Self {
            kind: DecodeErrorKind::Format,
            message: message.into(),
        }
    }

    /// Row `y` names a filter type PNG does not define.
    pub(crate) fn bad_filter(kind: u8, y: usize) -> Self {
        Self::corrupt(format!(
            "invalid PNG: unknown filter type {kind} in row {y}"
        ))
    }

    /// The image data ends before row `y` is complete.
    pub(crate) fn truncated(y: usize) -> Self {
        Self::corrupt(format!("truncated: image data ends before row {y}"))
    }
}
