//! Writing and publishing one plate build.
//!
//! A [`PlateWriter`] names the build and hands out [`ShardWriter`]s, one per shard file of
//! `sites`; each encodes its rows on the caller's thread and streams the upload. The
//! finished files, the plate's statistics and its rejects make a [`PreparedPlate`], which
//! [`StoreTables::publish`] commits in an order that keeps every published state whole:
//!
//! 1. `plate_stats`: the new build's rows are appended (the live build's rows stay);
//! 2. `rejects`: the same;
//! 3. `sites`: one transaction adds the new files and removes every other file of the
//!    plate, so readers switch from the old tensors to the new ones at once;
//! 4. `plate_stats` and `rejects`: rows of the plate's builds that are not live are deleted.
//!
//! Every row of the three tables carries the build id, and the views join on it. A crash
//! after step 1 or 2 leaves rows of a build no `sites` row names (ignored by the views,
//! deleted by the plate's next publish); a crash after step 3 leaves the old build's rows
//! beside the new ones until then. No state pairs tensors with another build's statistics.
//!
//! # Concurrent writers
//!
//! Several runs may publish one plate at once (a Job that starts a second pod for an
//! index, a retry overlapping a slow first attempt, two operators). Each step is one Delta
//! commit, retried on conflict; step 3 of the last writer wins, and its build is the
//! plate's whole set of tensors. The statistics follow the winner by two checks, without a
//! lock (a lease needs an expiry, and a worker killed holding it would stall the plate):
//!
//! - step 4 reads the live builds in `sites` after its own step 3 and deletes only rows of
//!   builds outside them; then it reads `sites` again and adds back the rows it deleted of
//!   any build that went live in between (their files are still in storage: a Delta
//!   remove is logical until vacuum);
//! - after its step 3 (3b), a writer adds back its own rows if a concurrent step 4 deleted
//!   them while it was not yet live.
//!
//! For any deletion of a build's rows by writer X, either the build's step 3 comes before
//! X's second read (X adds them back) or after it, and then after the deletion, so the
//! build's own check (3b) sees them gone and adds them back. A reader may, for the few
//! milliseconds between a deletion and its undo, see a live build without statistics; a
//! writer killed inside that window leaves it so. `cellshard validate --store` reports
//! such a plate and `run --incremental` rebuilds it.

use std::collections::BTreeSet;
use std::sync::Arc;

use deltalake::kernel::Add;

use crate::builds::{committed_fingerprint, plate_builds, plate_is_whole, published_plates};
use crate::commit::{FileView, Replace, commit, small_file};
use crate::schema::{
    self, PlateStatRow, RejectRow, SITES_PARTITIONS, SITES_STATS_COLUMNS, SiteRow, SitesContext,
};
use crate::shard::{FileLayout, PartitionValues, ShardFile};
use crate::table::{PlateScope, ShardSettings, StoreTables, commit_files};
use crate::{Error, Result};

/// One build of one plate: the scope it replaces, the id its rows carry and the
/// fingerprint of what produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlateBuild {
    /// The plate.
    pub scope: PlateScope,
    /// Unique per build: the run id, the experiment and the plate.
    pub build_id: String,
    /// The plate's input fingerprint, recorded with the `sites` commit.
    pub fingerprint: Option<i64>,
}

impl PlateBuild {
    /// The build of `scope` by run `run_id`.
    pub fn new(scope: PlateScope, run_id: &str, fingerprint: Option<i64>) -> Self {
        let build_id = format!("{run_id}-{}-p{}", scope.experiment, scope.plate);
        PlateBuild {
            scope,
            build_id,
            fingerprint,
        }
    }
}

pub use crate::builds::fingerprint_app_id;

/// Writes the `sites` files of one plate build.
#[derive(Debug)]
pub struct PlateWriter {
    layout: Arc<FileLayout>,
    ctx: Arc<SitesContext>,
    build: PlateBuild,
    next_file: usize,
}

impl PlateWriter {
    /// A writer for `build` into the store's `sites` table.
    pub fn new(
        tables: &StoreTables,
        ctx: &SitesContext,
        settings: &ShardSettings,
        build: PlateBuild,
    ) -> Result<Self> {
        let layout = FileLayout {
            table: tables.root.child("sites"),
            schema: ctx.schema(),
            partitions: SITES_PARTITIONS.iter().map(|s| s.to_string()).collect(),
            stats_columns: SITES_STATS_COLUMNS.split(',').map(str::to_string).collect(),
            properties: settings.writer_properties()?,
        };
        Ok(PlateWriter {
            layout: Arc::new(layout),
            ctx: Arc::new(ctx.clone()),
            build,
            next_file: 0,
        })
    }

    /// The build being written.
    pub fn build(&self) -> &PlateBuild {
        &self.build
    }

    /// The next shard file of the plate. Files are numbered in the order they are asked
    /// for, so the same plate and settings give the same files.
    pub async fn shard(&mut self) -> Result<ShardWriter> {
        let values: PartitionValues = vec![
            Some(self.build.scope.cell_type.clone()),
            Some(self.build.scope.experiment.clone()),
        ];
        let name = format!(
            "part-{}-{:05}.zstd.parquet",
            crate::location::path_segment(&self.build.build_id),
            self.next_file
        );
        self.next_file += 1;
        let file = self.layout.file(&values, &name).await?;
        Ok(ShardWriter {
            file,
            values,
            layout: self.layout.clone(),
            ctx: self.ctx.clone(),
            build_id: self.build.build_id.clone(),
        })
    }

    /// The plate, ready to publish: its uploaded files, statistics and rejects.
    pub fn finish(
        self,
        files: Vec<WrittenFile>,
        stats: Vec<PlateStatRow>,
        rejects: Vec<RejectRow>,
    ) -> PreparedPlate {
        PreparedPlate {
            pipeline_hash: self.ctx.pipeline_hash.clone(),
            run_id: self.ctx.run_id.clone(),
            build: self.build,
            adds: files.into_iter().map(|f| f.0).collect(),
            stats,
            rejects,
        }
    }
}

/// One `sites` shard file of a plate build.
#[derive(Debug)]
pub struct ShardWriter {
    file: ShardFile,
    values: PartitionValues,
    layout: Arc<FileLayout>,
    ctx: Arc<SitesContext>,
    build_id: String,
}

impl ShardWriter {
    /// Encode `rows` as one row group on this thread (not an async runtime thread) and
    /// queue the bytes for upload.
    pub fn write(&mut self, rows: &[SiteRow]) -> Result<()> {
        let batch = self.ctx.batch(rows, &self.build_id)?;
        for (values, part) in self.layout.split(&batch)? {
            if values != self.values {
                let words = |v: &PartitionValues| {
                    SITES_PARTITIONS
                        .iter()
                        .zip(v)
                        .map(|(c, v)| format!("{c} {:?}", v.as_deref().unwrap_or("(null)")))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(Error::Write {
                    url: self.file.url().to_string(),
                    message: format!(
                        "a row of {} in the file of {}",
                        words(&values),
                        words(&self.values)
                    ),
                });
            }
            self.file.write(&part)?;
        }
        Ok(())
    }

    /// Wait while the file's upload is behind.
    pub async fn wait_for_capacity(&mut self) -> Result<()> {
        self.file.wait_for_capacity().await
    }

    /// Write the file's footer on this thread.
    pub fn close(&mut self) -> Result<()> {
        self.file.close()
    }

    /// Complete the upload; the file, for [`PlateWriter::finish`].
    pub async fn finish(self) -> Result<WrittenFile> {
        self.file.finish().await.map(WrittenFile)
    }
}

/// A `sites` file uploaded and not yet committed.
#[derive(Debug, Clone)]
pub struct WrittenFile(Add);

impl WrittenFile {
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.0.size.unsigned_abs()
    }
}

/// A plate build whose files are uploaded and whose rows are ready: what
/// [`StoreTables::publish`] commits.
#[derive(Debug, Clone)]
pub struct PreparedPlate {
    /// The build.
    pub build: PlateBuild,
    /// Its `sites` files.
    pub adds: Vec<Add>,
    /// Its `plate_stats` rows.
    pub stats: Vec<PlateStatRow>,
    /// Its `rejects` rows.
    pub rejects: Vec<RejectRow>,
    /// Pipeline hash (on reject rows).
    pub pipeline_hash: String,
    /// Run id (on reject rows).
    pub run_id: String,
}

/// What publishing a plate did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlateCommit {
    /// New version of `sites`.
    pub sites_version: i64,
    /// Files added.
    pub files_added: usize,
    /// Files of an earlier build removed.
    pub files_removed: usize,
    /// Bytes of the added files.
    pub bytes_written: u64,
}

/// Steps of [`StoreTables::publish`] after which a test can stop the process
/// ([`crate::pause`]).
pub const PAUSE_POINTS: [&str; 3] = ["after-stats", "after-rejects", "after-sites"];

impl StoreTables {
    /// The plates `sites` holds, as `(experiment, plate)` (no data read).
    pub fn published_plates(&self) -> Result<BTreeSet<(String, i32)>> {
        published_plates(&self.sites, &self.root.child("sites"))
    }

    /// Remove a plate from the store: its `sites` files (and its recorded fingerprint, so a
    /// plate that comes back is built again), then its statistics and rejects.
    pub async fn prune_plate(&mut self, experiment: &str, plate: i32) -> Result<()> {
        let e = serde_json::Value::from(experiment);
        let p = serde_json::Value::from(plate);
        let predicate = format!(
            "experiment = '{}' AND plate = {plate}",
            experiment.replace('\'', "''")
        );
        let of_plate = |f: &FileView| {
            f.partitions.get("experiment") == Some(&Some(experiment.to_string()))
                && f.single("plate") == Some(&p)
        };
        let sites = Replace {
            adds: Vec::new(),
            remove: Some(&of_plate),
            predicate: Some(predicate.clone()),
            metadata: vec![("cellshard.pruned".into(), predicate.clone().into())],
            // A fingerprint is never negative: the plate no longer counts as built.
            txn: Some((fingerprint_app_id(experiment, plate), -1)),
        };
        let sites_loc = self.root.child("sites");
        commit(&mut self.sites, &sites_loc, sites).await?;
        let rows_of_plate =
            |f: &FileView| f.single("experiment") == Some(&e) && f.single("plate") == Some(&p);
        for name in ["plate_stats", "rejects"] {
            let loc = self.root.child(name);
            let table = if name == "plate_stats" {
                &mut self.plate_stats
            } else {
                &mut self.rejects
            };
            let prune = Replace {
                adds: Vec::new(),
                remove: Some(&rows_of_plate),
                predicate: Some(predicate.clone()),
                metadata: Vec::new(),
                txn: None,
            };
            commit(table, &loc, prune).await?;
        }
        Ok(())
    }

    /// Whether every live build of the plate in `sites` has its statistics: a build whose
    /// statistics were lost (a publish that raced another) leaves the plate not whole, and
    /// an incremental run builds it again.
    pub fn plate_is_whole(&self, experiment: &str, plate: i32) -> Result<bool> {
        plate_is_whole(
            &self.sites,
            &self.plate_stats,
            &self.root,
            experiment,
            plate,
        )
    }

    /// The fingerprint recorded with the plate's published build, if any.
    pub async fn plate_fingerprint(&self, experiment: &str, plate: i32) -> Result<Option<i64>> {
        committed_fingerprint(&self.sites, experiment, plate).await
    }

    /// The plate's live builds in `sites`, read afresh.
    async fn live_builds(&mut self, scope: &PlateScope) -> Result<BTreeSet<String>> {
        let loc = self.root.child("sites");
        self.sites.update_state().await.map_err(|e| Error::Delta {
            table: loc.url.to_string(),
            source: Box::new(e),
        })?;
        plate_builds(&self.sites, &loc, &scope.experiment, scope.plate)
    }

    /// Publish a plate build in the order described in the module docs.
    pub async fn publish(&mut self, plate: PreparedPlate) -> Result<PlateCommit> {
        let PreparedPlate {
            build,
            adds,
            stats,
            rejects,
            pipeline_hash,
            run_id,
        } = plate;
        let scope = &build.scope;
        let stats_loc = self.root.child("plate_stats");
        let rejects_loc = self.root.child("rejects");
        // 1 and 2: the new build's statistics and rejects, beside the live build's.
        let stats_add = small_file(&stats_loc, schema::plate_stats_batch(&stats)?).await?;
        let stats_add: Vec<Add> = stats_add.into_iter().collect();
        commit_files(&mut self.plate_stats, &stats_loc, stats_add.clone()).await?;
        crate::pause::point("after-stats").await;
        let batch =
            schema::rejects_batch(&rejects, &pipeline_hash, &run_id, Some(&build.build_id))?;
        let rejects_add: Vec<Add> = small_file(&rejects_loc, batch).await?.into_iter().collect();
        commit_files(&mut self.rejects, &rejects_loc, rejects_add.clone()).await?;
        crate::pause::point("after-rejects").await;

        // 3: the new tensors replace every other file of the plate at once.
        let mut result = PlateCommit {
            files_added: adds.len(),
            bytes_written: adds.iter().map(|a| a.size.unsigned_abs()).sum(),
            ..Default::default()
        };
        let experiment = serde_json::Value::from(scope.experiment.clone());
        let plate = serde_json::Value::from(scope.plate);
        let build_id = serde_json::Value::from(build.build_id.clone());
        // Never this build's own files: a retry after a commit whose reply was lost must not
        // remove what it adds.
        let of_plate = |f: &FileView| {
            f.partitions.get("experiment") == Some(&Some(scope.experiment.clone()))
                && f.single("plate") == Some(&plate)
                && f.single("build_id") != Some(&build_id)
        };
        let sites = Replace {
            adds,
            remove: Some(&of_plate),
            predicate: Some(scope.predicate()),
            metadata: vec![
                ("cellshard.build_id".into(), build_id.clone()),
                ("cellshard.run_id".into(), run_id.clone().into()),
            ],
            txn: build
                .fingerprint
                .map(|f| (fingerprint_app_id(&scope.experiment, scope.plate), f)),
        };
        let sites_loc = self.root.child("sites");
        let replaced = commit(&mut self.sites, &sites_loc, sites).await?;
        (result.sites_version, result.files_removed) = (replaced.version, replaced.removed.len());
        crate::pause::point("after-sites").await;

        // 3b: a concurrent publish's step 4 may have removed this build's rows while it was
        // not yet live; they are added back.
        for (table, loc, own) in [
            (&mut self.plate_stats, &stats_loc, &stats_add),
            (&mut self.rejects, &rejects_loc, &rejects_add),
        ] {
            crate::commit::restore_missing(table, loc, own).await?;
        }

        // 4: rows of builds that are not live go...
        let live = self.live_builds(scope).await?;
        let not_live = |f: &FileView| {
            f.single("experiment") == Some(&experiment)
                && f.single("plate") == Some(&plate)
                && f.single("build_id")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|b| b != build.build_id && !live.contains(b))
        };
        let kept: Vec<String> = live
            .iter()
            .chain([&build.build_id])
            .map(|b| format!("'{}'", b.replace('\'', "''")))
            .collect();
        let predicate = format!(
            "{} AND build_id NOT IN ({})",
            scope.predicate(),
            kept.join(", ")
        );
        let mut removed = Vec::new();
        for (table, loc) in [
            (&mut self.plate_stats, &stats_loc),
            (&mut self.rejects, &rejects_loc),
        ] {
            let prune = Replace {
                adds: Vec::new(),
                remove: Some(&not_live),
                predicate: Some(predicate.clone()),
                metadata: Vec::new(),
                txn: None,
            };
            removed.push(commit(table, loc, prune).await?.removed);
        }
        // ...and come back if their build went live meanwhile (a concurrent step 3).
        let live = self.live_builds(scope).await?;
        for ((table, loc), files) in [
            (&mut self.plate_stats, &stats_loc),
            (&mut self.rejects, &rejects_loc),
        ]
        .into_iter()
        .zip(removed)
        {
            let back: Vec<Add> = files
                .into_iter()
                .filter(|(b, _)| b.as_ref().is_some_and(|b| live.contains(b)))
                .map(|(_, add)| add)
                .collect();
            if !back.is_empty() {
                commit_files(table, loc, back).await?;
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_name_run_experiment_and_plate() {
        let scope = PlateScope {
            cell_type: "HUVEC".into(),
            experiment: "HUVEC-01".into(),
            plate: 3,
        };
        let b = PlateBuild::new(scope, "20261201T000000Z-w0of1", None);
        assert_eq!(b.build_id, "20261201T000000Z-w0of1-HUVEC-01-p3");
    }
}
