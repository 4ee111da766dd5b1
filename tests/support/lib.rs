//! What the tests (`tests/it`, the CLI tests) and the bench share: the repository's paths
//! and the real servers they run against.
#![allow(clippy::unwrap_used)] // Test helpers fail loudly on purpose.

use std::path::PathBuf;

pub mod s3;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
