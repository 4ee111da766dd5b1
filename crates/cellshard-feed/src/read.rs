//! Reading a rank's batches: the pages of the rows a step needs are fetched by byte range
//! (a few files at once, within the read budget), then decompressed on the feed's own
//! threads, never on the async runtime's.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use bytes::Bytes;
use cellshard_store::Location;
use cellshard_store::io::ByteBudget;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use rayon::prelude::*;

use crate::index::{Selection, take_rows};
use crate::local::{decode_local, local_paths};
use crate::page::{
    Codec, PREFIX, PageError, TensorColumn, decode_one, locate, payload, tensor_column,
};
use crate::{Error, Result};

/// Files fetched at once for one step.
const FILES_IN_FLIGHT: usize = 8;

/// One rank's batch of one step.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `B x C x H x W` elements, little-endian; invalid slots are zeros.
    pub tensors: Vec<u8>,
    /// Which slots hold a sample.
    pub valid: Vec<bool>,
    /// Per slot: the sample's index in the selection (`site_id` order), if any.
    pub samples: Vec<Option<u64>>,
    /// Per slot: the site id, if any.
    pub site_ids: Vec<Option<String>>,
    /// Per slot: the metadata columns asked for (null rows for invalid slots).
    pub meta: RecordBatch,
    /// The step's first global position.
    pub start: u64,
}

/// The reads of a feed: where the selected rows' tensor pages are, the threads that
/// decompress them and the budget of compressed bytes in flight.
#[derive(Debug)]
pub(crate) struct Reader {
    sites: Location,
    selection: Arc<Selection>,
    /// Per file: its tensor column.
    columns: Vec<TensorColumn>,
    /// Per selected row: the byte range of its tensor page.
    pages: Vec<Range<u64>>,
    pool: Arc<rayon::ThreadPool>,
    in_flight: ByteBudget,
    /// Turns to decode: a batch takes one after its pages are fetched, in order, so the
    /// decode threads finish the oldest batch first instead of spreading over every batch
    /// read ahead (which delays each of them and thrashes the caches).
    decoding: Arc<tokio::sync::Semaphore>,
    /// Batch buffers handed back with [`Reader::recycle`]: a new batch reuses one instead
    /// of fresh memory (whose page faults cost as much as a fifth of the decoding).
    spare: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    /// For a local store, each file's path: the decode threads read its pages themselves,
    /// by position into a reused buffer, with no per-page allocation or hand-off.
    local: Option<Arc<Vec<std::path::PathBuf>>>,
}

/// Spare batch buffers kept, at most.
const SPARE: usize = 4;

/// Batches decoded at once: one on the threads, the next ready to start.
const DECODES: usize = 2;

impl Reader {
    /// The reader of `selection`'s rows in `sites`: every file's tensor column must be
    /// readable page by page, and every row's page is located here.
    pub(crate) fn new(
        sites: Location,
        selection: Arc<Selection>,
        threads: usize,
        read_budget: u64,
    ) -> Result<Reader> {
        let columns = selection
            .files
            .iter()
            .map(|f| {
                tensor_column(f.meta.metadata(), cellshard_store::schema::TENSOR).map_err(|m| {
                    Error::Read {
                        path: sites.display(&f.path),
                        message: m,
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pages = selection
            .at
            .iter()
            .map(|&(file, row)| {
                let f = &selection.files[file as usize];
                locate(f.meta.metadata(), columns[file as usize].leaf, row).map_err(|m| {
                    Error::Read {
                        path: sites.display(&f.path),
                        message: m,
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cellshard-decode-{i}"))
            .build()
            .map_err(|e| Error::Usage(format!("cannot start the decode threads: {e}")))?;
        let local = local_paths(&sites, &selection);
        Ok(Reader {
            local,
            sites,
            selection,
            columns,
            pages,
            pool: Arc::new(pool),
            in_flight: ByteBudget::new(read_budget),
            decoding: Arc::new(tokio::sync::Semaphore::new(DECODES)),
            spare: Arc::default(),
        })
    }

    /// Decode threads.
    pub(crate) fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Compressed tensor bytes of the selected rows' pages.
    pub(crate) fn bytes_to_read(&self) -> u64 {
        self.pages.iter().map(|p| p.end - p.start).sum()
    }
}

/// A slot's page: fetched bytes, or where to read it from a local file.
#[derive(Clone)]
enum Slot {
    Fetched(Fetched),
    Local(u32, u32, Range<u64>),
}

/// One slot's page: (file, row in file, bytes).
type Fetched = (u32, u32, Bytes);

impl Reader {
    /// The batch of `samples` (indices into the selection; `None` pads a slot) of the step
    /// at global position `start`: only the pages of the rows it needs.
    pub(crate) async fn read(&self, samples: Vec<Option<u64>>, start: u64) -> Result<Batch> {
        let past = |s: u64| Error::Internal(format!("sample {s} is past the selection"));
        let rows = samples
            .iter()
            .map(|s| {
                s.map(|s| usize::try_from(s).map_err(|_| past(s)))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let take = samples
            .iter()
            .map(|s| s.map(|s| u32::try_from(s).map_err(|_| past(s))).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mut by_file: BTreeMap<u32, Vec<(usize, u32, Range<u64>)>> = BTreeMap::new();
        for (slot, s) in rows.iter().enumerate() {
            if let Some(s) = *s {
                let (file, row) = self.selection.at[s];
                by_file
                    .entry(file)
                    .or_default()
                    .push((slot, row, self.pages[s].clone()));
            }
        }
        let wanted: u64 = by_file
            .values()
            .flatten()
            .map(|(_, _, r)| r.end - r.start)
            .sum();
        let permit = self.in_flight.acquire(wanted).await;
        let mut slots: Vec<Option<Slot>> = vec![None; samples.len()];
        if self.local.is_some() {
            for (file, rows) in by_file {
                for (slot, row, range) in rows {
                    slots[slot] = Some(Slot::Local(file, row, range));
                }
            }
        } else {
            let mut fetches = futures::stream::iter(by_file)
                .map(|(file, rows)| self.fetch(file, rows))
                .buffer_unordered(FILES_IN_FLIGHT);
            while let Some(part) = fetches.try_next().await? {
                for (slot, page) in part {
                    slots[slot] = Some(Slot::Fetched(page));
                }
            }
        }
        let local = self.local.clone();
        let len = self.selection.shape.bytes();
        let (pool, codecs, sites, files) = (
            self.pool.clone(),
            self.columns.iter().map(|c| c.codec).collect::<Vec<_>>(),
            self.sites.clone(),
            self.selection.clone(),
        );
        let spare = self.spare.clone();
        let turn = self
            .decoding
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("the decode turns closed: {e}")))?;
        // Both permits go with the job and are released when it ends, not when this
        // future is next polled: a stream's read-ahead may not poll it for a while.
        let tensors = tokio::task::spawn_blocking(move || {
            let _held = (permit, turn);
            let want = slots.len() * len;
            let reused = spare.lock().ok().and_then(|mut s| {
                let at = s.iter().position(|b| b.len() == want)?;
                Some(s.swap_remove(at))
            });
            let mut tensors = reused.unwrap_or_else(|| vec![0u8; want]);
            let fill = Fill {
                codecs: &codecs,
                local: local.as_deref().map_or(&[][..], Vec::as_slice),
                sites: &sites,
                files: &files,
            };
            let run = run_len(slots.len(), pool.current_num_threads());
            pool.install(|| {
                tensors
                    .par_chunks_mut((run * len).max(1))
                    .zip(slots.par_chunks(run))
                    .try_for_each(|(chunk, pages)| fill.run(chunk, pages, len))
            })?;
            Ok::<_, Error>(tensors)
        })
        .await
        .map_err(|e| Error::Usage(format!("a decode job failed: {e}")))??;
        let take = UInt32Array::from(take);
        Ok(Batch {
            tensors,
            valid: samples.iter().map(Option::is_some).collect(),
            site_ids: rows
                .iter()
                .map(|s| s.map(|s| self.selection.site_ids[s].clone()))
                .collect(),
            meta: take_rows(&self.selection.meta, &take)?,
            samples,
            start,
        })
    }

    /// The pages of `rows` (slot, row, range) of one file, by slot, in one ranged request
    /// (the store merges nearby ranges).
    async fn fetch(
        &self,
        file: u32,
        rows: Vec<(usize, u32, Range<u64>)>,
    ) -> Result<Vec<(usize, Fetched)>> {
        let f = &self.selection.files[file as usize];
        let ranges: Vec<Range<u64>> = rows.iter().map(|r| r.2.clone()).collect();
        let got = self
            .sites
            .store
            .get_ranges(&f.path, &ranges)
            .await
            .map_err(|e| Error::Read {
                path: self.sites.display(&f.path),
                message: e.to_string(),
            })?;
        Ok(rows
            .into_iter()
            .zip(got)
            .map(|((slot, row, _), bytes)| (slot, (file, row, bytes)))
            .collect())
    }

    /// Tensors per second that `threads` threads decompress with the store's codec alone
    /// (zstd, lz4, or a copy for uncompressed pages) from the pages of the first `rows`
    /// selected rows, already in memory, each thread into the slots of its own buffer of
    /// `slots` tensors in turn, as a batch is filled (for at least `seconds`); and the
    /// codec's name.
    pub(crate) async fn codec_limit(
        &self,
        rows: usize,
        seconds: f64,
        threads: usize,
        slots: usize,
    ) -> Result<(f64, &'static str)> {
        let rows = rows.min(self.pages.len());
        let mut pages = Vec::with_capacity(rows);
        for s in 0..rows {
            let (file, row) = self.selection.at[s];
            let part = self
                .fetch(file, vec![(0, row, self.pages[s].clone())])
                .await?;
            pages.extend(part.into_iter().map(|(_, (_, _, b))| b));
        }
        let payloads = pages
            .iter()
            .map(|p| payload(p))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::Usage)?;
        let codec = self.columns.first().map_or(Codec::Plain, |c| c.codec);
        if self.columns.iter().any(|c| c.codec != codec) {
            return Err(Error::Usage(
                "the tensor pages use more than one codec".into(),
            ));
        }
        let payloads = &payloads;
        let started = std::time::Instant::now();
        let counts: Vec<Result<u64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.max(1))
                .map(|_| s.spawn(move || codec_loop(codec, payloads, seconds, slots)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Usage("a codec thread panicked".into())))
                })
                .collect()
        });
        let mut n = 0u64;
        for c in counts {
            n += c?;
        }
        Ok((n as f64 / started.elapsed().as_secs_f64(), codec.name()))
    }

    /// Hand a batch's tensor buffer back for a later batch to reuse.
    pub(crate) fn recycle(&self, tensors: Vec<u8>) {
        if let Ok(mut spare) = self.spare.lock()
            && spare.len() < SPARE
        {
            spare.push(tensors);
        }
    }
}

/// Slots decoded in order by one thread: long enough that most tensors decompress in
/// place, short enough that every thread gets a share of the batch.
fn run_len(slots: usize, threads: usize) -> usize {
    slots.div_ceil(2 * threads.max(1)).clamp(1, 16)
}

/// What the decode threads need to fill a batch's slots.
struct Fill<'a> {
    codecs: &'a [Codec],
    local: &'a [std::path::PathBuf],
    sites: &'a Location,
    files: &'a Selection,
}

impl Fill<'_> {
    /// Fill a run of consecutive slots (`chunk`, `len` bytes each) from the last to the
    /// first: a slot's page decompresses in place with its length prefix in the last bytes
    /// of the slot before, which is written afterwards. The run's first slot has no such
    /// room (the slot before is another run's) and goes through the scratch buffer.
    fn run(&self, chunk: &mut [u8], pages: &[Option<Slot>], len: usize) -> Result<()> {
        for (i, page) in pages.iter().enumerate().rev() {
            let room = if i > 0 && len >= PREFIX { PREFIX } else { 0 };
            let dst = &mut chunk[i * len - room..(i + 1) * len];
            self.slot(dst, room, page.as_ref())?;
        }
        Ok(())
    }

    /// Decode one slot's page into `dst[room..]`, or zeros for a padded slot.
    fn slot(&self, dst: &mut [u8], room: usize, page: Option<&Slot>) -> Result<()> {
        let (file, row, decoded) = match page {
            None => {
                // A padded slot (a reused buffer holds an older batch).
                dst[room..].fill(0);
                return Ok(());
            }
            Some(Slot::Fetched((file, row, bytes))) => (
                file,
                row,
                decode_one(bytes, self.codecs[*file as usize], dst, room),
            ),
            Some(Slot::Local(file, row, range)) => {
                let codec = self.codecs[*file as usize];
                let read = decode_local(self.local, *file as usize, range, codec, dst, room);
                let decoded = read
                    .unwrap_or_else(|e| Err(PageError::Bad(format!("cannot read the page: {e}"))));
                (file, row, decoded)
            }
        };
        decoded.map_err(|e| {
            let path = self.sites.display(&self.files.files[*file as usize].path);
            match e {
                PageError::Length(got) => Error::Shape {
                    path,
                    row: *row,
                    len: got,
                    expected: dst.len() - room,
                },
                PageError::Bad(m) => Error::Read {
                    path,
                    message: format!("row {row}: {m}"),
                },
            }
        })
    }
}

/// Decompress (or, for uncompressed pages, copy) every payload, again and again for at
/// least `seconds`, each into the next of `slots` slots of one buffer (a batch's worth of
/// memory, written as the feed writes a batch, not one slot that stays in the cache); the
/// payloads done.
fn codec_loop(
    codec: Codec,
    payloads: &[(&[u8], usize)],
    seconds: f64,
    slots: usize,
) -> Result<u64> {
    let mut z =
        zstd::bulk::Decompressor::new().map_err(|e| Error::Usage(format!("zstd context: {e}")))?;
    let slot = payloads.iter().map(|p| p.1).max().unwrap_or(0);
    // A batch of 32 slots of a Cell Painting tensor is tens of MB: past any CPU cache.
    let slots = slots.clamp(1, 32);
    let mut out = vec![0u8; slot * slots];
    let started = std::time::Instant::now();
    let (mut n, mut at) = (0u64, 0usize);
    while n == 0 || started.elapsed().as_secs_f64() < seconds {
        for (body, size) in payloads {
            let dst = &mut out[at * slot..at * slot + size];
            at = (at + 1) % slots;
            let done = match codec {
                Codec::Zstd => z
                    .decompress_to_buffer(body, dst)
                    .map_err(|e| Error::Usage(format!("zstd: {e}")))?,
                Codec::Lz4 => lz4_flex::block::decompress_into(body, dst)
                    .map_err(|e| Error::Usage(format!("lz4: {e}")))?,
                Codec::Plain => {
                    let m = body.len().min(dst.len());
                    dst[..m].copy_from_slice(&body[..m]);
                    m
                }
            };
            n += u64::from(done == *size);
        }
    }
    Ok(n)
}
