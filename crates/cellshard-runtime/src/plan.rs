//! The plan of a run: which plates it would build, and why, from a listing and the store's
//! log, without reading a pixel.

use cellshard_store::builds::plate_is_whole;
use cellshard_store::table::open_table;
use serde::Serialize;

use crate::Result;
use crate::discover::{discover, object_count};
use crate::fingerprint::plate_fingerprint;
use crate::options::RunOptions;

/// Why a plate is (or is not) built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanAction {
    /// The store has no build of the plate.
    New,
    /// The store's build has another fingerprint.
    Changed,
    /// Built again although unchanged (the run is not incremental).
    Forced,
    /// Skipped: the committed fingerprint is the current one (incremental runs).
    Unchanged,
    /// Built again although unchanged: the live build has no statistics (a publish that
    /// raced another and lost them), so the store does not hold the plate whole.
    Incomplete,
}

/// One plate of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlatePlan {
    /// `EXPERIMENT/PLATE`, as `--plates` takes it.
    pub plate: String,
    /// Experiment.
    pub experiment: String,
    /// Plate number.
    pub number: u32,
    /// Sites listed (complete or not).
    pub sites: u64,
    /// Objects listed.
    pub objects: u64,
    /// Bytes of the objects.
    pub bytes: u64,
    /// The plate's fingerprint (hex).
    pub fingerprint: String,
    /// What a run does with it.
    pub action: PlanAction,
}

/// What a run would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Source URL.
    pub source: String,
    /// Store URL.
    pub sink: String,
    /// Whether the plan is for an incremental run.
    pub incremental: bool,
    /// This worker's plates, in the order a run takes them.
    pub plates: Vec<PlatePlan>,
    /// Plates a run builds.
    pub plates_to_build: u64,
    /// Bytes a run reads.
    pub bytes_to_read: u64,
}

/// The plan of `opts`: each plate of this worker's selected share, with its fingerprint
/// against the one committed in the store. Reads the listing, the metadata and the store's
/// log; writes nothing, and a store that does not exist yet means every plate is new.
pub async fn plan(opts: &RunOptions) -> Result<Plan> {
    plan_with(opts, true).await
}

/// The plan of `opts` from the listing alone, as if the store were empty (every plate
/// `new`): for sizing a cluster job without credentials for the store.
pub async fn plan_listing(opts: &RunOptions) -> Result<Plan> {
    plan_with(opts, false).await
}

async fn plan_with(opts: &RunOptions, read_store: bool) -> Result<Plan> {
    let d = discover(opts).await?;
    let (sites_table, stats_table) = match d.sink.require_local_dir() {
        Ok(()) if read_store => (
            open_table(&d.sink.child("sites"), None).await?,
            open_table(&d.sink.child("plate_stats"), None).await?,
        ),
        _ => (None, None),
    };
    let mut plates = Vec::new();
    for (plate, sites) in &d.listing.plates {
        let illum = crate::illum::plate_files(&d.source, &opts.pipeline, plate).await;
        let fingerprint = plate_fingerprint(&opts.pipeline, plate, sites, &d.metadata, &illum);
        let committed = match &sites_table {
            Some(t) => {
                cellshard_store::builds::committed_fingerprint(
                    t,
                    &plate.experiment,
                    plate.plate as i32,
                )
                .await?
            }
            None => None,
        };
        let whole = || -> Result<bool> {
            let (Some(sites), Some(stats)) = (&sites_table, &stats_table) else {
                return Ok(sites_table.is_none());
            };
            let number = plate.plate as i32;
            Ok(plate_is_whole(
                sites,
                stats,
                &d.sink,
                &plate.experiment,
                number,
            )?)
        };
        let action = match committed {
            None => PlanAction::New,
            Some(c) if c != fingerprint => PlanAction::Changed,
            Some(_) if opts.incremental && !whole()? => PlanAction::Incomplete,
            Some(_) if opts.incremental => PlanAction::Unchanged,
            Some(_) => PlanAction::Forced,
        };
        plates.push(PlatePlan {
            plate: format!("{}/{}", plate.experiment, plate.plate),
            experiment: plate.experiment.clone(),
            number: plate.plate,
            sites: sites.len() as u64,
            objects: object_count(sites),
            bytes: sites
                .values()
                .flat_map(|s| s.channels.values().flatten())
                .map(|o| o.size)
                .sum(),
            fingerprint: format!("{fingerprint:016x}"),
            action,
        });
    }
    let built = plates.iter().filter(|p| p.action != PlanAction::Unchanged);
    Ok(Plan {
        source: d.source.url.to_string(),
        sink: d.sink.url.to_string(),
        incremental: opts.incremental,
        plates_to_build: built.clone().count() as u64,
        bytes_to_read: built.map(|p| p.bytes).sum(),
        plates,
    })
}
