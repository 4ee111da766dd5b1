//! `cellshard feed`: the training feed's plan, and a benchmark of reading.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use cellshard_feed::{Feed, FeedOptions, SplitSpec, Tail};

use crate::sql::parse_kv;

/// What to feed.
#[derive(clap::Args)]
pub(crate) struct FeedArgs {
    /// Store root URL or path.
    #[arg(long)]
    store: String,
    /// Object store option for the store, KEY=VALUE (repeatable).
    #[arg(long = "store-option", value_parser = parse_kv)]
    store_options: Vec<(String, String)>,
    /// SQL predicate over the metadata columns of `sites`.
    #[arg(long = "where")]
    predicate: Option<String>,
    /// `sites` version to pin (default: the latest).
    #[arg(long)]
    version: Option<i64>,
    /// Shuffle seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Global batch size (all ranks together).
    #[arg(long, default_value_t = 256)]
    batch_size: u64,
    /// World size.
    #[arg(long, default_value_t = 1)]
    world_size: u64,
    /// Tail policy: pad_masked, drop or repeat.
    #[arg(long, default_value = "pad_masked")]
    tail: String,
    /// Shuffle runs of this many consecutive rows together (1: exact uniform shuffle).
    #[arg(long, default_value_t = 1)]
    clump: u64,
    /// Well-level split, e.g. train:0.9,val:0.1 (with --take).
    #[arg(long, requires = "take")]
    split: Option<String>,
    /// The part of --split to read.
    #[arg(long)]
    take: Option<String>,
}

impl FeedArgs {
    fn options(&self, rank: u64) -> Result<FeedOptions> {
        let tail = Tail::parse(&self.tail).with_context(|| {
            format!(
                "--tail {:?}: expected pad_masked, drop or repeat",
                self.tail
            )
        })?;
        let split = match (&self.split, &self.take) {
            (Some(s), Some(t)) => Some(SplitSpec::parse(s, t)?),
            _ => None,
        };
        Ok(FeedOptions {
            store: self.store.clone(),
            options: self
                .store_options
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
            predicate: self.predicate.clone(),
            version: self.version,
            seed: self.seed,
            global_batch: self.batch_size,
            world_size: self.world_size,
            rank,
            tail,
            clump: self.clump,
            split,
            ..FeedOptions::new(&self.store)
        })
    }
}

/// `cellshard feed`.
#[derive(clap::Subcommand)]
pub(crate) enum FeedCommand {
    /// Rows selected, steps per epoch and bytes to read, without reading a tensor.
    Plan(FeedArgs),
    /// Read one epoch on one thread and on every core; compare with zstd alone.
    Bench {
        #[command(flatten)]
        feed: FeedArgs,
        /// Steps to read per measurement (0: a whole epoch).
        #[arg(long, default_value_t = 0)]
        steps: u64,
    },
}

pub(crate) async fn feed(cmd: FeedCommand) -> Result<()> {
    match cmd {
        FeedCommand::Plan(a) => plan(&a).await,
        // The bench starts runtimes of its own: not from inside this one.
        FeedCommand::Bench { feed, steps } => std::thread::spawn(move || bench(&feed, steps))
            .join()
            .map_err(|_| anyhow::anyhow!("the bench thread panicked"))?,
    }
}

async fn plan(a: &FeedArgs) -> Result<()> {
    let feed = Feed::open(a.options(0)?).await?;
    let [c, h, w] = feed.tensor_dims();
    println!("version          {}", feed.version());
    println!("rows selected    {}", feed.len());
    println!(
        "tensor           {c}x{h}x{w}, {} bytes",
        feed.tensor_bytes()
    );
    println!(
        "steps per epoch  {} (global batch {}, {} per rank on {} ranks, tail {})",
        feed.steps(0),
        a.batch_size,
        a.batch_size.div_ceil(a.world_size),
        a.world_size,
        a.tail
    );
    println!(
        "bytes to read    {} compressed per epoch ({} decoded)",
        feed.bytes_to_read(),
        feed.len() * feed.tensor_bytes() as u64
    );
    let q = feed.shuffle_quality(0);
    println!(
        "shuffle          {:.1} distinct plates per global batch, {:.2} bits of index-distance entropy (clump {})",
        q.plates_per_batch, q.diff_entropy_bits, a.clump
    );
    Ok(())
}

/// Tensors per second reading `steps` steps of epoch 0 with a runtime of `threads` threads.
fn read_rate(a: &FeedArgs, threads: usize, steps: u64) -> Result<(f64, f64, Vec<Vec<u8>>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let feed = Feed::open(a.options(0)?).await?;
        let steps = if steps == 0 {
            feed.steps(0)
        } else {
            steps.min(feed.steps(0))
        };
        let started = Instant::now();
        let mut first = None;
        let mut tensors = 0u64;
        let mut sample = Vec::new();
        // Several steps in flight, as a prefetching loader keeps them.
        let mut reads = futures::stream::iter(0..steps)
            .map(|t| feed.read(0, t * a.batch_size))
            .buffered(threads.max(1) * 2);
        use futures::StreamExt;
        while let Some(b) = reads.next().await {
            let b = b?;
            first.get_or_insert_with(|| started.elapsed().as_secs_f64());
            tensors += b.valid.iter().filter(|v| **v).count() as u64;
            if sample.len() < 16 {
                let len = feed.tensor_bytes();
                sample.extend(
                    b.tensors
                        .chunks(len)
                        .take(16 - sample.len())
                        .map(<[u8]>::to_vec),
                );
            }
        }
        let secs = started.elapsed().as_secs_f64();
        Ok::<_, anyhow::Error>((tensors as f64 / secs, first.unwrap_or(secs), sample))
    })
}

fn bench(a: &FeedArgs, steps: u64) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (one, first, sample) = read_rate(a, 1, steps)?;
    let (all, _, _) = read_rate(a, cores, steps)?;
    // The limit: one thread decompressing the same tensors, zstd level 1, in memory.
    let frames: Vec<Vec<u8>> = sample
        .iter()
        .map(|t| zstd::bulk::compress(t, 1))
        .collect::<std::io::Result<_>>()?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < 1.0 {
        for (f, t) in frames.iter().zip(&sample) {
            let out = zstd::bulk::decompress(f, t.len())?;
            n += u64::from(out.len() == t.len());
        }
    }
    let limit = n as f64 / started.elapsed().as_secs_f64();
    println!("cellshard feed bench: {}", a.store);
    println!("  zstd alone, 1 thread:  {limit:.1} tensors/s (the limit)");
    println!(
        "  feed, 1 thread:        {one:.1} tensors/s = {:.2} of the limit",
        one / limit
    );
    println!(
        "  feed, {cores} threads:       {all:.1} tensors/s = {:.2}x one thread",
        all / one
    );
    println!("  first batch:           {:.3} s", first);
    let rss = cellshard_runtime::summary::peak_rss_bytes().unwrap_or(0);
    println!("  peak RSS:              {} MiB", rss >> 20);
    Ok(())
}
