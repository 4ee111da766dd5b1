//! Keeping a store: removing files no live version needs (vacuum), reading what each
//! commit did (history) and going back to an earlier state (restore), through delta-rs'
//! own operations on every table.

use std::time::Duration;

use deltalake::DeltaTable;
use deltalake::operations::vacuum::VacuumMode;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::builds::{IncompletePlate, incomplete_plates};
use crate::table::{TABLES, open_table};
use crate::{Error, Location, Result};

/// What checking a store found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCheck {
    /// Plates published in `sites`.
    pub plates: usize,
    /// Those whose live build lacks its statistics.
    pub incomplete: Vec<IncompletePlate>,
}

/// Check the store at `root` from its logs (no data file read): every published plate's
/// live build has its `plate_stats` rows. A store with no `sites` table is not found.
pub async fn check_store(root: &Location) -> Result<StoreCheck> {
    let sites_loc = root.child("sites");
    let Some(sites) = open_table(&sites_loc, None).await? else {
        return Err(Error::Missing {
            url: root.url.to_string(),
            message: "no cellshard store here (no sites table)".into(),
        });
    };
    let plates = crate::builds::published_plates(&sites, &sites_loc)?.len();
    let stats_loc = root.child("plate_stats");
    let stats = open_table(&stats_loc, None).await?;
    let incomplete = incomplete_plates(&sites, stats.as_ref(), root)?;
    Ok(StoreCheck { plates, incomplete })
}

/// What vacuum did (or, dry, would do) to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VacuumReport {
    /// Table name.
    pub table: String,
    /// Files removed (or that would be).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Vacuum every table under `root`: remove data files that commits replaced more than
/// `retention` ago, and with `full` also files no commit ever added (the uploads of killed
/// runs) older than `retention`. A file that any version within `retention` references is
/// never removed. With `dry_run`, only count.
///
/// A retention under a table's `delta.deletedFileRetentionDuration` (7 days unless the
/// table sets it, as in Delta) is refused unless `force`: readers at older versions and
/// feeds pinned to them may still need those files.
pub async fn vacuum(
    root: &Location,
    retention: Duration,
    full: bool,
    dry_run: bool,
    force: bool,
) -> Result<Vec<VacuumReport>> {
    use deltalake::table::config::TablePropertiesExt;
    if !force {
        for name in TABLES {
            let loc = root.child(name);
            let Some(table) = open_table(&loc, None).await? else {
                continue;
            };
            let floor = table
                .snapshot()
                .map_err(delta(&loc))?
                .snapshot()
                .table_properties()
                .deleted_file_retention_duration();
            if retention < floor {
                return Err(Error::Location {
                    url: loc.url.to_string(),
                    message: format!(
                        "a retention of {}s is under the table's delta.deletedFileRetentionDuration of {}s: files that readers at older versions (and pinned feeds) need would go; give --force to vacuum anyway",
                        retention.as_secs(),
                        floor.as_secs()
                    ),
                });
            }
        }
    }
    let retention = chrono::Duration::from_std(retention).map_err(|e| Error::Location {
        url: root.url.to_string(),
        message: format!("retention out of range: {e}"),
    })?;
    let mut out = Vec::new();
    for name in TABLES {
        let loc = root.child(name);
        let Some(table) = open_table(&loc, None).await? else {
            continue;
        };
        let mode = || {
            if full {
                VacuumMode::Full
            } else {
                VacuumMode::Lite
            }
        };
        let run = |dry: bool, table: DeltaTable| {
            table
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .with_mode(mode())
                .with_dry_run(dry)
        };
        // Sizes are read before anything is removed.
        let (table, planned) = run(true, table).await.map_err(delta(&loc))?;
        let mut bytes = 0;
        for f in &planned.files_deleted {
            if let Ok(meta) = loc.store.head(&loc.path(f)).await {
                bytes += meta.size;
            }
        }
        let files = if dry_run {
            planned.files_deleted.len()
        } else {
            run(false, table)
                .await
                .map_err(delta(&loc))?
                .1
                .files_deleted
                .len()
        };
        out.push(VacuumReport {
            table: name.to_string(),
            files: files as u64,
            bytes,
        });
    }
    Ok(out)
}

/// One commit of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    /// Table version the commit made.
    pub version: i64,
    /// Commit time, milliseconds since the epoch.
    pub timestamp: Option<i64>,
    /// Delta operation (`CREATE TABLE`, `WRITE`, `VACUUM END`, `RESTORE`, ...).
    pub operation: String,
    /// The scope it replaced, for cellshard's plate commits (`experiment = ... AND plate = ...`).
    pub predicate: Option<String>,
    /// The plate build it published, for `sites` commits.
    pub build_id: Option<String>,
    /// The run that made it, where recorded.
    pub run_id: Option<String>,
}

/// The commits of `table` under `root`, newest first (at most `limit`).
pub async fn history(
    root: &Location,
    table: &str,
    limit: Option<usize>,
) -> Result<Vec<HistoryRow>> {
    let loc = root.child(table);
    let Some(t) = open_table(&loc, None).await? else {
        return Err(Error::Location {
            url: loc.url.to_string(),
            message: "no such table in the store".into(),
        });
    };
    let latest = t.version().unwrap_or(0) as i64;
    let infos: Vec<_> = t.history(limit).try_collect().await.map_err(delta(&loc))?;
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    Ok(infos
        .into_iter()
        .enumerate()
        .map(|(i, c)| HistoryRow {
            version: latest - i as i64,
            timestamp: c.timestamp,
            operation: c.operation.clone().unwrap_or_default(),
            predicate: c
                .operation_parameters
                .as_ref()
                .and_then(|p| text(p.get("predicate"))),
            build_id: text(c.info.get("cellshard.build_id")),
            run_id: text(c.info.get("cellshard.run_id")),
        })
        .collect())
}

/// What restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// `(table, version restored to, files removed, files restored)`.
    pub tables: Vec<(String, i64, usize, usize)>,
}

/// Restore the store to `sites` version `version`: `sites` to that version, and
/// `plate_stats` and `rejects` to their state at that commit's time (they are published
/// before `sites`, so every restored build finds its statistics). `runs` keeps its history.
pub async fn restore(root: &Location, version: i64) -> Result<RestoreReport> {
    let sites_loc = root.child("sites");
    let sites = open_table(&sites_loc, Some(version))
        .await?
        .ok_or_else(|| Error::Location {
            url: sites_loc.url.to_string(),
            message: "the store has no sites table".into(),
        })?;
    let at = history(root, "sites", None)
        .await?
        .into_iter()
        .find(|h| h.version == version)
        .and_then(|h| h.timestamp)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .ok_or_else(|| Error::Location {
            url: sites_loc.url.to_string(),
            message: format!("version {version} has no commit time"),
        })?;
    drop(sites);
    let mut tables = Vec::new();
    for name in ["plate_stats", "rejects", "sites"] {
        let loc = root.child(name);
        let Some(mut t) = open_table(&loc, None).await? else {
            continue;
        };
        let latest = t.version().unwrap_or(0) as i64;
        let target = if name == "sites" {
            version
        } else {
            t.load_with_datetime(at).await.map_err(delta(&loc))?;
            let v = t.version().unwrap_or(0) as i64;
            t.load().await.map_err(delta(&loc))?;
            v
        };
        if target == latest {
            tables.push((name.to_string(), latest, 0, 0));
            continue;
        }
        let target_version = u64::try_from(target).map_err(|_| Error::Location {
            url: loc.url.to_string(),
            message: format!("version {target}: table versions are 0 or more"),
        })?;
        let (t, m) = t
            .restore()
            .with_version_to_restore(target_version)
            .await
            .map_err(delta(&loc))?;
        tables.push((
            name.to_string(),
            t.version().unwrap_or(0) as i64,
            m.num_removed_file,
            m.num_restored_file,
        ));
    }
    Ok(RestoreReport { tables })
}

fn delta(loc: &Location) -> impl Fn(deltalake::DeltaTableError) -> Error + '_ {
    move |e| Error::Delta {
        table: loc.url.to_string(),
        source: Box::new(e),
    }
}
