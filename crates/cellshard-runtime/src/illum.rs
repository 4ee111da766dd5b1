//! Illumination correction in a run: a plate's function per channel, computed from every
//! image of the plate in a pass before phase 1 (`source = "compute"`), or read from the
//! dataset's `.npy` files (`source = "files"`). Phase 1 divides each raw image by it before
//! downsampling.
//!
//! Memory: the compute pass holds one u64 sum per pixel and channel (8 bytes; 47 MB for five
//! 1080x1080 channels), and phase 1 one expanded f32 function per pixel and channel (4
//! bytes), besides the images in flight.

use std::sync::{Arc, Mutex};

use cellshard_core::PlateKey;
use cellshard_core::pipeline::IllumSource;
use cellshard_stages::DecodeSpec;
use cellshard_stages::illum::{IllumFunction, IllumParams, IllumSum, read_npy};
use cellshard_stages::image::decode_transformed;
use cellshard_store::schema::IllumColumn;
use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::discover::ResolvedSite;
use crate::fetch::{fetch_site, reserve};
use crate::plate::PlateJob;

/// One channel's function, expanded to the image.
pub(crate) struct ChannelIllum {
    pub(crate) function: IllumFunction,
    pub(crate) expanded: Vec<f32>,
    source: String,
}

/// A plate's functions, in channel order.
pub(crate) struct PlateIllum {
    pub(crate) channels: Vec<ChannelIllum>,
}

impl PlateIllum {
    /// Channel `c`'s function as `plate_stats` stores it.
    pub(crate) fn column(&self, c: usize) -> Option<IllumColumn> {
        let ch = self.channels.get(c)?;
        let f = &ch.function;
        let dim = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        Some(IllumColumn {
            grid: f.grid_le_bytes(),
            shape: [
                dim(f.image_height),
                dim(f.image_width),
                dim(f.grid_height),
                dim(f.grid_width),
            ],
            source: ch.source.clone(),
        })
    }
}

/// The key of channel `channel` (1-based, named `name`)'s function file for `plate`.
pub fn file_key(template: &str, plate: &PlateKey, channel: u32, name: &str) -> String {
    template
        .replace("{experiment}", &plate.experiment)
        .replace("{plate}", &plate.plate.to_string())
        .replace("{channel_name}", name)
        .replace("{channel}", &channel.to_string())
}

/// The function files of `plate` with their size and ETag (`None` where missing), for
/// the plate's fingerprint; none unless the pipeline reads functions from files.
pub async fn plate_files(
    source: &cellshard_store::Location,
    p: &cellshard_core::Pipeline,
    plate: &PlateKey,
) -> Vec<crate::fingerprint::IllumFile> {
    let Some(template) = p.illumination_files() else {
        return Vec::new();
    };
    let names = p.source.channels.names();
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let key = file_key(template, plate, u32::try_from(i + 1).unwrap_or(0), name);
        let meta = source.store.head(&source.path(&key)).await.ok();
        out.push((key, meta.map(|m| (m.size, m.e_tag))));
    }
    out
}

/// The functions of `plate`, or why there are none (the plate's sites are then rejected).
pub(crate) async fn plate_functions(
    job: &PlateJob<'_>,
    plate: &PlateKey,
    sites: &[ResolvedSite],
) -> Result<Option<PlateIllum>, String> {
    let Some(illum) = job.transform.illumination else {
        return Ok(None);
    };
    let names = &job.sites_ctx.channel_names;
    let channels = match illum.source {
        IllumSource::Files => {
            let template = job.illum_files.unwrap_or_default();
            let mut out = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let key = file_key(template, plate, u32::try_from(i + 1).unwrap_or(0), name);
                let shown = job.source.display(&job.source.path(&key));
                let bytes = match job.source.store.get(&job.source.path(&key)).await {
                    Ok(r) => r.bytes().await.map_err(|e| format!("{shown}: {e}"))?,
                    Err(e) => return Err(format!("{shown}: {e}")),
                };
                let (h, w, values) = read_npy(&bytes).map_err(|e| format!("{shown}: {e}"))?;
                let (Some(iw), Some(ih)) = (job.transform.width, job.transform.height) else {
                    return Err("illumination needs decode.width and decode.height".into());
                };
                if (w, h) != (iw, ih) {
                    return Err(format!(
                        "{shown}: the function is {w}x{h}, the images are {iw}x{ih}"
                    ));
                }
                let function =
                    IllumFunction::from_full(w, h, values).map_err(|e| format!("{shown}: {e}"))?;
                out.push((function, shown));
            }
            out
        }
        IllumSource::Compute => {
            let params = IllumParams {
                block: illum.block,
                filter_fraction: illum.filter_fraction,
                robust_min_percentile: illum.robust_min_percentile,
            };
            let sums = compute_sums(job, sites).await?;
            let mut out = Vec::with_capacity(sums.len());
            for (c, sum) in sums.iter().enumerate() {
                let function = IllumFunction::compute(sum, params).map_err(|e| {
                    format!("channel {}: {e}", names.get(c).map_or("?", String::as_str))
                })?;
                out.push((function, "compute".to_string()));
            }
            out
        }
    };
    Ok(Some(PlateIllum {
        channels: channels
            .into_iter()
            .map(|(function, source)| ChannelIllum {
                expanded: function.expand(),
                function,
                source,
            })
            .collect(),
    }))
}

/// Per-channel sums of every decodable image of the plate at full resolution. Sites that
/// fail to read or decode are left out here; phase 1 rejects them with their reason.
async fn compute_sums(job: &PlateJob<'_>, sites: &[ResolvedSite]) -> Result<Vec<IllumSum>, String> {
    let t = job.transform;
    let (Some(w), Some(h)) = (t.width, t.height) else {
        return Err("illumination needs decode.width and decode.height".into());
    };
    let spec = DecodeSpec {
        bit_depth: t.bit_depth,
        width: t.width,
        height: t.height,
        max_pixels: t.max_pixels,
    };
    let channels = usize::try_from(job.channels).unwrap_or(0);
    let sums = Arc::new(Mutex::new(
        (0..channels)
            .map(|_| IllumSum::new(w, h))
            .collect::<Vec<_>>(),
    ));
    let mut stream = futures::stream::iter(sites)
        .map(|site| {
            let sums = sums.clone();
            async move {
                let _reservation = reserve(job, site).await;
                let Ok(files) = fetch_site(job, site).await else {
                    return Ok(());
                };
                let names: Vec<String> = site.objects.iter().map(|o| o.path.to_string()).collect();
                job.pool
                    .run(
                        || format!("illumination of site {}", site.key.site_id()),
                        move || {
                            let mut planes = Vec::with_capacity(files.len());
                            for (bytes, name) in files.iter().zip(&names) {
                                match decode_transformed(bytes, name, t.format, &spec, 1, None) {
                                    Ok(p) if (p.width, p.height) == (w, h) => planes.push(p),
                                    _ => return,
                                }
                            }
                            if let Ok(mut s) = sums.lock() {
                                for (sum, p) in s.iter_mut().zip(&planes) {
                                    // Sizes were checked above.
                                    let _ = sum.add(p);
                                }
                            }
                        },
                    )
                    .await
            }
        })
        .buffered(job.inflight.max(1));
    while let Some(r) = stream.next().await {
        r.map_err(|e| e.to_string())?;
    }
    drop(stream);
    let sums = Arc::try_unwrap(sums)
        .map_err(|_| "illumination sums still shared".to_string())?
        .into_inner()
        .map_err(|_| "illumination sums lock poisoned".to_string())?;
    if sums.first().is_none_or(|s| s.images == 0) {
        return Err("no image of the plate could be decoded".into());
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_fill_every_placeholder() {
        let plate = PlateKey {
            experiment: "BR00117035".into(),
            plate: 1,
        };
        assert_eq!(
            file_key(
                "illum/{experiment}/{experiment}_Illum{channel_name}.npy",
                &plate,
                5,
                "DNA"
            ),
            "illum/BR00117035/BR00117035_IllumDNA.npy"
        );
        assert_eq!(
            file_key("p{plate}/c{channel}.npy", &plate, 2, "ER"),
            "p1/c2.npy"
        );
    }
}
