//! What the tests (`tests/it`, the CLI tests) and the bench share: the repository's paths,
//! the real servers they run against, and killing a process at a named point.
#![allow(clippy::unwrap_used)] // Test helpers fail loudly on purpose.

use std::path::PathBuf;

pub mod kill;
pub mod s3;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether this is a CI run (`CI=true`, as `.ci/run` and most CI services set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test's real part (a browser, a reader package) is not installed: in CI the test
/// fails, since CI installs everything; elsewhere it says why and the caller skips.
pub fn missing_part(what: &str) {
    assert!(
        !in_ci(),
        "{what} is not installed, and CI must run this test with it (tests/run.sh installs it)"
    );
    println!("skipped: {what} is not installed (tests/run.sh installs it where it can)");
}
