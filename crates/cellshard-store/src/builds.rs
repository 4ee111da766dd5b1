//! What the logs say about plate builds: which builds each plate has in a table, whether
//! a plate's live build has its statistics, and the fingerprint its publish recorded. Only
//! the Delta logs are read (partition values and file statistics), never a data file.

use std::collections::{BTreeMap, BTreeSet};

use deltalake::DeltaTable;

use crate::commit::FileView;
use crate::{Error, Location, Result};

/// The application id under which a plate's fingerprint is recorded in `sites`.
pub fn fingerprint_app_id(experiment: &str, plate: i32) -> String {
    format!("cellshard/plate/{experiment}/{plate}")
}

/// The fingerprint recorded with the plate's published build in the `sites` table, if
/// any: read from the log, no data file.
pub async fn committed_fingerprint(
    sites: &DeltaTable,
    experiment: &str,
    plate: i32,
) -> Result<Option<i64>> {
    let err = |e: deltalake::DeltaTableError| Error::Delta {
        table: sites.table_url().to_string(),
        source: Box::new(e),
    };
    sites
        .snapshot()
        .map_err(err)?
        .transaction_version(
            sites.log_store().as_ref(),
            fingerprint_app_id(experiment, plate),
        )
        .await
        .map_err(err)
}

/// Call `f` with a view of each file of `table` at `loc`: its partition values and
/// statistics (no data read).
pub(crate) fn each_file(
    table: &DeltaTable,
    loc: &Location,
    mut f: impl FnMut(&FileView),
) -> Result<()> {
    let snapshot = table.snapshot().map_err(|e| Error::Delta {
        table: loc.url.to_string(),
        source: Box::new(e),
    })?;
    for file in snapshot.log_data().iter() {
        let parts = file.partition_values_map();
        let stats: Option<serde_json::Value> =
            file.stats().and_then(|s| serde_json::from_str(&s).ok());
        f(&FileView {
            partitions: &parts,
            stats: stats.as_ref(),
        });
    }
    Ok(())
}

/// The build ids of the files of `table` at `loc`, by plate `(experiment, plate)`.
fn builds_by_plate(
    table: &DeltaTable,
    loc: &Location,
) -> Result<BTreeMap<(String, i32), BTreeSet<String>>> {
    let mut out: BTreeMap<(String, i32), BTreeSet<String>> = BTreeMap::new();
    each_file(table, loc, |f| {
        let experiment = match f.partitions.get("experiment") {
            Some(v) => v.clone(),
            None => f
                .single("experiment")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
        };
        let plate = f
            .single("plate")
            .and_then(serde_json::Value::as_i64)
            .and_then(|p| i32::try_from(p).ok());
        let build = f.single("build_id").and_then(serde_json::Value::as_str);
        if let (Some(e), Some(p), Some(b)) = (experiment, plate, build) {
            out.entry((e, p)).or_default().insert(b.to_string());
        }
    })?;
    Ok(out)
}

/// The build ids of the files of `experiment`/`plate` in `table` at `loc`.
pub(crate) fn plate_builds(
    table: &DeltaTable,
    loc: &Location,
    experiment: &str,
    plate: i32,
) -> Result<BTreeSet<String>> {
    Ok(builds_by_plate(table, loc)?
        .remove(&(experiment.to_string(), plate))
        .unwrap_or_default())
}

/// Whether every live build of `experiment`/`plate` in the `sites` table has its rows in
/// the `plate_stats` table of the store at `root` (from the logs alone).
pub fn plate_is_whole(
    sites: &DeltaTable,
    plate_stats: &DeltaTable,
    root: &Location,
    experiment: &str,
    plate: i32,
) -> Result<bool> {
    let live = plate_builds(sites, &root.child("sites"), experiment, plate)?;
    let stats = plate_builds(plate_stats, &root.child("plate_stats"), experiment, plate)?;
    Ok(live.is_subset(&stats))
}

/// A published plate that is not whole: live builds in `sites` without their statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompletePlate {
    /// Experiment.
    pub experiment: String,
    /// Plate.
    pub plate: i32,
    /// The live builds that have no `plate_stats` rows.
    pub builds: Vec<String>,
}

/// Every published plate of the store at `root` whose live build lacks its statistics
/// (from the logs alone), in plate order.
pub fn incomplete_plates(
    sites: &DeltaTable,
    plate_stats: Option<&DeltaTable>,
    root: &Location,
) -> Result<Vec<IncompletePlate>> {
    let stats = match plate_stats {
        Some(t) => builds_by_plate(t, &root.child("plate_stats"))?,
        None => BTreeMap::new(),
    };
    let empty = BTreeSet::new();
    Ok(builds_by_plate(sites, &root.child("sites"))?
        .into_iter()
        .filter_map(|((experiment, plate), live)| {
            let have = stats.get(&(experiment.clone(), plate)).unwrap_or(&empty);
            let builds: Vec<String> = live.difference(have).cloned().collect();
            (!builds.is_empty()).then_some(IncompletePlate {
                experiment,
                plate,
                builds,
            })
        })
        .collect())
}

/// The plates the `sites` table at `loc` holds, as `(experiment, plate)`, from the files'
/// partition values and statistics (no data read).
pub fn published_plates(sites: &DeltaTable, loc: &Location) -> Result<BTreeSet<(String, i32)>> {
    Ok(builds_by_plate(sites, loc)?.into_keys().collect())
}
