//! The Delta tables of a store: opening and creating them, time travel, and the run's
//! own rows (`runs`, and the rejects tied to no plate). Plates are published by
//! [`crate::publish`]; every commit goes through [`crate::commit`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use cellshard_core::pipeline::TensorCodec;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Add, StructType};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};

use crate::commit::{FileView, Replace, commit, small_file};
use crate::schema::{self, RejectRow, RunRow, SITES_PARTITIONS, SITES_STATS_COLUMNS, TENSOR};
use crate::{Error, Location, Result};

/// Table folder names under the store root.
pub const TABLES: [&str; 6] = [
    "sites",
    "plate_stats",
    "rejects",
    "runs",
    "embeddings",
    "profiles",
];

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
    /// The SQL predicate selecting the plate's rows.
    pub fn predicate(&self) -> String {
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
    /// The tensor column's codec.
    pub codec: TensorCodec,
    /// ZSTD level of the tensor column, when it is zstd.
    pub zstd_level: i32,
    /// Rows per row group (derived from the byte target and the tensor size).
    pub rows_per_group: usize,
    /// Target file size in bytes.
    pub target_file_size: u64,
}

impl ShardSettings {
    /// Writer properties: tensor column in the pipeline's codec, no dictionary, no
    /// statistics, one value per page; the other columns LZ4 (LZ4_RAW), with statistics.
    /// They are a few hundred bytes per row group and every feed reads them all when it
    /// opens: a zstd chunk costs the reader a fresh pair of zstd contexts each (parquet
    /// makes a codec per column chunk), which was most of a feed's open time.
    pub fn writer_properties(&self) -> Result<WriterProperties> {
        let tensor = ColumnPath::from(TENSOR);
        let level = ZstdLevel::try_new(self.zstd_level).map_err(|e| Error::Location {
            url: "sink.zstd_level".into(),
            message: e.to_string(),
        })?;
        let codec = match self.codec {
            TensorCodec::Zstd => Compression::ZSTD(level),
            TensorCodec::Lz4 => Compression::LZ4_RAW,
            TensorCodec::None => Compression::UNCOMPRESSED,
        };
        Ok(WriterProperties::builder()
            .set_compression(Compression::LZ4_RAW)
            .set_column_compression(tensor.clone(), codec)
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

/// Open the Delta table at `loc`; `Ok(None)` when there is none yet. A requested version
/// is checked against the table first: a negative one is invalid and one past the latest
/// is not found, answered at once (neither reaches the log reader, which would wrap or
/// search for it).
pub async fn open_table(loc: &Location, version: Option<i64>) -> Result<Option<DeltaTable>> {
    register_log_stores();
    if loc.require_local_dir().is_err() {
        return Ok(None);
    }
    let wanted = match version.map(u64::try_from) {
        Some(Err(_)) => {
            return Err(Error::Location {
                url: loc.url.to_string(),
                message: format!(
                    "version {}: table versions are 0 or more",
                    version.unwrap_or_default()
                ),
            });
        }
        Some(Ok(v)) => Some(v),
        None => None,
    };
    let err = delta_err(loc);
    let mut table = DeltaTableBuilder::from_url(loc.url.clone())
        .map_err(&err)?
        .with_storage_backend(loc.store.clone(), loc.url.clone())
        .build()
        .map_err(&err)?;
    match table.load().await {
        Ok(()) => {}
        Err(DeltaTableError::NotATable(_)) => return Ok(None),
        Err(e) => return Err(err(e)),
    }
    let newest = table.version().unwrap_or(0);
    match wanted {
        Some(v) if v > newest => Err(Error::Missing {
            url: loc.url.to_string(),
            message: format!("the table has no version {v} (the latest is {newest})"),
        }),
        Some(v) if v < newest => {
            table.load_version(v).await.map_err(err)?;
            Ok(Some(table))
        }
        _ => Ok(Some(table)),
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
        let t = add_late_columns(t, loc, schema).await?;
        check_columns(&t, loc, schema)?;
        return Ok(t);
    }
    loc.create_local_dir()?;
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
    // No retries: a creator that loses the race for version 0 must not commit its CREATE
    // again as version 1; it opens the table that won.
    let mut create = table
        .create()
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
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

/// Column names of `table`'s current schema.
fn table_columns(table: &DeltaTable, loc: &Location) -> Result<Vec<String>> {
    Ok(table
        .snapshot()
        .map_err(delta_err(loc))?
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect())
}

/// Add the nullable columns that a table gained after its first release
/// ([`schema::LATE_COLUMNS`]) to a table written without them: older files read them as
/// NULL. A concurrent writer may add them first; the table is then reopened.
async fn add_late_columns(
    table: DeltaTable,
    loc: &Location,
    schema: &SchemaRef,
) -> Result<DeltaTable> {
    let have = table_columns(&table, loc)?;
    let late: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| schema::LATE_COLUMNS.contains(&f.name().as_str()) && !have.contains(f.name()))
        .map(|f| f.as_ref().clone())
        .collect();
    if late.is_empty() {
        return Ok(table);
    }
    let err = delta_err(loc);
    let kernel: StructType = Arc::new(Schema::new(late))
        .try_into_kernel()
        .map_err(|e| err(e.into()))?;
    let fields: Vec<_> = kernel.fields().cloned().collect();
    match table.add_columns().with_fields(fields).await {
        Ok(t) => Ok(t),
        Err(e) => open_table(loc, None).await?.ok_or_else(|| err(e)),
    }
}

/// An existing table must have the columns this build writes: files are committed with
/// hand-built actions, so a mismatch would otherwise pass unnoticed. Columns are matched by
/// name (a column added later sits at the end of the table's schema).
fn check_columns(table: &DeltaTable, loc: &Location, schema: &SchemaRef) -> Result<()> {
    let have = table_columns(table, loc)?;
    let want: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let (mut h, mut w) = (have.clone(), want.clone());
    h.sort();
    w.sort();
    if h == w {
        return Ok(());
    }
    let missing: Vec<&str> = want
        .iter()
        .filter(|c| !have.contains(c))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = have
        .iter()
        .filter(|c| !want.contains(c))
        .map(String::as_str)
        .collect();
    Err(Error::Write {
        url: loc.url.to_string(),
        message: format!(
            "the table's columns are not the ones this run writes (missing: [{}]; not written: [{}]); \
             write to a new store, or run with the same metadata columns as the store was built with",
            missing.join(", "),
            extra.join(", ")
        ),
    })
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

    /// Replace the run-level rejects (those tied to no plate) and append the run row.
    pub async fn commit_run(
        &mut self,
        run: &RunRow,
        run_rejects: &[RejectRow],
        replace_run_rejects: bool,
    ) -> Result<()> {
        let rejects_loc = self.root.child("rejects");
        let batch = schema::rejects_batch(run_rejects, &run.pipeline_hash, &run.run_id, None)?;
        let adds: Vec<Add> = small_file(&rejects_loc, batch).await?.into_iter().collect();
        let run_level = |f: &FileView| f.all_null("plate");
        let replace = Replace {
            adds,
            remove: replace_run_rejects.then_some(&run_level as _),
            predicate: replace_run_rejects.then(|| "plate IS NULL".to_string()),
            metadata: Vec::new(),
            txn: None,
        };
        commit(&mut self.rejects, &rejects_loc, replace).await?;
        let runs_loc = self.root.child("runs");
        let adds = small_file(&runs_loc, schema::runs_batch(run)?).await?;
        commit_files(&mut self.runs, &runs_loc, adds.into_iter().collect()).await?;
        Ok(())
    }
}

/// Commit data files already uploaded (by [`crate::shard::ShardFile`]) to `table` as an
/// append; returns the new version.
pub async fn commit_files(table: &mut DeltaTable, loc: &Location, adds: Vec<Add>) -> Result<i64> {
    let append = Replace {
        adds,
        remove: None,
        predicate: None,
        metadata: Vec::new(),
        txn: None,
    };
    Ok(commit(table, loc, append).await?.version)
}

/// Number of rows per row group for a byte target and a tensor size.
pub fn rows_per_group(row_group_bytes: u64, tensor_bytes: u64) -> usize {
    usize::try_from((row_group_bytes / tensor_bytes.max(1)).max(1)).unwrap_or(usize::MAX)
}

/// Which state of the tables to open (Delta time travel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TablesAsOf {
    /// Latest versions.
    Latest,
    /// `sites` at this version (versions are per table), and the other tables as they were
    /// when that version was committed, so its builds find their statistics and rejects.
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
    let mut at = match as_of {
        TablesAsOf::Timestamp(ts) => Some(ts),
        _ => None,
    };
    // `sites` first: a pinned version gives the instant the other tables are read at.
    for name in TABLES {
        let loc = root.child(name);
        let version = match as_of {
            TablesAsOf::SitesVersion(v) if name == "sites" => Some(v),
            _ => None,
        };
        let Some(mut t) = open_table(&loc, version).await? else {
            continue;
        };
        if let Some(v) = version {
            at = t
                .snapshot()
                .ok()
                .and_then(|s| s.version_timestamp(u64::try_from(v).ok()?))
                .and_then(chrono::DateTime::from_timestamp_millis);
        } else if let Some(ts) = at {
            // Before a table's first commit, delta-rs loads version 0: the empty table
            // as created.
            t.load_with_datetime(ts).await.map_err(delta_err(&loc))?;
        }
        out.insert(name, Arc::new(t));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
