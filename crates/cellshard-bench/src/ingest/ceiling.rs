//! The decode ceiling: the crop-aware decoder alone on PNG bytes already in memory, at one
//! thread and at every core, with the baselines measured the same way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Result;
use cellshard_stages::DecodeSpec;
use cellshard_stages::png::decode_transformed;

use super::baseline::{decode_transformed_rows, inflate_only};
use super::report::{CeilingRun, INFLATE};

/// What every ceiling measurement decodes, and how.
pub(super) struct Ceiling<'a> {
    /// The pool's PNGs, `[site][channel]`.
    pub pool: &'a [Vec<Vec<u8>>],
    /// The pipeline's decode stage.
    pub spec: DecodeSpec,
    /// The pipeline's downsample factor.
    pub factor: u32,
    /// The pipeline's crop.
    pub crop: Option<u32>,
    /// Sites decoded per round.
    pub sites: usize,
    /// Thread counts measured: 1, and every core's when there is more than one.
    pub threads: Vec<usize>,
}

impl Ceiling<'_> {
    /// Warm the page cache, the allocator and the per-thread decoder once.
    pub fn warm(&self) -> Result<()> {
        decode_sites(self.pool, self.pool.len().min(2), 1, |b| {
            decode_transformed(b, &self.spec, self.factor, self.crop)
        })?;
        Ok(())
    }

    /// At each thread count, recorded under `decoder`: the crop-aware ceiling, or (for
    /// [`INFLATE`]) the limit above it, libdeflate inflating the same streams to the same
    /// row after the same chunk walk.
    pub fn measure(&self, decoder: &'static str, out: &mut Vec<CeilingRun>) -> Result<()> {
        let (spec, factor, crop) = (&self.spec, self.factor, self.crop);
        for &t in &self.threads {
            let run = best_of(ROUNDS, || {
                if decoder == INFLATE {
                    decode_sites(self.pool, self.sites, t, |b| {
                        inflate_only(b, spec, factor, crop)
                    })
                } else {
                    decode_sites(self.pool, self.sites, t, |b| {
                        decode_transformed(b, spec, factor, crop)
                    })
                }
            })?;
            eprintln!(
                "bench: {decoder}, {t} thread(s): {:.2} sites/s",
                run.sites_per_second
            );
            out.push(CeilingRun { decoder, ..run });
        }
        Ok(())
    }

    /// The previous decoder (the `png` crate's row reader) on one thread, for reference.
    pub fn previous_decoder(&self) -> Result<CeilingRun> {
        let n = self.sites.min(self.pool.len());
        let rows = best_of(ROUNDS, || {
            decode_sites(self.pool, n, 1, |b| {
                decode_transformed_rows(b, &self.spec, self.factor, self.crop)
            })
        })?;
        eprintln!(
            "bench: previous decoder (png row reader), 1 thread: {:.2} sites/s",
            rows.sites_per_second
        );
        Ok(CeilingRun {
            decoder: "png-rows",
            ..rows
        })
    }
}

/// Rounds of each ceiling measurement; the fastest counts (other load on the machine only
/// ever slows a round down).
const ROUNDS: usize = 3;

fn best_of(rounds: usize, mut f: impl FnMut() -> Result<CeilingRun>) -> Result<CeilingRun> {
    let mut best = f()?;
    for _ in 1..rounds {
        let r = f()?;
        if r.sites_per_second > best.sites_per_second {
            best = r;
        }
    }
    Ok(best)
}

/// Decode `n` sites (cycling through the pool) on `threads` threads.
fn decode_sites<T, E: std::fmt::Display + Send>(
    pool: &[Vec<Vec<u8>>],
    n: usize,
    threads: usize,
    decode: impl Fn(&[u8]) -> std::result::Result<T, E> + Sync,
) -> Result<CeilingRun> {
    let next = AtomicUsize::new(0);
    let cpu0 = cellshard_runtime::summary::cpu_seconds().unwrap_or(0.0);
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= n {
                            return Ok(());
                        }
                        for png in &pool[k % pool.len()] {
                            let plane = decode(png).map_err(|e| anyhow::anyhow!("decode: {e}"))?;
                            std::hint::black_box(plane);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a decode thread panicked"))?
        })
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cellshard_runtime::summary::cpu_seconds().unwrap_or(0.0) - cpu0;
    Ok(CeilingRun {
        decoder: "",
        threads,
        sites: n,
        seconds,
        sites_per_second: n as f64 / seconds.max(1e-9),
        sites_per_cpu_second: if cpu > 0.0 { n as f64 / cpu } else { 0.0 },
    })
}
