//! Phase 1 of a plate: fetch each site's channel files, decode them through the crop-aware
//! decoder (decode, downsample and center crop in one pass), add the reference sites'
//! pixels to the plate's exact per-channel histograms, spill the cropped planes, then
//! derive the plate's normalization. Touches no table, so it runs while the previous plate
//! is written.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cellshard_core::pipeline::Transform;
use cellshard_core::{ErrorClass, NormalizeMethod, PlateKey, RejectReason, SiteError};
use cellshard_stages::crop::downsample_then_crop;
use cellshard_stages::image::decode_transformed;
use cellshard_stages::png::DecodeErrorKind;
use cellshard_stages::{ChannelNorm, DecodeSpec, Histogram, Plane};
use cellshard_store::schema::{PlateStatRow, RejectRow, SiteQcRow};
use cellshard_store::{PlateBuild, PlateScope};
use futures::{StreamExt, TryStreamExt};

use crate::discover::ResolvedSite;
use crate::fetch::{fetch_site, reserve};
use crate::plate::{PlateJob, add_ns, judge, site_rejects};
use crate::spill::{SpillFile, Spilled};
use crate::{Error, Result};

/// A plate between its two phases: decoded, histogrammed, spilled, its normalization derived.
pub struct DecodedPlate {
    pub(crate) build: PlateBuild,
    pub(crate) spilled: Vec<Spilled>,
    pub(crate) spill_file: std::fs::File,
    pub(crate) rejects: Vec<RejectRow>,
    pub(crate) stats: Vec<PlateStatRow>,
    pub(crate) norms: Vec<ChannelNorm>,
}

/// What one site's CPU work gave.
enum Decoded {
    /// Spilled: `planes` planes of `width x height` from `offset`.
    Spilled {
        offset: u64,
        planes: u64,
        width: u32,
        height: u32,
        qc: cellshard_stages::qc::SiteQc,
    },
    /// The site failed.
    Failed(SiteError),
    /// The scratch file could not be written: fails the run.
    SpillFailed(std::io::Error),
}

/// Phase 1 of `plate`. `rejects` holds the plate's discovery rejects; they are published
/// with the plate in phase 2 ([`crate::phase2::write_plate`]).
pub async fn decode_plate(
    job: &PlateJob<'_>,
    plate: &PlateKey,
    sites: Vec<ResolvedSite>,
    mut rejects: Vec<RejectRow>,
    fingerprint: i64,
) -> Result<DecodedPlate> {
    let t = job.transform;
    let spec = DecodeSpec {
        bit_depth: t.bit_depth,
        width: t.width,
        height: t.height,
        max_pixels: t.max_pixels,
    };
    let hist = Arc::new(Mutex::new(
        (0..job.channels)
            .map(|_| Histogram::new())
            .collect::<Vec<_>>(),
    ));
    let needed = crate::resources::spill_bytes(&t, job.channels, sites.len() as u64);
    let scratch_err = |source: std::io::Error| scratch_error(job.scratch, plate, needed, source);
    let spill = Arc::new(SpillFile::create(job.scratch).map_err(scratch_err)?);
    let cell_type = sites
        .first()
        .map(|s| s.meta.cell_type.clone())
        .unwrap_or_else(|| cellshard_core::metadata::cell_type_of(&plate.experiment));
    let build = PlateBuild::new(
        PlateScope {
            cell_type,
            experiment: plate.experiment.clone(),
            plate: plate.plate as i32,
        },
        &job.sites_ctx.run_id,
        Some(fingerprint),
    );

    let illum = match crate::illum::plate_functions(job, plate, &sites).await {
        Ok(found) => found.map(Arc::new),
        Err(why) => {
            let msg = format!("plate {plate}: illumination: {why}");
            for site in &sites {
                rejects.extend(site_rejects(site, RejectReason::Illumination, &msg));
                job.progress();
                job.progress();
            }
            return Ok(DecodedPlate {
                build,
                spilled: Vec::new(),
                spill_file: Arc::try_unwrap(spill)
                    .map_err(|_| Error::Internal("spill file shared".into()))?
                    .file,
                rejects,
                stats: Vec::new(),
                norms: Vec::new(),
            });
        }
    };
    let dna = cellshard_core::palette::dna_channel(&job.sites_ctx.channel_names);
    let mut stream = futures::stream::iter(sites)
        .map(|site| {
            let hist = hist.clone();
            let spill = spill.clone();
            let illum = illum.clone();
            async move {
                let _reservation = reserve(job, &site).await;
                let files = match fetch_site(job, &site).await {
                    Ok(files) => files,
                    Err(e) => return Ok::<_, Error>((site, Decoded::Failed(e), false)),
                };
                let in_ref = t.reference.includes(&site.meta.well_type);
                let started = Instant::now();
                let site_id = site.key.site_id();
                let (site, out) = job
                    .pool
                    .run(
                        || format!("site {site_id}"),
                        move || {
                            let hist = in_ref.then_some(&*hist);
                            let stages = SiteStages {
                                spec: &spec,
                                t: &t,
                                illum: illum.as_deref(),
                                dna,
                            };
                            let out = decode_site(&site, &files, &stages, hist, &spill);
                            (site, out)
                        },
                    )
                    .await?;
                add_ns(&job.counters.decode_ns, started);
                Ok((site, out, in_ref))
            }
        })
        .buffered(job.inflight.max(1));
    let mut spilled: Vec<Spilled> = Vec::new();
    let mut site_qcs: Vec<cellshard_stages::qc::SiteQc> = Vec::new();
    let mut ref_sites = 0i32;
    // A plate none of whose objects could be read is refused as a whole, not rejected.
    let mut read_any = false;
    let mut first_refusal: Option<String> = None;
    while let Some((site, out, in_ref)) = stream.try_next().await? {
        if spilled.is_empty() && first_refusal.is_none() && !read_any {
            cellshard_store::pause::point("in-phase1").await;
        }
        match &out {
            Decoded::Failed(e) if e.reason == RejectReason::ReadFailed => {
                first_refusal.get_or_insert_with(|| e.to_string());
            }
            _ => read_any = true,
        }
        match out {
            Decoded::Spilled {
                offset,
                planes,
                width,
                height,
                qc,
            } => {
                site_qcs.push(qc);
                spilled.push(Spilled {
                    site,
                    offset,
                    planes,
                    width,
                    height,
                    qc: SiteQcRow::default(),
                });
                ref_sites += i32::from(in_ref);
            }
            Decoded::SpillFailed(e) => return Err(scratch_err(e)),
            Decoded::Failed(e) => rejects.extend(judge(&site, e)?),
        }
        job.progress();
    }
    drop(stream);
    if let (false, Some(first)) = (read_any, first_refusal) {
        return Err(Error::PlateUnreadable {
            plate: format!("{}/{}", plate.experiment, plate.plate),
            first,
        });
    }
    // QC flags need the whole plate (focus is judged against the plate's median).
    let dna = cellshard_core::palette::dna_channel(&job.sites_ctx.channel_names);
    let flags =
        cellshard_stages::qc::plate_flags(&site_qcs.iter().collect::<Vec<_>>(), dna, &job.qc);
    for ((s, q), f) in spilled.iter_mut().zip(site_qcs).zip(flags) {
        s.qc = SiteQcRow {
            focus: q.channels.iter().map(|c| c.focus).collect(),
            saturation: q.channels.iter().map(|c| c.saturation).collect(),
            foreground: q.channels.iter().map(|c| c.foreground).collect(),
            nuclei: i32::try_from(q.nuclei).unwrap_or(i32::MAX),
            flags: f.into_iter().map(str::to_string).collect(),
        };
    }
    // The plate's files are all read: hand the free buffers back to the allocator rather
    // than hold them through phase 2 (the next plate's phase 1 refills the pool).
    job.read_buffers.release();
    let spill_file = Arc::try_unwrap(spill)
        .map_err(|_| Error::Internal("spill file still shared after phase 1".into()))?
        .file;
    let hist = Arc::try_unwrap(hist)
        .map_err(|_| Error::Internal("histograms still shared after phase 1".into()))?
        .into_inner()
        .map_err(|_| Error::Internal("histogram lock poisoned".into()))?;

    let (stats, norms) = if spilled.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        match normalization(job, &build, &hist, ref_sites, illum.as_deref()) {
            Ok(found) => found,
            Err(why) => {
                let msg = format!(
                    "plate {plate}: {why} in the reference population '{}' ({ref_sites} of {} stored sites are in it)",
                    t.reference.as_str(),
                    spilled.len()
                );
                for s in spilled.drain(..) {
                    rejects.extend(site_rejects(&s.site, RejectReason::Normalize, &msg));
                    job.progress();
                }
                (Vec::new(), Vec::new())
            }
        }
    };
    Ok(DecodedPlate {
        build,
        spilled,
        spill_file,
        rejects,
        stats,
        norms,
    })
}

/// The error for a failed spill: a full disk says where and how much is needed.
fn scratch_error(
    dir: &std::path::Path,
    plate: &PlateKey,
    needed: u64,
    source: std::io::Error,
) -> Error {
    if source.kind() == std::io::ErrorKind::StorageFull {
        Error::ScratchFull {
            dir: dir.display().to_string(),
            plate: format!("{}/{}", plate.experiment, plate.plate),
            needed,
        }
    } else {
        Error::Scratch {
            dir: dir.display().to_string(),
            source,
        }
    }
}

/// Each channel's normalization from the reference histograms, and the `plate_stats` rows
/// that record it; or why a channel cannot be normalized.
fn normalization(
    job: &PlateJob<'_>,
    build: &PlateBuild,
    hist: &[Histogram],
    ref_sites: i32,
    illum: Option<&crate::illum::PlateIllum>,
) -> std::result::Result<(Vec<PlateStatRow>, Vec<ChannelNorm>), String> {
    let t = job.transform;
    let pct = t.method == NormalizeMethod::Percentile;
    let mut stats = Vec::new();
    let mut norms = Vec::new();
    for (c, h) in hist.iter().enumerate() {
        let n = ChannelNorm::from_histogram(t.method, t.low, t.high, h)
            .map_err(|why| format!("channel w{} cannot be normalized: {why}", c + 1))?;
        let (low_value, high_value) = match n {
            ChannelNorm::Percentile { lo, hi } => (Some(i32::from(lo)), Some(i32::from(hi))),
            ChannelNorm::Zscore { .. } => (None, None),
        };
        stats.push(PlateStatRow {
            experiment: build.scope.experiment.clone(),
            cell_type: build.scope.cell_type.clone(),
            plate: build.scope.plate,
            channel: i32::try_from(c + 1)
                .map_err(|_| format!("channel w{} is out of range", c + 1))?,
            method: t.method.as_str().into(),
            reference: t.reference.as_str().into(),
            p_low: pct.then_some(t.low),
            p_high: pct.then_some(t.high),
            low_value,
            high_value,
            mean: h.mean().unwrap_or(0.0),
            std: h.std().unwrap_or(0.0),
            min: h.min().map_or(0, i32::from),
            max: h.max().map_or(0, i32::from),
            pixel_count: h.total() as i64,
            site_count: ref_sites,
            pipeline_hash: job.sites_ctx.pipeline_hash.clone(),
            run_id: job.sites_ctx.run_id.clone(),
            build_id: build.build_id.clone(),
            channel_name: job.sites_ctx.channel_names.get(c).cloned(),
            illumination: illum.and_then(|i| i.column(c)),
        });
        norms.push(n);
    }
    Ok((stats, norms))
}

/// What a site's decode applies: the decode checks, the transform, the plate's
/// illumination functions, and the DNA channel (for the nuclei estimate).
struct SiteStages<'a> {
    spec: &'a DecodeSpec,
    t: &'a Transform,
    illum: Option<&'a crate::illum::PlateIllum>,
    dna: usize,
}

/// Decode one site's channel files, measure their quality, add them to the histograms and
/// spill them.
fn decode_site(
    site: &ResolvedSite,
    files: &[bytes::Bytes],
    stages: &SiteStages<'_>,
    hist: Option<&Mutex<Vec<Histogram>>>,
    spill: &SpillFile,
) -> Decoded {
    let SiteStages {
        spec,
        t,
        illum,
        dna,
    } = *stages;
    let bad = |reason, object: &str, message: String| {
        Decoded::Failed(SiteError::new(
            ErrorClass::BadInput,
            reason,
            site.key.site_id(),
            Some(object.to_string()),
            message,
        ))
    };
    let mut planes: Vec<Plane> = Vec::with_capacity(files.len());
    for (c, (obj, bytes)) in site.objects.iter().zip(files).enumerate() {
        let decoded = match illum.and_then(|i| i.channels.get(c)) {
            // The function applies to the raw image: decode whole, divide, then downsample
            // and crop.
            Some(f) => decode_transformed(bytes, obj.path.as_ref(), t.format, spec, 1, None)
                .and_then(|mut p| {
                    f.function
                        .apply(&f.expanded, &mut p)
                        .map_err(|e| cellshard_stages::DecodeError::format(e.to_string()))?;
                    Ok(downsample_then_crop(p, t.factor, t.crop))
                }),
            None => decode_transformed(bytes, obj.path.as_ref(), t.format, spec, t.factor, t.crop),
        };
        match decoded {
            Ok(p) => planes.push(p),
            Err(e) => {
                let reason = match e.kind {
                    DecodeErrorKind::Corrupt => RejectReason::Decode,
                    DecodeErrorKind::Format => RejectReason::Format,
                };
                return bad(reason, &obj.display, e.to_string());
            }
        }
    }
    if let Some(first) = planes.first()
        && let Some((i, p)) = planes
            .iter()
            .enumerate()
            .find(|(_, p)| (p.width, p.height) != (first.width, first.height))
    {
        let msg = format!(
            "channel files disagree in size: {} gives {}x{}, {} gives {}x{}",
            site.objects[0].display,
            first.width,
            first.height,
            site.objects[i].display,
            p.width,
            p.height
        );
        return bad(
            RejectReason::InconsistentChannels,
            &site.objects[i].display,
            msg,
        );
    }
    if let Some(hist) = hist {
        let mut local: Vec<Histogram> = planes
            .iter()
            .map(|p| {
                let mut h = Histogram::new();
                h.add(&p.data);
                h
            })
            .collect();
        // A poisoned lock means another job panicked; the run fails on that job already.
        if let Ok(mut shared) = hist.lock() {
            for (s, l) in shared.iter_mut().zip(local.drain(..)) {
                s.merge(&l);
            }
        }
    }
    let (width, height) = planes.first().map_or((0, 0), |p| (p.width, p.height));
    let qc = cellshard_stages::qc::site_qc(&planes, t.bit_depth, dna);
    match spill.append(&planes) {
        Ok(offset) => Decoded::Spilled {
            offset,
            planes: planes.len() as u64,
            width,
            height,
            qc,
        },
        Err(e) => Decoded::SpillFailed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scratch_disk_names_the_directory_and_the_bytes_needed() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let full = SpillFile::from_file(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        );
        let plane = Plane::new(4, 4, vec![7u16; 16]);
        let e = full.append(&[plane]).unwrap_err();
        let plate = PlateKey {
            experiment: "HUVEC-01".into(),
            plate: 3,
        };
        let msg = scratch_error(std::path::Path::new("/scratch"), &plate, 1234, e).to_string();
        assert!(
            msg.contains("/scratch is full")
                && msg.contains("HUVEC-01/3")
                && msg.contains("1234 bytes"),
            "{msg}"
        );
    }
}
