//! Errors as people read them: one line, each cause said once.
//!
//! Errors of object_store, DataFusion and parquet include their source in their own text,
//! so printing the whole source chain repeats every cause. [`error_line`] walks the chain
//! and adds a cause only if the text so far does not already contain it.

/// `err` and its sources as one line, `what failed: cause: deeper cause`, with every
/// cause said once and line breaks inside a message folded to spaces.
///
/// ```
/// use std::fmt;
///
/// #[derive(Debug)]
/// struct Outer(std::io::Error);
/// impl fmt::Display for Outer {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         write!(f, "reading plate 1: {}", self.0) // says its source itself
///     }
/// }
/// impl std::error::Error for Outer {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let e = Outer(std::io::Error::other("disk full"));
/// assert_eq!(cellshard_core::error_line(&e), "reading plate 1: disk full");
/// ```
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = fold(&e.to_string());
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = e.source();
    }
    line
}

/// `text` on one line: line breaks and the indentation after them become one space.
fn fold(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error with a message and an optional source, which it may or may not repeat.
    #[derive(Debug)]
    struct Link {
        text: String,
        source: Option<Box<Link>>,
    }

    impl fmt::Display for Link {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.text)
        }
    }

    impl std::error::Error for Link {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.source
                .as_deref()
                .map(|s| s as &(dyn std::error::Error + 'static))
        }
    }

    fn chain(texts: &[&str]) -> Link {
        let mut link: Option<Box<Link>> = None;
        for t in texts.iter().rev() {
            link = Some(Box::new(Link {
                text: (*t).to_string(),
                source: link,
            }));
        }
        *link.expect("at least one link")
    }

    #[test]
    fn a_cause_repeated_by_every_link_is_said_once() {
        // The shape of an object_store error for a missing local file.
        let os = "No such file or directory (os error 2)";
        let nf = format!("Object at location /x/m.csv not found: {os}");
        let top = format!("object store error at /x/m.csv: {nf}");
        let e = chain(&["cannot read the design /x/m.csv", &top, &nf, os]);
        let line = error_line(&e);
        assert_eq!(
            line,
            format!("cannot read the design /x/m.csv: {top}"),
            "{line}"
        );
        assert_eq!(line.matches(os).count(), 1, "{line}");
    }

    #[test]
    fn causes_that_are_not_repeated_are_all_kept() {
        let e = chain(&["run failed", "plate HUVEC-01/1", "connection reset"]);
        assert_eq!(
            error_line(&e),
            "run failed: plate HUVEC-01/1: connection reset"
        );
    }

    #[test]
    fn messages_are_folded_to_one_line() {
        let e = chain(&["query failed", "line one\n   line two\n"]);
        let line = error_line(&e);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(line, "query failed: line one line two");
    }
}
