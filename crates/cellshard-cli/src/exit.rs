//! Exit statuses. One place maps an error's class to the status the shell sees:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the command failed: I/O, an outage, a bug |
//! | 2 | the request is invalid: a bad flag value or pipeline, SQL that does not parse or names an unknown table or column, an unknown store, site or plate |
//! | 3 | `run`: rejects over `--max-reject-fraction` |

use std::fmt;

use cellshard_core::ErrorClass;

/// Success.
pub(crate) const OK: u8 = 0;
/// The command failed (I/O, outage, internal).
pub(crate) const FAILED: u8 = 1;
/// The request is invalid (clap's own usage errors exit 2 too).
pub(crate) const INVALID: u8 = 2;

/// An invalid request that the command line itself finds (a flag value, a missing
/// choice): exit 2.
#[derive(Debug)]
pub(crate) struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// `Err(Invalid(..))` as an anyhow error, for `?`.
pub(crate) fn invalid(message: impl Into<String>) -> anyhow::Error {
    Invalid(message.into()).into()
}

/// The class of the outermost error in `e`'s chain that has one.
pub(crate) fn class(e: &anyhow::Error) -> Option<ErrorClass> {
    e.chain().find_map(|link| {
        if link.is::<Invalid>() {
            return Some(ErrorClass::BadInput);
        }
        if let Some(e) = link.downcast_ref::<cellshard_runtime::Error>() {
            return Some(e.class());
        }
        if let Some(e) = link.downcast_ref::<cellshard_feed::Error>() {
            return Some(e.class());
        }
        if let Some(e) = link.downcast_ref::<cellshard_view::Error>() {
            return Some(e.class());
        }
        if let Some(e) = link.downcast_ref::<cellshard_synth::Error>() {
            return Some(e.class());
        }
        #[cfg(feature = "cluster")]
        if let Some(e) = link.downcast_ref::<cellshard_cluster::Error>() {
            return Some(e.class());
        }
        cellshard_sql::class_one(link)
    })
}

/// The exit status of a failure of `class`.
pub(crate) fn code(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::BadInput | ErrorClass::NotFound => INVALID,
        ErrorClass::External | ErrorClass::Internal => FAILED,
    }
}

/// The exit status of `e`: by its class, 1 when nothing in its chain has one.
pub(crate) fn code_of(e: &anyhow::Error) -> u8 {
    class(e).map_or(FAILED, code)
}

/// A command's result as an exit status: 0, or the error with the status of its class.
pub(crate) fn status(r: anyhow::Result<()>) -> Result<u8, (u8, anyhow::Error)> {
    r.map(|()| OK).map_err(|e| (code_of(&e), e))
}

/// Attach the status of its class to an error.
pub(crate) fn with_code(e: impl Into<anyhow::Error>) -> (u8, anyhow::Error) {
    let e = e.into();
    (code_of(&e), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_statuses_through_context() {
        use anyhow::Context;
        let e = Err::<(), _>(invalid("bad flag"))
            .context("outer")
            .unwrap_err();
        assert_eq!(code_of(&e), INVALID);
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Err::<(), _>(io).context("cannot write x").unwrap_err();
        assert_eq!(code_of(&e), FAILED);
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(code_of(&anyhow::Error::from(missing)), INVALID);
        assert_eq!(code_of(&anyhow::anyhow!("unclassified")), FAILED);
    }
}
