//! What `cellshard-bench ingest` measured: the decode ceilings, the pipeline runs, and the text
//! it prints from them.

/// The decoder name of the ceiling measured again after the pipeline runs.
pub(super) const AFTER: &str = "crop-aware-after";
/// The decoder name under which the inflate-only limit is recorded.
pub(super) const INFLATE: &str = "inflate-only";

/// One decode-ceiling measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CeilingRun {
    /// Decoder name.
    pub decoder: &'static str,
    /// Threads decoding.
    pub threads: usize,
    /// Sites decoded.
    pub sites: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Sites per wall second.
    pub sites_per_second: f64,
    /// Sites per CPU second of this process (robust against other load on the machine).
    pub sites_per_cpu_second: f64,
}

/// One pipeline measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineRun {
    /// CPU threads of the run.
    pub threads: usize,
    /// Whether the process was pinned to one core with `taskset`.
    pub pinned: bool,
    /// Plates.
    pub plates: u64,
    /// Sites stored.
    pub sites: u64,
    /// Wall seconds of the run.
    pub seconds: f64,
    /// Stored sites per wall second.
    pub sites_per_second: f64,
    /// Stored sites per CPU second of the run's process.
    pub sites_per_cpu_second: f64,
    /// Seconds the Parquet writers and commits were busy (summed over the files written at
    /// once).
    pub write_seconds: f64,
    /// `write_seconds` / wall seconds.
    pub write_share: f64,
    /// Peak RSS of the run's process in bytes.
    pub peak_rss_bytes: u64,
    /// Shard bytes written.
    pub bytes_out: u64,
}

/// Everything one bench run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Image side.
    pub size: u32,
    /// Cores available.
    pub cores: usize,
    /// Distinct sites in the pool.
    pub pool_sites: usize,
    /// Mean PNG bytes per site of the pool.
    pub png_bytes_per_site: u64,
    /// Raw over PNG bytes.
    pub compression_ratio: f64,
    /// Decode ceilings.
    pub ceiling: Vec<CeilingRun>,
    /// Pipeline runs.
    pub pipeline: Vec<PipelineRun>,
}

/// The report as the text `cellshard-bench ingest` prints.
pub fn render(r: &BenchReport) -> String {
    let mut out = String::new();
    let measured = |decoder: &str, threads: usize| {
        r.ceiling
            .iter()
            .find(|c| c.decoder == decoder && c.threads == threads)
            .map(|c| c.sites_per_second)
    };
    // The mean of the ceiling before and after the pipeline runs, where both exist.
    let ceiling_at =
        |threads: usize| match (measured("crop-aware", threads), measured(AFTER, threads)) {
            (Some(b), Some(a)) => Some((b + a) / 2.0),
            (b, a) => b.or(a),
        };
    let one = measured("crop-aware", 1).unwrap_or(0.0);
    out.push_str(&format!(
        "cellshard-bench ingest: {}x{} 16-bit PNG sites ({:.1} MB per 6-channel site, {:.2}x compressed), {} core(s)\n",
        r.size,
        r.size,
        r.png_bytes_per_site as f64 / 1e6,
        r.compression_ratio,
        r.cores
    ));
    out.push_str("decode only (PNG bytes in memory -> 2x downsample -> centre crop):\n");
    for c in &r.ceiling {
        if c.decoder == AFTER {
            continue;
        }
        if c.decoder == INFLATE {
            let of = measured("crop-aware", c.threads)
                .map(|d| format!(", the decoder does {:.2} of it", d / c.sites_per_second))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {} {} thread(s): {:>5.2} sites/s ({:.2} per CPU-second, {} sites): the chunk walk and libdeflate alone, to the crop's last row (no decoder built on them is faster){of}\n",
                c.decoder, c.threads, c.sites_per_second, c.sites_per_cpu_second, c.sites
            ));
            continue;
        }
        let scaling = if c.decoder == "crop-aware" && c.threads > 1 && one > 0.0 {
            format!(", {:.2}x one thread", c.sites_per_second / one)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {:<10} {} thread(s): {:>7.2} sites/s ({:.2} per CPU-second, {} sites){scaling}\n",
            c.decoder, c.threads, c.sites_per_second, c.sites_per_cpu_second, c.sites
        ));
    }
    for c in r.ceiling.iter().filter(|c| c.decoder == AFTER) {
        out.push_str(&format!(
            "  crop-aware {} thread(s), again after the pipeline runs: {:.2} sites/s\n",
            c.threads, c.sites_per_second
        ));
    }
    out.push_str("full pipeline (cellshard run: read, decode, histograms, spill, normalize, Parquet, commit):\n");
    let one_core_pipeline = r.pipeline.iter().find(|p| p.threads == 1);
    for p in &r.pipeline {
        let ceiling = ceiling_at(p.threads).unwrap_or(0.0);
        let ratio = if ceiling > 0.0 {
            p.sites_per_second / ceiling
        } else {
            0.0
        };
        let scaling = match one_core_pipeline {
            Some(o) if p.threads > 1 && o.sites_per_second > 0.0 => {
                format!(", {:.2}x one core", p.sites_per_second / o.sites_per_second)
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {} thread(s){}: {} plate(s), {} sites in {:.1} s: {:.2} sites/s = {:.2} of the decode ceiling (mean of before and after){scaling}; {:.2} sites per CPU-second; writers busy {:.1}% of wall; peak RSS {:.0} MiB\n",
            p.threads,
            if p.pinned { " pinned to 1 core" } else { "" },
            p.plates,
            p.sites,
            p.seconds,
            p.sites_per_second,
            ratio,
            p.sites_per_cpu_second,
            p.write_share * 100.0,
            p.peak_rss_bytes as f64 / (1 << 20) as f64
        ));
    }
    out
}
