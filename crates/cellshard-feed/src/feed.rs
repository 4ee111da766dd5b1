//! A feed: a store pinned at a version, a selection, an order per epoch, and this rank's
//! batches of decoded tensors; a stream reads steps ahead within the memory budget.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cellshard_store::Location;
use cellshard_store::table::open_table;
use sha2::{Digest, Sha256};

use crate::cursor::Cursor;
use crate::index::{Selection, prune_by_partitions, select};
use crate::order::{Batching, EpochOrder, Tail};
use crate::read::{Batch, Reader};
use crate::split::SplitSpec;
use crate::{Error, Result};

/// Decode threads a feed may start.
pub const MAX_THREADS: usize = 1024;

/// How to open a feed.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Store root URL or path.
    pub store: String,
    /// Object store options.
    pub options: BTreeMap<String, String>,
    /// SQL predicate over the metadata columns of `sites` (`None`: every row).
    pub predicate: Option<String>,
    /// Metadata columns to return with each batch.
    pub columns: Vec<String>,
    /// `sites` version to pin (`None`: the latest).
    pub version: Option<i64>,
    /// Shuffle seed.
    pub seed: u64,
    /// Global batch size G (all ranks together).
    pub global_batch: u64,
    /// World size W.
    pub world_size: u64,
    /// This rank (0-based).
    pub rank: u64,
    /// Tail policy.
    pub tail: Tail,
    /// Shuffle runs of this many consecutive rows together (1: an exact uniform shuffle).
    pub clump: u64,
    /// Well-level split.
    pub split: Option<SplitSpec>,
    /// Threads that decompress tensors (0: one per core).
    pub threads: usize,
    /// Compressed tensor bytes fetched and not yet decoded, at most (a step larger than
    /// this is read alone).
    pub read_budget: u64,
    /// Decoded batches read ahead take at most this many bytes; a batch larger than this
    /// is refused when the feed opens.
    pub memory_budget: u64,
}

/// Default [`FeedOptions::read_budget`]: 256 MiB.
pub const READ_BUDGET: u64 = 256 << 20;
/// Default [`FeedOptions::memory_budget`]: 2 GiB.
pub const MEMORY_BUDGET: u64 = 2 << 30;

impl FeedOptions {
    /// Defaults for `store`: every row, seed 0, G = 256, one rank, padded tail, no clumps.
    pub fn new(store: impl Into<String>) -> Self {
        FeedOptions {
            store: store.into(),
            options: BTreeMap::new(),
            predicate: None,
            columns: Vec::new(),
            version: None,
            seed: 0,
            global_batch: 256,
            world_size: 1,
            rank: 0,
            tail: Tail::PadMasked,
            clump: 1,
            split: None,
            threads: 0,
            read_budget: READ_BUDGET,
            memory_budget: MEMORY_BUDGET,
        }
    }
}

/// Shuffle-quality figures of an epoch; see [`Feed::shuffle_quality`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShuffleQuality {
    /// Mean distinct plates per global batch.
    pub plates_per_batch: f64,
    /// Entropy of the log2-bucketed index distance between consecutive samples, in bits.
    pub diff_entropy_bits: f64,
}

/// A feed over a store; see the crate docs.
#[derive(Debug)]
pub struct Feed {
    pub(crate) opts: FeedOptions,
    sites: Location,
    version: i64,
    selection: Arc<Selection>,
    selection_hash: u64,
    store_id: [u8; 16],
    reader: Reader,
}

impl Feed {
    /// Open a feed: pin the version, read the metadata columns, select the rows. Every
    /// mistake in the options is an error here, naming what is wrong.
    ///
    /// ```no_run
    /// use cellshard_feed::{Feed, FeedOptions};
    ///
    /// # async fn example() -> cellshard_feed::Result<()> {
    /// // Rank 1 of 8 over the HUVEC negative controls, 256 sites a global batch.
    /// let feed = Feed::open(FeedOptions {
    ///     predicate: Some("cell_type = 'HUVEC' AND well_type = 'negative_control'".into()),
    ///     global_batch: 256,
    ///     rank: 1,
    ///     world_size: 8,
    ///     ..FeedOptions::new("s3://bucket/store")
    /// })
    /// .await?;
    /// println!("{} rows, {} steps an epoch", feed.len(), feed.steps(0));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(opts: FeedOptions) -> Result<Feed> {
        if opts.global_batch == 0 || opts.world_size == 0 || opts.rank >= opts.world_size {
            return Err(Error::Usage(format!(
                "batch size {} over {} ranks, rank {}: need G >= 1 and 0 <= rank < world size",
                opts.global_batch, opts.world_size, opts.rank
            )));
        }
        if opts.clump == 0 {
            return Err(Error::Usage("clump 0: need clump >= 1".into()));
        }
        if opts.threads > MAX_THREADS {
            return Err(Error::Usage(format!(
                "{} decode threads: at most {MAX_THREADS} (0: one per core)",
                opts.threads
            )));
        }
        let root = Location::parse(&opts.store, &opts.options)?;
        root.require_local_dir()?;
        let sites = root.child("sites");
        let url = || sites.url.to_string();
        let table = open_table(&sites, opts.version)
            .await
            .map_err(|e| match e.class() {
                cellshard_core::ErrorClass::NotFound => Error::NotFound {
                    url: url(),
                    message: e.to_string(),
                },
                cellshard_core::ErrorClass::BadInput => Error::Usage(e.to_string()),
                _ => Error::Store {
                    url: url(),
                    message: e.to_string(),
                },
            })?
            .ok_or_else(|| Error::NotFound {
                url: url(),
                message: "no sites table here".into(),
            })?;
        let version = i64::try_from(table.version().unwrap_or(0)).unwrap_or(i64::MAX);
        let snapshot = table.snapshot().map_err(|e| Error::Store {
            url: sites.url.to_string(),
            message: e.to_string(),
        })?;
        let store_id = crate::cursor::store_identity(snapshot.metadata().id());
        let mut files: Vec<_> = snapshot
            .log_data()
            .iter()
            .map(|f| {
                let mut parts: Vec<_> = f.partition_values_map().into_iter().collect();
                parts.sort();
                let size = u64::try_from(f.size()).map_err(|_| Error::Store {
                    url: url(),
                    message: format!("the log gives {} a negative size {}", f.path(), f.size()),
                })?;
                Ok((f.path().to_string(), size, parts))
            })
            .collect::<Result<_>>()?;
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let split = opts.split.clone();
        let keep = move |e: &str, p: i64, w: &str| split.as_ref().is_none_or(|s| s.takes(e, p, w));
        // Partition pruning first: files of other partitions are never opened.
        let files = prune_by_partitions(files, opts.predicate.as_deref()).await?;
        let selection = select(
            &sites,
            files,
            opts.predicate.as_deref(),
            &opts.columns,
            &keep,
        )
        .await?;
        let selection = Arc::new(selection);
        let reader = Reader::new(
            sites.clone(),
            selection.clone(),
            opts.threads,
            opts.read_budget,
        )?;
        let mut feed = Feed {
            opts,
            sites,
            version,
            selection,
            selection_hash: 0,
            store_id,
            reader,
        };
        // One batch must fit the memory budget, checked before anything is allocated.
        let batch = u128::try_from(feed.tensor_bytes()).unwrap_or(u128::MAX)
            * u128::from(feed.rank_batch());
        if batch > u128::from(feed.opts.memory_budget) {
            return Err(Error::Usage(format!(
                "a batch of {} sites on this rank needs {batch} bytes of tensors, more than the memory budget of {} bytes: use a smaller batch size or a larger memory budget",
                feed.rank_batch(),
                feed.opts.memory_budget
            )));
        }
        let mut h = Sha256::new();
        h.update(feed.opts.predicate.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(
            feed.opts
                .split
                .as_ref()
                .map(SplitSpec::key)
                .unwrap_or_default(),
        );
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        feed.selection_hash = u64::from_le_bytes(first);
        Ok(feed)
    }

    /// Resume from `cursor` with `opts` (which may name another world size and rank, or
    /// another batch size): the version is the cursor's, and the selection must match.
    pub async fn from_cursor(mut opts: FeedOptions, cursor: &Cursor) -> Result<Feed> {
        opts.version = Some(cursor.version);
        opts.seed = cursor.seed;
        opts.clump = cursor.clump;
        opts.tail = cursor.tail;
        let feed = Feed::open(opts).await?;
        if cursor.store != [0; 16] && cursor.store != feed.store_id {
            return Err(Error::Usage(format!(
                "the cursor was taken on another store than {} (its sites table has another Delta id)",
                feed.sites.url
            )));
        }
        if feed.selection_hash != cursor.selection {
            return Err(Error::Usage(
                "the cursor was taken with another predicate or split".into(),
            ));
        }
        Ok(feed)
    }

    /// Rows selected (N).
    pub fn len(&self) -> u64 {
        self.selection.at.len() as u64
    }

    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pinned `sites` version.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Compressed tensor bytes an epoch reads (the selected rows' pages, from the page
    /// index), over all ranks.
    pub fn bytes_to_read(&self) -> u64 {
        self.reader.bytes_to_read()
    }

    /// Bytes of one tensor.
    pub fn tensor_bytes(&self) -> usize {
        self.selection.shape.bytes()
    }

    /// Tensor dimensions (C, H, W).
    pub fn tensor_dims(&self) -> [usize; 3] {
        self.selection.shape.dims
    }

    /// Channel names in stacking order (`w1`.. for stores that name none).
    pub fn channel_names(&self) -> &[String] {
        &self.selection.channel_names
    }

    /// The data files whose rows the selection read (after partition pruning).
    pub fn files(&self) -> Vec<String> {
        self.selection
            .files
            .iter()
            .map(|f| self.sites.display(&f.path))
            .collect()
    }

    /// Site ids of the selection, in `site_id` order (sample index -> site).
    pub fn site_ids(&self) -> &[String] {
        &self.selection.site_ids
    }

    fn batching(&self) -> Batching {
        Batching {
            global_batch: self.opts.global_batch,
            world_size: self.opts.world_size,
            rank: self.opts.rank,
            tail: self.opts.tail,
        }
    }

    /// Slots in each of this rank's batches.
    pub fn rank_batch(&self) -> u64 {
        self.batching().local_batch()
    }

    /// The global batch size G.
    pub fn global_batch(&self) -> u64 {
        self.opts.global_batch
    }

    /// Steps of an epoch from global position `start` (the same on every rank).
    pub fn steps(&self, start: u64) -> u64 {
        self.batching().steps(self.len(), start)
    }

    /// This rank's samples (indices into the selection) for the step that starts at
    /// global position `start` of `epoch`; `None` marks a padded slot.
    pub fn samples(&self, epoch: u64, start: u64) -> Vec<Option<u64>> {
        let order = EpochOrder::new(self.len(), self.opts.seed, epoch, self.opts.clump);
        self.batching()
            .positions(self.len(), start)
            .into_iter()
            .map(|p| p.map(|p| order.row(p)))
            .collect()
    }

    /// How well an epoch is shuffled: the mean number of distinct plates in a global batch,
    /// and the entropy (bits) of the log2-bucketed distance between the selection indices
    /// of consecutive samples (a sequential read scores 0; an exact shuffle of N rows
    /// about log2(log2 N)).
    pub fn shuffle_quality(&self, epoch: u64) -> ShuffleQuality {
        let n = self.len();
        let order = EpochOrder::new(n, self.opts.seed, epoch, self.opts.clump);
        let plate = |i: u64| {
            // A row of the order is below `n`, the number of site ids: it fits a usize.
            let id = &self.selection.site_ids[usize::try_from(i).unwrap_or(usize::MAX)];
            // site_id = EXPERIMENT_PLATE_WELL_SITE
            id.rsplitn(3, '_').nth(2).unwrap_or(id).to_string()
        };
        let g = self.opts.global_batch;
        let (mut plates, mut batches) = (0usize, 0usize);
        let mut start = 0;
        while start < n {
            let distinct: BTreeSet<String> = (start..(start + g).min(n))
                .map(|p| plate(order.row(p)))
                .collect();
            plates += distinct.len();
            batches += 1;
            start += g;
        }
        let mut buckets = [0u64; 65];
        for p in 1..n {
            let d = order.row(p).abs_diff(order.row(p - 1));
            buckets[(64 - d.leading_zeros()) as usize] += 1;
        }
        let total = n.saturating_sub(1).max(1) as f64;
        let entropy = buckets
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let q = c as f64 / total;
                -q * q.log2()
            })
            .sum();
        ShuffleQuality {
            plates_per_batch: plates as f64 / batches.max(1) as f64,
            diff_entropy_bits: entropy,
        }
    }

    /// The cursor after the steps up to global position `position` of `epoch`.
    pub fn cursor(&self, epoch: u64, position: u64) -> Cursor {
        Cursor {
            store: self.store_id,
            version: self.version,
            selection: self.selection_hash,
            seed: self.opts.seed,
            epoch,
            position,
            global_batch: self.opts.global_batch,
            clump: self.opts.clump,
            tail: self.opts.tail,
        }
    }

    /// Read this rank's batch of the step at global position `start` of `epoch`: only the
    /// pages of the rows it needs.
    pub async fn read(&self, epoch: u64, start: u64) -> Result<Batch> {
        self.reader.read(self.samples(epoch, start), start).await
    }

    /// The limit of reading: tensors per second that `threads` threads decompress with the
    /// store's codec alone (a copy, for uncompressed pages) from the pages of the first
    /// `rows` selected rows, already in memory, each thread into the slots of a rank batch's
    /// buffer in turn (repeated for at least `seconds`); and the codec's name. Take enough
    /// rows that their pages do not fit the CPU's caches, as an epoch's do not.
    pub async fn codec_limit(
        &self,
        rows: usize,
        seconds: f64,
        threads: usize,
    ) -> Result<(f64, &'static str)> {
        let slots = usize::try_from(self.rank_batch()).unwrap_or(usize::MAX);
        self.reader.codec_limit(rows, seconds, threads, slots).await
    }

    /// Hand a batch's tensor buffer back for a later batch to reuse (optional: a batch
    /// that is dropped frees its memory).
    pub fn recycle(&self, tensors: Vec<u8>) {
        self.reader.recycle(tensors);
    }

    /// Decode threads of this feed.
    pub fn threads(&self) -> usize {
        self.reader.threads()
    }
}
