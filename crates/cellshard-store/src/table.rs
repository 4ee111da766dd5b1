//! The Delta tables of a store and the per-plate commit protocol.
//!
//! `sites` is written through streaming [`RecordBatchWriter`]s (files go to the object
//! store as they fill; memory stays at about one row group per writer), then committed
//! together with `Remove` actions for the files of any earlier build of the same plate.
//! A shard file never holds two plates, so such files are found exactly from the
//! partition values and the `plate` min/max statistics that Delta keeps for every file.
//! The small tables (`plate_stats`, `rejects`) are replaced per plate with a
//! `replaceWhere` overwrite; `runs` is append-only.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove, StructType};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::RecordBatchWriter;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};

use crate::schema::{
    self, PlateStatRow, RejectRow, RunRow, SITES_PARTITIONS, SITES_STATS_COLUMNS, TENSOR,
};
use crate::{Error, Location, Result};

/// Table folder names under the store root.
pub const TABLES: [&str; 4] = ["sites", "plate_stats", "rejects", "runs"];

/// The plate a commit replaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlateScope {
    /// Cell type (partition of `sites`).
    pub cell_type: String,
    /// Experiment.
    pub experiment: String,
    /// Plate.
    pub plate: i32,
}

impl PlateScope {
    fn predicate(&self) -> String {
        format!(
            "experiment = '{}' AND plate = {}",
            self.experiment.replace('\'', "''"),
            self.plate
        )
    }
}

/// Parquet settings of the `sites` shards.
#[derive(Debug, Clone, Copy)]
pub struct ShardSettings {
    /// ZSTD level of the tensor column.
    pub zstd_level: i32,
    /// Rows per row group (derived from the byte target and the tensor size).
    pub rows_per_group: usize,
    /// Target file size in bytes.
    pub target_file_size: u64,
}

impl ShardSettings {
    /// Writer properties: tensor column ZSTD at the pipeline's level, no dictionary, no
    /// statistics, one value per page; other columns ZSTD level 3 with statistics.
    pub fn writer_properties(&self) -> Result<WriterProperties> {
        let tensor = ColumnPath::from(TENSOR);
        let level = ZstdLevel::try_new(self.zstd_level).map_err(|e| Error::Location {
            url: "sink.zstd_level".into(),
            message: e.to_string(),
        })?;
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_column_compression(tensor.clone(), Compression::ZSTD(level))
            .set_column_dictionary_enabled(tensor.clone(), false)
            .set_column_statistics_enabled(tensor.clone(), EnabledStatistics::None)
            .set_column_data_page_size_limit(tensor, 1)
            .set_write_batch_size(1)
            .set_max_row_group_row_count(Some(self.rows_per_group.max(1)))
            .set_created_by(format!("cellshard {}", env!("CARGO_PKG_VERSION")))
            .build())
    }
}

fn delta_err(table: &Location) -> impl Fn(DeltaTableError) -> Error + '_ {
    move |e| Error::Delta {
        table: table.url.to_string(),
        source: Box::new(e),
    }
}

/// Delta log stores for the cloud schemes. The default log store commits with
/// put-if-absent (`PutMode::Create`); our S3 stores enable conditional put, GCS and Azure
/// support it natively, so several writers on different machines commit safely without
/// DynamoDB or another lock service.
#[derive(Debug, Default)]
struct ConditionalPutLogStores;

impl deltalake::logstore::LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: deltalake::logstore::ObjectStoreRef,
        root_store: deltalake::logstore::ObjectStoreRef,
        location: &url::Url,
        options: &deltalake::logstore::StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn deltalake::logstore::LogStore>> {
        Ok(deltalake::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_log_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let registry = deltalake::logstore::logstore_factories();
        for scheme in ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"] {
            if let Ok(u) = url::Url::parse(&format!("{scheme}://")) {
                registry.insert(u, Arc::new(ConditionalPutLogStores));
            }
        }
    });
}

/// Open the Delta table at `loc`; `Ok(None)` when there is none yet.
pub async fn open_table(loc: &Location, version: Option<i64>) -> Result<Option<DeltaTable>> {
    register_log_stores();
    let err = delta_err(loc);
    let mut builder = DeltaTableBuilder::from_url(loc.url.clone())
        .map_err(&err)?
        .with_storage_backend(loc.store.clone(), loc.url.clone());
    if let Some(v) = version {
        builder = builder.with_version(v as _);
    }
    let mut table = builder.build().map_err(&err)?;
    let loaded = match version {
        Some(v) => table.load_version(v as _).await,
        None => table.load().await,
    };
    match loaded {
        Ok(()) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// Open the table at `loc`, creating it with `schema` when missing. Concurrent creators
/// race safely: the loser of the version-0 commit reopens the winner's table.
pub async fn open_or_create(
    loc: &Location,
    name: &str,
    schema: &SchemaRef,
    partitions: &[&str],
    config: Vec<(TableProperty, &str)>,
) -> Result<DeltaTable> {
    if let Some(t) = open_table(loc, None).await? {
        return Ok(t);
    }
    let err = delta_err(loc);
    let kernel: StructType = schema
        .clone()
        .try_into_kernel()
        .map_err(|e| err(e.into()))?;
    let table = DeltaTableBuilder::from_url(loc.url.clone())
        .map_err(&err)?
        .with_storage_backend(loc.store.clone(), loc.url.clone())
        .build()
        .map_err(&err)?;
    let mut create = table
        .create()
        .with_table_name(name)
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(partitions.iter().map(|s| s.to_string()))
        .with_save_mode(SaveMode::Ignore);
    for (k, v) in config {
        create = create.with_configuration_property(k, Some(v));
    }
    match create.await {
        Ok(t) => Ok(t),
        Err(e) => open_table(loc, None).await?.ok_or_else(|| err(e)),
    }
}

/// The four tables of a store.
pub struct StoreTables {
    /// Store root.
    pub root: Location,
    /// `sites`.
    pub sites: DeltaTable,
    /// `plate_stats`.
    pub plate_stats: DeltaTable,
    /// `rejects`.
    pub rejects: DeltaTable,
    /// `runs`.
    pub runs: DeltaTable,
}

/// What a plate commit did.
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

impl StoreTables {
    /// Open the tables under `root`, creating missing ones (`sites` with `sites_schema`).
    pub async fn open_or_create(root: &Location, sites_schema: &SchemaRef) -> Result<Self> {
        let sites = open_or_create(
            &root.child("sites"),
            "sites",
            sites_schema,
            &SITES_PARTITIONS,
            vec![(TableProperty::DataSkippingStatsColumns, SITES_STATS_COLUMNS)],
        )
        .await?;
        let plate_stats = open_or_create(
            &root.child("plate_stats"),
            "plate_stats",
            &schema::plate_stats_schema(),
            &[],
            vec![],
        )
        .await?;
        let rejects = open_or_create(
            &root.child("rejects"),
            "rejects",
            &schema::rejects_schema(),
            &[],
            vec![],
        )
        .await?;
        let runs = open_or_create(
            &root.child("runs"),
            "runs",
            &schema::runs_schema(),
            &[],
            vec![],
        )
        .await?;
        Ok(Self {
            root: root.clone(),
            sites,
            plate_stats,
            rejects,
            runs,
        })
    }

    /// A streaming writer for `sites` shards.
    pub fn sites_writer(&self, settings: &ShardSettings) -> Result<RecordBatchWriter> {
        let loc = self.root.child("sites");
        Ok(RecordBatchWriter::for_table(&self.sites)
            .map_err(delta_err(&loc))?
            .with_writer_properties(settings.writer_properties()?)
            .with_target_file_size(settings.target_file_size))
    }

    /// Commit a plate: add its shard files (`adds`, from flushed [`Self::sites_writer`]s),
    /// remove the earlier build of the plate, and replace the plate's `plate_stats` and
    /// `rejects` rows.
    pub async fn commit_plate(
        &mut self,
        scope: &PlateScope,
        adds: Vec<Add>,
        stats: &[PlateStatRow],
        rejects: &[RejectRow],
        pipeline_hash: &str,
        run_id: &str,
    ) -> Result<PlateCommit> {
        let loc = self.root.child("sites");
        let err = delta_err(&loc);
        let mut result = PlateCommit {
            files_added: adds.len(),
            bytes_written: adds.iter().map(|a| a.size as u64).sum(),
            ..Default::default()
        };
        // The shard files are already uploaded; only the commit is retried when another
        // worker committed first (recomputing which earlier files this plate replaces).
        let mut attempt = 0u64;
        loop {
            self.sites.update_state().await.map_err(&err)?;
            let removes = self.plate_files(scope)?;
            result.files_removed = removes.len();
            if adds.is_empty() && removes.is_empty() {
                result.sites_version = self.sites.version().unwrap_or(0) as i64;
                break;
            }
            let mut actions: Vec<Action> = adds.iter().cloned().map(Action::Add).collect();
            actions.extend(removes.into_iter().map(Action::Remove));
            let operation = DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: Some(SITES_PARTITIONS.iter().map(|s| s.to_string()).collect()),
                predicate: Some(scope.predicate()),
            };
            let snapshot = self.sites.snapshot().map_err(&err)?;
            let committed = CommitBuilder::from(CommitProperties::default())
                .with_actions(actions)
                .build(Some(snapshot), self.sites.log_store(), operation)
                .await;
            match committed {
                Ok(finalized) => {
                    result.sites_version = finalized.version() as i64;
                    self.sites.update_state().await.map_err(&err)?;
                    break;
                }
                Err(DeltaTableError::Transaction { source }) if attempt < 8 => {
                    attempt += 1;
                    tracing::debug!(
                        "sites: commit conflict for plate {} ({source}); retrying",
                        scope.plate
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                }
                Err(e) => return Err(err(e)),
            }
        }
        let stats_batch = schema::plate_stats_batch(stats)?;
        replace_rows(
            &mut self.plate_stats,
            &self.root.child("plate_stats"),
            &scope.predicate(),
            stats_batch,
        )
        .await?;
        let rejects_batch = schema::rejects_batch(rejects, pipeline_hash, run_id)?;
        replace_rows(
            &mut self.rejects,
            &self.root.child("rejects"),
            &scope.predicate(),
            rejects_batch,
        )
        .await?;
        Ok(result)
    }

    /// Replace the run-level rejects (those tied to no plate) and append the run row.
    pub async fn commit_run(
        &mut self,
        run: &RunRow,
        run_rejects: &[RejectRow],
        replace_run_rejects: bool,
    ) -> Result<()> {
        if replace_run_rejects {
            let batch = schema::rejects_batch(run_rejects, &run.pipeline_hash, &run.run_id)?;
            replace_rows(
                &mut self.rejects,
                &self.root.child("rejects"),
                "plate IS NULL",
                batch,
            )
            .await?;
        } else if !run_rejects.is_empty() {
            let batch = schema::rejects_batch(run_rejects, &run.pipeline_hash, &run.run_id)?;
            append_rows(&mut self.rejects, &self.root.child("rejects"), batch).await?;
        }
        append_rows(
            &mut self.runs,
            &self.root.child("runs"),
            schema::runs_batch(run)?,
        )
        .await
    }

    /// Files of `sites` that hold rows of the plate.
    fn plate_files(&self, scope: &PlateScope) -> Result<Vec<Remove>> {
        let loc = self.root.child("sites");
        let snapshot = self.sites.snapshot().map_err(delta_err(&loc))?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut out = Vec::new();
        for file in snapshot.log_data().iter() {
            let parts = file.partition_values_map();
            if parts.get("experiment").cloned().flatten().as_deref()
                != Some(scope.experiment.as_str())
            {
                continue;
            }
            let plates = file.stats().and_then(|s| plate_range(&s));
            match plates {
                Some((lo, hi)) if lo == scope.plate && hi == scope.plate => {}
                Some(_) => continue,
                // Without statistics we cannot prove the file is another plate's: a file
                // of ours always has them, so a file without is foreign and left alone.
                None => continue,
            }
            out.push(Remove {
                path: file.path().to_string(),
                data_change: true,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(parts),
                size: Some(file.size()),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            });
        }
        Ok(out)
    }
}

/// `(min, max)` of `plate` from a file's Delta statistics JSON.
fn plate_range(stats: &str) -> Option<(i32, i32)> {
    let v: serde_json::Value = serde_json::from_str(stats).ok()?;
    let lo = v.get("minValues")?.get("plate")?.as_i64()?;
    let hi = v.get("maxValues")?.get("plate")?.as_i64()?;
    Some((lo as i32, hi as i32))
}

/// Small-table writes from several workers can race: a conflicting commit is redone on
/// the fresh table state (the write itself is idempotent: it replaces a scope or appends
/// one run's rows), a few times with a growing pause.
async fn with_conflict_retry<F, Fut>(table: &mut DeltaTable, loc: &Location, op: F) -> Result<()>
where
    F: Fn(DeltaTable) -> Fut,
    Fut: std::future::Future<Output = deltalake::DeltaResult<DeltaTable>>,
{
    let err = delta_err(loc);
    let mut attempt = 0u64;
    loop {
        match op(table.clone()).await {
            Ok(t) => {
                *table = t;
                return Ok(());
            }
            Err(DeltaTableError::Transaction { source }) if attempt < 8 => {
                attempt += 1;
                tracing::debug!(
                    "{}: commit conflict ({source}); retrying, attempt {attempt}",
                    loc.url
                );
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                table.update_state().await.map_err(&err)?;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

async fn replace_rows(
    table: &mut DeltaTable,
    loc: &Location,
    predicate: &str,
    batch: RecordBatch,
) -> Result<()> {
    with_conflict_retry(table, loc, |t| {
        let batch = batch.clone();
        let predicate = predicate.to_string();
        async move {
            if batch.num_rows() == 0 {
                Ok(t.delete().with_predicate(predicate).await?.0)
            } else {
                t.write(vec![batch])
                    .with_save_mode(SaveMode::Overwrite)
                    .with_replace_where(predicate)
                    .await
            }
        }
    })
    .await
}

async fn append_rows(table: &mut DeltaTable, loc: &Location, batch: RecordBatch) -> Result<()> {
    with_conflict_retry(table, loc, |t| {
        let batch = batch.clone();
        async move { t.write(vec![batch]).with_save_mode(SaveMode::Append).await }
    })
    .await
}

/// Number of rows per row group for a byte target and a tensor size.
pub fn rows_per_group(row_group_bytes: u64, tensor_bytes: u64) -> usize {
    (row_group_bytes / tensor_bytes.max(1)).max(1) as usize
}

/// Which state of the tables to open (Delta time travel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TablesAsOf {
    /// Latest versions.
    Latest,
    /// `sites` at this version (versions are per table); the others latest.
    SitesVersion(i64),
    /// Every table at the last commit at or before this instant.
    Timestamp(chrono::DateTime<chrono::Utc>),
}

/// Read-only handles to whichever tables exist under `root` (for queries).
pub async fn open_at(
    root: &Location,
    as_of: TablesAsOf,
) -> Result<HashMap<&'static str, Arc<DeltaTable>>> {
    let mut out = HashMap::new();
    for name in TABLES {
        let loc = root.child(name);
        let version = match as_of {
            TablesAsOf::SitesVersion(v) if name == "sites" => Some(v),
            _ => None,
        };
        let Some(mut t) = open_table(&loc, version).await? else {
            continue;
        };
        if let TablesAsOf::Timestamp(ts) = as_of {
            // Before a table's first commit, delta-rs loads version 0: the empty table
            // as created.
            t.load_with_datetime(ts).await.map_err(delta_err(&loc))?;
        }
        out.insert(name, Arc::new(t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plate_range_from_stats() {
        let s = r#"{"numRecords":3,"minValues":{"plate":2,"well":"B02"},"maxValues":{"plate":2}}"#;
        assert_eq!(plate_range(s), Some((2, 2)));
        assert_eq!(plate_range("{}"), None);
        assert_eq!(rows_per_group(32 << 20, 6 * 512 * 512), 21);
    }
}
