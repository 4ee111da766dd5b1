//! The bench's data: a pool of distinct synthetic sites, rendered once into the cache, and
//! full plates of the design laid out over it with hard links.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use cellshard_core::MetadataTable;
use cellshard_core::layout::{KeyFields, LayoutTemplate, RXRX1_LAYOUT};

use super::{BenchArgs, synth_config};

/// The pool's PNGs, `[site][channel]`, rendering whatever the cache lacks.
pub(super) fn ensure_pool(
    a: &BenchArgs,
    design: &MetadataTable,
    cache: &Path,
) -> Result<Vec<Vec<Vec<u8>>>> {
    let dir = cache.join(format!("pool-{}", a.size));
    std::fs::create_dir_all(&dir)?;
    let cfg = synth_config(a, 1);
    let sites = cellshard_synth::select_sites(design, &cfg)?;
    if sites.len() < a.pool {
        bail!(
            "the design's first plate has {} sites, fewer than --pool {}",
            sites.len(),
            a.pool
        );
    }
    let path = |i: usize, c: u32| dir.join(format!("site{i:03}_w{c}.png"));
    let missing: Vec<(usize, u32)> = (0..a.pool)
        .flat_map(|i| (1..=6).map(move |c| (i, c)))
        .filter(|&(i, c)| !path(i, c).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "bench: rendering {} channel images into {} (once; kept for later runs)",
            missing.len(),
            dir.display()
        );
        let next = AtomicUsize::new(0);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&(i, c)) = missing.get(k) else {
                                return Ok(());
                            };
                            let px = cellshard_synth::render_channel(&cfg, &sites[i].meta, c);
                            let png = cellshard_synth::encode_png(&cfg, &px)?;
                            // Write then rename, so an interrupted run leaves no half file.
                            let tmp = path(i, c).with_extension("tmp");
                            std::fs::write(&tmp, png)?;
                            std::fs::rename(&tmp, path(i, c))?;
                        }
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a render thread panicked"))?
            })
        })?;
    }
    (0..a.pool)
        .map(|i| {
            (1..=6)
                .map(|c| {
                    std::fs::read(path(i, c))
                        .with_context(|| format!("cannot read {}", path(i, c).display()))
                })
                .collect()
        })
        .collect()
}

/// `plates` full plates of the design laid out with hard links to the pool, plus their
/// metadata.csv; returns the layout root.
pub(super) fn ensure_layout(
    a: &BenchArgs,
    design: &MetadataTable,
    cache: &Path,
    plates: u32,
) -> Result<PathBuf> {
    let wells = a.wells.map_or("all".to_string(), |w| w.to_string());
    let root = cache.join(format!(
        "plates-{}-p{plates}-w{wells}-pool{}",
        a.size, a.pool
    ));
    let done = root.join(".complete");
    if done.exists() {
        return Ok(root);
    }
    let cfg = synth_config(a, plates);
    let sites = cellshard_synth::select_sites(design, &cfg)?;
    let layout = LayoutTemplate::parse(RXRX1_LAYOUT)?;
    let pool_dir = cache.join(format!("pool-{}", a.size));
    for (j, site) in sites.iter().enumerate() {
        let m = &site.meta;
        for c in 1..=6 {
            let key = layout.render(&KeyFields {
                dataset: m.dataset.clone(),
                experiment: m.experiment.clone(),
                plate: m.plate,
                well: m.well.clone(),
                site: m.site.unwrap_or(1),
                channel: c,
                plane: None,
            });
            let dst = root.join(&key);
            if dst.exists() {
                continue;
            }
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let src = pool_dir.join(format!("site{:03}_w{c}.png", j % a.pool));
            std::fs::hard_link(&src, &dst)
                .or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))
                .with_context(|| format!("cannot link {} to {}", src.display(), dst.display()))?;
        }
    }
    std::fs::write(
        root.join("metadata.csv"),
        cellshard_synth::metadata_csv(design, &sites)?,
    )?;
    std::fs::write(&done, format!("{} sites\n", sites.len()))?;
    eprintln!(
        "bench: laid out {} plate(s), {} sites, under {}",
        plates,
        sites.len(),
        root.display()
    );
    Ok(root)
}
