//! `cellshard-bench vectors`: `nearest` queries per second and `replicate_map`'s time over
//! one vector per site of the whole RxRx1 design (125,510 sites), against a numpy brute
//! force on the same vectors.
//!
//! The vectors are synthetic: a direction per siRNA (strong for positive controls, weak for
//! treatments, none for the negative control) plus per-site noise, so replicate retrieval
//! has something to find. The tables are in memory, so the figures are the functions'
//! own work, not the store's reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Float32Builder, Int32Array, ListBuilder, RecordBatch, StringArray};
use cellshard_sql::nearest::Nearest;
use cellshard_sql::replicate_map::ReplicateMap;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

/// Options of `cellshard-bench vectors`.
#[derive(clap::Args)]
pub struct VectorArgs {
    /// Vector width.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// `nearest` queries timed after the first (which loads the vectors).
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// `replicate_map`'s null size.
    #[arg(long, default_value_t = 10_000)]
    pub null_size: usize,
    /// A Python with numpy, for the brute-force comparison (skipped without).
    #[arg(long, env = "CELLSHARD_PYTHON")]
    pub python: Option<String>,
}

/// xorshift64* uniform and a sum-of-uniforms normal.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        #[allow(clippy::cast_precision_loss)]
        let u = v as f32 / (1u64 << 24) as f32;
        u
    }

    fn normal(&mut self) -> f32 {
        (0..12).map(|_| self.uniform()).sum::<f32>() - 6.0
    }
}

/// The design's sites: id, siRNA (None for none) and well type.
fn design_sites() -> Result<Vec<(String, Option<i32>, String)>> {
    let text = zstd::decode_all(cellshard_synth::RXRX1_DESIGN_ZST)?;
    let text = String::from_utf8(text)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("the design has no column {name}"))
    };
    let (id, wt, sirna) = (col("site_id")?, col("well_type")?, col("sirna_id")?);
    Ok(lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[id].to_string(), f[sirna].parse().ok(), f[wt].to_string())
        })
        .collect())
}

fn tables(
    sites: &[(String, Option<i32>, String)],
    dim: usize,
) -> Result<(RecordBatch, RecordBatch, Vec<f32>)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut directions: HashMap<i32, Vec<f32>> = HashMap::new();
    let mut flat = Vec::with_capacity(sites.len() * dim);
    let mut lists = ListBuilder::new(Float32Builder::with_capacity(sites.len() * dim));
    for (_, sirna, well_type) in sites {
        let strength = match well_type.as_str() {
            "positive_control" => 1.0,
            "negative_control" => 0.0,
            _ => 0.3,
        };
        let dir = sirna.map(|s| {
            directions
                .entry(s)
                .or_insert_with(|| (0..dim).map(|_| rng.normal()).collect())
                .clone()
        });
        for d in 0..dim {
            let signal = dir.as_ref().map_or(0.0, |v| v[d] * strength);
            let v = signal + rng.normal();
            flat.push(v);
            lists.values().append_value(v);
        }
        lists.append(true);
    }
    let ids = Arc::new(StringArray::from_iter_values(
        sites.iter().map(|s| s.0.as_str()),
    ));
    let sites_batch = RecordBatch::try_from_iter(vec![
        ("site_id", ids.clone() as ArrayRef),
        (
            "sirna_id",
            Arc::new(Int32Array::from_iter(sites.iter().map(|s| s.1))) as ArrayRef,
        ),
        (
            "well_type",
            Arc::new(StringArray::from_iter_values(
                sites.iter().map(|s| s.2.as_str()),
            )),
        ),
    ])?;
    let vectors = RecordBatch::try_from_iter(vec![
        ("site_id", ids as ArrayRef),
        ("vector", Arc::new(lists.finish()) as ArrayRef),
        (
            "model",
            Arc::new(StringArray::from(vec!["bench"; sites.len()])) as ArrayRef,
        ),
    ])?;
    Ok((sites_batch, vectors, flat))
}

/// numpy's time per query for `X @ q` and a top-k by `argpartition` over the same matrix.
fn numpy_per_query(
    python: &str,
    flat: &[f32],
    dim: usize,
    queries: usize,
    k: usize,
) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("x.f32");
    let bytes: Vec<u8> = flat.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&path, bytes)?;
    let script = format!(
        "import numpy as np, time\n\
         x = np.fromfile({path:?}, dtype=np.float32).reshape(-1, {dim})\n\
         x /= np.linalg.norm(x, axis=1, keepdims=True)\n\
         best = []\n\
         t = time.perf_counter()\n\
         for i in range({queries}):\n\
         \x20   s = x @ x[i * 617 % len(x)]\n\
         \x20   top = np.argpartition(-s, {k})[:{k}]\n\
         \x20   best.append(top[np.argsort(-s[top])])\n\
         print((time.perf_counter() - t) / {queries})\n",
        path = path.display().to_string()
    );
    let out = std::process::Command::new(python)
        .args(["-c", &script])
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    anyhow::ensure!(
        out.status.success(),
        "numpy comparison failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Run the benchmark and print its figures.
pub async fn vectors(a: VectorArgs) -> Result<()> {
    let t = Instant::now();
    let sites = design_sites()?;
    let (sites_batch, vectors, flat) = tables(&sites, a.dim)?;
    println!(
        "{} sites x {} dims made in {:.1} s",
        sites.len(),
        a.dim,
        t.elapsed().as_secs_f64()
    );
    // The kernel alone: one core, then every core, over unit rows.
    let mut unit = flat.clone();
    cellshard_stages::vector::normalize(&mut unit, a.dim);
    for threads in [
        1,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    ] {
        let t = Instant::now();
        let per = sites.len().div_ceil(threads);
        for i in 0..a.queries {
            let q = &unit[(i * 617 % sites.len()) * a.dim..][..a.dim];
            std::thread::scope(|s| {
                for (c, rows) in unit.chunks(per * a.dim).enumerate() {
                    s.spawn(move || {
                        cellshard_stages::vector::best_dots(rows, a.dim, q, a.k, c * per, None)
                    });
                }
            });
        }
        println!(
            "kernel on {threads} thread(s): {:.2} ms per query",
            t.elapsed().as_secs_f64() * 1e3 / a.queries.max(1) as f64
        );
    }
    let ctx = SessionContext::new();
    ctx.register_table(
        "sites",
        Arc::new(MemTable::try_new(
            sites_batch.schema(),
            vec![vec![sites_batch]],
        )?),
    )?;
    ctx.register_table(
        "embeddings",
        Arc::new(MemTable::try_new(vectors.schema(), vec![vec![vectors]])?),
    )?;
    ctx.register_udtf("nearest", Arc::new(Nearest::default()));
    ctx.register_udtf("replicate_map", Arc::new(ReplicateMap));
    let query = |i: usize| {
        format!(
            "SELECT * FROM nearest('embeddings', 'bench', '{}', {})",
            sites[i * 617 % sites.len()].0,
            a.k
        )
    };
    let t = Instant::now();
    for _ in 0..a.queries {
        ctx.sql("SELECT site_id FROM sites LIMIT 1")
            .await?
            .collect()
            .await?;
    }
    println!(
        "a one-row query: {:.2} ms (the SQL round trip every query pays)",
        t.elapsed().as_secs_f64() * 1e3 / a.queries.max(1) as f64
    );
    let t = Instant::now();
    let first = ctx.sql(&query(0)).await?.collect().await?;
    anyhow::ensure!(first.iter().map(RecordBatch::num_rows).sum::<usize>() == a.k);
    println!(
        "nearest: first query (loads the vectors) {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for i in 0..a.queries {
        ctx.sql(&query(i)).await?.collect().await?;
    }
    let per = t.elapsed().as_secs_f64() / a.queries.max(1) as f64;
    println!(
        "nearest: {:.2} ms per query, {:.0} queries/s (k = {}, {} queries)",
        per * 1e3,
        1.0 / per,
        a.k,
        a.queries
    );
    if let Some(py) = &a.python {
        let np = numpy_per_query(py, &flat, a.dim, a.queries, a.k)?;
        println!(
            "numpy brute force: {:.2} ms per query, {:.0} queries/s; nearest / numpy = {:.2}x",
            np * 1e3,
            1.0 / np,
            np / per
        );
    }
    let t = Instant::now();
    let map = ctx
        .sql(&format!(
            "SELECT count(*) AS groups, avg(mean_average_precision) AS map,
                    sum(CASE WHEN corrected_p_value < 0.05 THEN 1 ELSE 0 END) AS significant
             FROM replicate_map('embeddings', 'bench', 'sirna_id',
                                'well_type = ''negative_control''', {})",
            a.null_size
        ))
        .await?
        .collect()
        .await?;
    println!(
        "replicate_map: {:.1} s (null size {})\n{}",
        t.elapsed().as_secs_f64(),
        a.null_size,
        arrow::util::pretty::pretty_format_batches(&map)?
    );
    Ok(())
}
