//! Discovery: resolve a run's locations, read its metadata, list the source prefix, match
//! every key against the layout, group channel files into sites and sites into plates,
//! and join the metadata.
//!
//! Every listed object ends in exactly one bucket: *ignored* (the key does not follow the
//! layout; counted by reason), *rejected* (a reject row says why), or handed on as part of
//! a complete site. The listing keeps one small entry per matched object (key, size, ETag)
//! for the plates this worker owns; other workers' plates are only counted.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use cellshard_core::layout::KeyMatch;
use cellshard_core::{
    LayoutTemplate, MetadataTable, PlateKey, RejectReason, SiteKey, SiteMetadata,
};
use cellshard_store::Location;
use cellshard_store::io::read_object;
use cellshard_store::schema::RejectRow;
use futures::StreamExt;
use object_store::path::Path;

use crate::options::RunOptions;
// The selection types, at the path callers outside the crate name them by.
pub use crate::select::{PlateSelection, WorkerShare};
use crate::{Error, Result};

/// One source object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Full path in the store.
    pub path: Path,
    /// Readable name (URL or local path) for messages and lineage.
    pub display: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag, where the store has one.
    pub etag: Option<String>,
}

/// The objects found for one site, by channel.
#[derive(Debug, Clone, Default)]
pub struct SiteInputs {
    /// Dataset from the key, when the layout has one.
    pub dataset: Option<String>,
    /// Objects by channel number (several per channel = duplicates).
    pub channels: BTreeMap<u32, Vec<ObjectRef>>,
}

/// What listing found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sites by plate, for the plates this worker owns.
    pub plates: BTreeMap<PlateKey, BTreeMap<SiteKey, SiteInputs>>,
    /// Objects listed (all of them, every worker's).
    pub objects: u64,
    /// Ignored objects by reason.
    pub ignored: BTreeMap<String, u64>,
    /// Objects rejected before grouping (unusable key values), tied to no plate.
    pub rejects: Vec<RejectRow>,
    /// Objects belonging to other workers' plates.
    pub other_workers: u64,
    /// Objects of plates the run's selection leaves out.
    pub unselected: u64,
    /// Every plate the source holds, whoever builds it (for finding vanished plates).
    pub all_plates: std::collections::BTreeSet<PlateKey>,
}

/// A complete site ready for the transform.
#[derive(Debug, Clone)]
pub struct ResolvedSite {
    /// Key.
    pub key: SiteKey,
    /// Metadata row.
    pub meta: SiteMetadata,
    /// Dataset (metadata's, else the key's).
    pub dataset: Option<String>,
    /// One object per channel, in channel order.
    pub objects: Vec<ObjectRef>,
}

/// What discovery found: where, the metadata, and the listing of this worker's plates.
pub(crate) struct Discovered {
    pub(crate) source: Location,
    pub(crate) sink: Location,
    pub(crate) metadata: MetadataTable,
    pub(crate) listing: Listing,
    pub(crate) list_seconds: f64,
}

/// Resolve the run's locations, read its metadata and list its source.
pub(crate) async fn discover(opts: &RunOptions) -> Result<Discovered> {
    let p = &opts.pipeline;
    let layout = p.layout()?;
    let source_url = opts.source.clone().unwrap_or_else(|| p.source.url.clone());
    let sink_url = opts.sink.clone().unwrap_or_else(|| p.sink.url.clone());
    let metadata_urls = if opts.metadata.is_empty() {
        p.metadata.urls.clone()
    } else {
        opts.metadata.clone()
    };
    let source = Location::parse(&source_url, &p.source.options)?;
    source.require_local_dir()?;
    let sink = Location::parse(&sink_url, &p.sink.options)?;
    let mut metadata = MetadataTable::new();
    for url in &metadata_urls {
        let bytes = read_object(url, &p.source.options).await?;
        crate::metadata::add_metadata_file(&mut metadata, url, &bytes)?;
    }
    metadata.finish();
    let t_list = Instant::now();
    let names = ChannelNames {
        names: p.source.channels.names(),
        by_file: p.source.channels.named() && metadata.names_channel_files(),
        metadata: &metadata,
    };
    let listing = list_source(&source, &layout, &names, opts.worker, &opts.selection).await?;
    Ok(Discovered {
        source,
        sink,
        metadata,
        listing,
        list_seconds: t_list.elapsed().as_secs_f64(),
    })
}

/// How a matched key's channel is found: its `{channel}` number, or (`by_file`) the
/// channel a `load_data.csv` names for the file, by its position in `names`.
pub struct ChannelNames<'a> {
    /// The pipeline's channel names, in stacking order.
    pub names: Vec<String>,
    /// Whether `metadata` names each file's channel.
    pub by_file: bool,
    /// The run's metadata.
    pub metadata: &'a cellshard_core::MetadataTable,
}

impl ChannelNames<'_> {
    /// The 1-based channel of `key` on `experiment`, or why the key is ignored.
    fn channel(&self, experiment: &str, key: &str, number: u32) -> Result<u32, String> {
        if !self.by_file {
            return Ok(number);
        }
        let file = key.rsplit('/').next().unwrap_or(key);
        let Some(name) = self.metadata.channel_of_file(experiment, file) else {
            return Err("file not named in load_data.csv".into());
        };
        match self.names.iter().position(|n| n == name) {
            Some(i) => Ok(u32::try_from(i + 1).unwrap_or(u32::MAX)),
            None => Err(format!(
                "channel {name} is not one of the pipeline's channels"
            )),
        }
    }
}

/// List `source` and group what matches `layout`; keep the selected plates of this
/// worker's share.
pub async fn list_source(
    source: &Location,
    layout: &LayoutTemplate,
    names: &ChannelNames<'_>,
    share: WorkerShare,
    selection: &PlateSelection,
) -> Result<Listing> {
    let mut listing = Listing::default();
    let mut groups: BTreeMap<PlateKey, BTreeMap<SiteKey, SiteInputs>> = BTreeMap::new();
    let mut stream = match source.url.to_file_path() {
        // Local trees are walked directly: object_store's local lister stops at the first
        // file name it cannot represent, which would hide every object after it.
        Ok(root) if source.url.scheme() == "file" => {
            let entries = tokio::task::spawn_blocking(move || walk_local(&root))
                .await
                .map_err(|e| Error::Internal(format!("listing task failed: {e}")))?;
            futures::stream::iter(entries).boxed()
        }
        _ => {
            let prefix = if source.prefix.as_ref().is_empty() {
                None
            } else {
                Some(&source.prefix)
            };
            source
                .store
                .list(prefix)
                .map(|r| r.map_err(ListError::Store))
                .boxed()
        }
    };
    while let Some(item) = stream.next().await {
        let meta = match item {
            Ok(meta) => meta,
            // One unusable entry (a file name that is not UTF-8, say) is that entry's
            // problem, not the run's: count it and reject it by name.
            Err(ListError::Unnamable(name)) => {
                listing.objects += 1;
                listing.rejects.push(RejectRow {
                    site_id: None,
                    experiment: None,
                    plate: None,
                    object_path: Some(name.clone()),
                    reason: RejectReason::InvalidKey,
                    message: format!(
                        "{name}: the file name is not valid UTF-8 and cannot be an object key"
                    ),
                });
                continue;
            }
            Err(ListError::Store(e)) => {
                return Err(Error::Source {
                    url: source.url.to_string(),
                    source: e,
                });
            }
        };
        listing.objects += 1;
        let display = source.display(&meta.location);
        let Some(key) = source.relative(&meta.location) else {
            *listing
                .ignored
                .entry("outside the source prefix".into())
                .or_default() += 1;
            continue;
        };
        match layout.match_key(key) {
            KeyMatch::Ignored => {
                *listing
                    .ignored
                    .entry("key does not match the layout".into())
                    .or_default() += 1;
            }
            KeyMatch::Invalid(why) => listing.rejects.push(RejectRow {
                site_id: None,
                experiment: None,
                plate: None,
                object_path: Some(display),
                reason: RejectReason::InvalidKey,
                message: format!("{key}: {why}"),
            }),
            KeyMatch::Matched(mut f) => {
                match names.channel(&f.experiment, key, f.channel) {
                    Ok(c) => f.channel = c,
                    Err(why) => {
                        *listing.ignored.entry(why).or_default() += 1;
                        continue;
                    }
                }
                let site = SiteKey {
                    experiment: f.experiment,
                    plate: f.plate,
                    well: f.well,
                    site: f.site,
                };
                let entry = groups
                    .entry(site.plate_key())
                    .or_default()
                    .entry(site)
                    .or_default();
                if entry.dataset.is_none() {
                    entry.dataset = f.dataset;
                }
                entry
                    .channels
                    .entry(f.channel)
                    .or_default()
                    .push(ObjectRef {
                        path: meta.location.clone(),
                        display,
                        size: meta.size,
                        etag: meta.e_tag.clone(),
                    });
            }
        }
    }
    let unknown = selection.unknown(groups.keys());
    if !unknown.is_empty() {
        return Err(Error::Selection(format!(
            "{} not found under {}",
            unknown.join(", "),
            source.url
        )));
    }
    listing.all_plates = groups.keys().cloned().collect();
    let (mut selected, unselected): (BTreeMap<_, _>, BTreeMap<_, _>) =
        groups.into_iter().partition(|(p, _)| selection.takes(p));
    listing.unselected = unselected.values().map(object_count).sum();
    if let Some(i) = selection.index {
        let Some(key) = selected.keys().nth(i).cloned() else {
            return Err(Error::Selection(format!(
                "plate index {i} is out of range: {} has {} selected plates (0..{})",
                source.url,
                selected.len(),
                selected.len()
            )));
        };
        let one = selected.remove_entry(&key).into_iter().collect();
        listing.unselected += selected.values().map(object_count).sum::<u64>();
        selected = one;
    }
    for (i, (plate, sites)) in selected.into_iter().enumerate() {
        let i = u32::try_from(i).map_err(|_| {
            Error::Selection(format!("{} has more than 2^32 selected plates", source.url))
        })?;
        if i % share.count == share.index {
            listing.plates.insert(plate, sites);
        } else {
            listing.other_workers += sites
                .values()
                .flat_map(|s| s.channels.values())
                .map(|v| v.len() as u64)
                .sum::<u64>();
        }
    }
    Ok(listing)
}

enum ListError {
    /// An entry whose name cannot be an object key (shown lossily).
    Unnamable(String),
    /// The store failed.
    Store(object_store::Error),
}

/// Every file below `root`, as object metadata with keys relative to the filesystem root
/// (like `LocalFileSystem`), names that are not UTF-8 reported instead of aborting.
fn walk_local(root: &std::path::Path) -> Vec<Result<object_store::ObjectMeta, ListError>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            out.push(Err(ListError::Store(object_store::Error::NotFound {
                path: dir.display().to_string(),
                source: "cannot read the directory".into(),
            })));
            continue;
        };
        let mut entries: Vec<_> = read.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            if md.is_dir() {
                dirs.push(path);
                continue;
            }
            let Some(text) = path.to_str() else {
                out.push(Err(ListError::Unnamable(path.display().to_string())));
                continue;
            };
            match Path::parse(text.trim_start_matches('/')) {
                Ok(location) => out.push(Ok(object_store::ObjectMeta {
                    location,
                    last_modified: chrono::DateTime::from_timestamp(
                        md.mtime(),
                        // A negative count maps to u32::MAX, which from_timestamp rejects.
                        u32::try_from(md.mtime_nsec()).unwrap_or(u32::MAX),
                    )
                    .unwrap_or_default(),
                    size: md.len(),
                    e_tag: Some(format!(
                        "{:x}-{:x}-{:x}",
                        md.ino(),
                        md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                        md.len()
                    )),
                    version: None,
                })),
                Err(_) => out.push(Err(ListError::Unnamable(path.display().to_string()))),
            }
        }
    }
    out
}

/// Count of objects in a set of sites.
pub fn object_count(sites: &BTreeMap<SiteKey, SiteInputs>) -> u64 {
    sites
        .values()
        .flat_map(|s| s.channels.values())
        .map(|v| v.len() as u64)
        .sum()
}

/// Metadata rows by plate, as (well, site) keys; `None` site = a well-level row.
pub fn metadata_by_plate(
    metadata: &MetadataTable,
) -> HashMap<PlateKey, Vec<(String, Option<u32>)>> {
    let mut out: HashMap<PlateKey, Vec<(String, Option<u32>)>> = HashMap::new();
    for row in metadata.rows() {
        out.entry(PlateKey {
            experiment: row.experiment.clone(),
            plate: row.plate,
        })
        .or_default()
        .push((row.well.clone(), row.site));
    }
    out
}

/// Metadata rows of a plate that no discovered image belongs to.
pub fn rows_without_images(
    rows: &[(String, Option<u32>)],
    sites: &BTreeMap<SiteKey, SiteInputs>,
) -> u64 {
    let seen = |well: &str, site: Option<u32>| {
        sites
            .keys()
            .any(|k| k.well == well && site.is_none_or(|s| s == k.site))
    };
    rows.iter().filter(|(w, s)| !seen(w, *s)).count() as u64
}
