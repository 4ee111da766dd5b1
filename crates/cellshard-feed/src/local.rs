//! Pages of a local store, read by the decode threads themselves: by position into a
//! reused buffer, or straight into the batch for uncompressed pages.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use crate::index::Selection;
use crate::page::{Codec, PageError, decode_one, plain_head};
use cellshard_store::Location;

/// The local file of each of `selection`'s files, when the store is a local directory
/// (as object_store's local store maps a path: the root URL joined with its parts).
pub(crate) fn local_paths(
    sites: &Location,
    selection: &Selection,
) -> Option<Arc<Vec<std::path::PathBuf>>> {
    if sites.url.scheme() != "file" || !cfg!(unix) {
        return None;
    }
    let root = url::Url::parse("file:///").ok()?;
    let paths = selection
        .files
        .iter()
        .map(|f| {
            let mut u = root.clone();
            u.path_segments_mut()
                .ok()?
                .pop_if_empty()
                .extend(f.path.parts().map(|p| p.as_ref().to_string()));
            u.to_file_path().ok().filter(|p| p.is_file())
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Arc::new(paths))
}

/// A decode thread's page buffer and its open local file (by index).
type LocalReader = (Vec<u8>, Option<(usize, std::fs::File)>);

thread_local! {
    /// Each decode thread's page read from a local file and its open file, kept between
    /// pages.
    static LOCAL: RefCell<LocalReader> =
        const { RefCell::new((Vec::new(), None)) };
}

/// Run `f` with this decode thread's page buffer and local file `file` (of `paths`), kept
/// open between pages.
#[cfg(unix)]
fn with_local_file<T>(
    paths: &[std::path::PathBuf],
    file: usize,
    f: impl FnOnce(&std::fs::File, &mut Vec<u8>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    LOCAL.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (buf, open) = &mut *cell;
        if open.as_ref().is_none_or(|(i, _)| *i != file) {
            *open = Some((file, std::fs::File::open(&paths[file])?));
        }
        let Some((_, handle)) = open.as_ref() else {
            return Err(std::io::Error::other("no open file"));
        };
        f(handle, buf)
    })
}

/// Decode page `range` of local file `file` (of `paths`) into `dst[room..]` (see
/// [`decode_one`]). An uncompressed page whose header checks out is read straight into
/// place (one copy, the kernel's); any other is read whole into the thread's buffer and
/// decoded from there. Only unix hosts read by position ([`local_paths`] finds no local
/// files elsewhere, so the feed fetches through the object store there).
pub(crate) fn decode_local(
    paths: &[std::path::PathBuf],
    file: usize,
    range: &Range<u64>,
    codec: Codec,
    dst: &mut [u8],
    room: usize,
) -> std::io::Result<Result<(), PageError>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(range.end - range.start).map_err(std::io::Error::other)?;
        with_local_file(paths, file, |handle, buf| {
            let out = &mut dst[room..];
            if codec == Codec::Plain && len > out.len() {
                let head = len - out.len();
                buf.resize(buf.len().max(head), 0);
                handle.read_exact_at(&mut buf[..head], range.start)?;
                if plain_head(&buf[..head], len, out.len()) {
                    handle.read_exact_at(out, range.start + head as u64)?;
                    return Ok(Ok(()));
                }
            }
            buf.resize(buf.len().max(len), 0);
            handle.read_exact_at(&mut buf[..len], range.start)?;
            Ok(decode_one(&buf[..len], codec, dst, room))
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (paths, file, range, codec, dst, room);
        Err(std::io::Error::other("local reads need unix"))
    }
}
