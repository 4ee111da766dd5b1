//! Every commit the store makes: data files already uploaded are added, and the files a
//! rule picks are removed, in one Delta transaction, retried when another writer commits
//! first. Files are picked whole, from their partition values and statistics, never
//! rewritten: the store writes each file for one plate build (or one run's rows), so a
//! file is either wholly in a scope or wholly out of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove, Transaction};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaResult, DeltaTable, DeltaTableError};
use serde_json::Value;

use crate::shard::FileLayout;
use crate::{Error, Location, Result};

/// What a removal rule sees of a file.
#[derive(Debug)]
pub struct FileView<'a> {
    /// Partition values.
    pub partitions: &'a HashMap<String, Option<String>>,
    /// The file's Delta statistics, when it has them.
    pub stats: Option<&'a Value>,
}

impl FileView<'_> {
    /// The value of `column` when every row of the file has that one value (min = max,
    /// no nulls), from the statistics.
    pub fn single(&self, column: &str) -> Option<&Value> {
        let s = self.stats?;
        let lo = s.get("minValues")?.get(column)?;
        let hi = s.get("maxValues")?.get(column)?;
        let nulls = s.get("nullCount")?.get(column)?.as_u64()?;
        (lo == hi && nulls == 0).then_some(lo)
    }

    /// Whether every row of the file has `column` null.
    pub fn all_null(&self, column: &str) -> bool {
        let Some(s) = self.stats else { return false };
        let rows = s.get("numRecords").and_then(Value::as_u64);
        let nulls = s
            .get("nullCount")
            .and_then(|n| n.get(column))
            .and_then(Value::as_u64);
        matches!((rows, nulls), (Some(r), Some(n)) if r == n)
    }
}

/// A commit: files to add, the rule for files to remove, and how the log describes it.
pub(crate) struct Replace<'a> {
    /// Files already uploaded.
    pub adds: Vec<Add>,
    /// Picks the files to remove (`None`: remove nothing, an append).
    pub remove: Option<&'a (dyn Fn(&FileView) -> bool + Sync)>,
    /// The scope replaced, in words of SQL, for the log.
    pub predicate: Option<String>,
    /// Application metadata for the commit info.
    pub metadata: Vec<(String, Value)>,
    /// An application transaction recorded with the commit (`appId`, `version`).
    pub txn: Option<(String, i64)>,
}

/// What a commit did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Committed {
    /// The table's version after it.
    pub version: i64,
    /// The files removed, as they were added, with their build id (`build_id`
    /// single-valued) when they have one.
    pub removed: Vec<(Option<String>, Add)>,
}

/// Commit `replace` to `table`. A commit that would add and remove nothing is not made.
pub(crate) async fn commit(
    table: &mut DeltaTable,
    loc: &Location,
    replace: Replace<'_>,
) -> Result<Committed> {
    with_conflict_retry(table, loc, |t| attempt(t, &replace)).await
}

async fn attempt(mut table: DeltaTable, r: &Replace<'_>) -> DeltaResult<(DeltaTable, Committed)> {
    table.update_state().await?;
    let (removes, removed) = match r.remove {
        Some(rule) => picked(&table, rule)?,
        None => Default::default(),
    };
    if r.adds.is_empty() && removes.is_empty() && r.txn.is_none() {
        let version = version_i64(table.version().unwrap_or(0));
        return Ok((
            table,
            Committed {
                version,
                ..Default::default()
            },
        ));
    }
    let mut actions: Vec<Action> = r.adds.iter().cloned().map(Action::Add).collect();
    actions.extend(removes.into_iter().map(Action::Remove));
    let operation = DeltaOperation::Write {
        mode: if r.remove.is_some() {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        },
        partition_by: None,
        predicate: r.predicate.clone(),
    };
    let mut properties = CommitProperties::default().with_metadata(r.metadata.iter().cloned());
    if let Some((app_id, version)) = &r.txn {
        properties = properties.with_application_transaction(Transaction::new(app_id, *version));
    }
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    let version = version_i64(finalized.version());
    table.update_state().await?;
    Ok((table, Committed { version, removed }))
}

/// A Delta version as the signed number the store's tables and SQL use.
pub(crate) fn version_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The live files of `table` that `rule` picks, as `Remove` actions, and as they were
/// added, with their build ids.
#[allow(clippy::type_complexity)]
fn picked(
    table: &DeltaTable,
    rule: &(dyn Fn(&FileView) -> bool + Sync),
) -> DeltaResult<(Vec<Remove>, Vec<(Option<String>, Add)>)> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::new();
    let mut added = Vec::new();
    for file in table.snapshot()?.log_data().iter() {
        let partitions = file.partition_values_map();
        let stats: Option<Value> = file.stats().and_then(|s| serde_json::from_str(&s).ok());
        let view = FileView {
            partitions: &partitions,
            stats: stats.as_ref(),
        };
        if !rule(&view) {
            continue;
        }
        let build = view.single("build_id").and_then(Value::as_str);
        let add = Add {
            path: file.path().to_string(),
            partition_values: partitions.clone(),
            size: file.size(),
            modification_time: file.modification_time(),
            data_change: true,
            stats: file.stats(),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        };
        added.push((build.map(str::to_string), add));
        out.push(Remove {
            path: file.path().to_string(),
            data_change: true,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(partitions),
            size: Some(file.size()),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
        });
    }
    Ok((out, added))
}

/// Commits from several workers can race: a conflicting commit is redone on the fresh
/// table state (every commit is idempotent: it replaces a scope or adds one build's or one
/// run's files), a few times with a growing pause. `op` gets a clone of the table and
/// returns the updated table and its result.
pub(crate) async fn with_conflict_retry<T, F, Fut>(
    table: &mut DeltaTable,
    loc: &Location,
    op: F,
) -> Result<T>
where
    F: Fn(DeltaTable) -> Fut,
    Fut: std::future::Future<Output = DeltaResult<(DeltaTable, T)>>,
{
    let err = |e: DeltaTableError| Error::Delta {
        table: loc.url.to_string(),
        source: Box::new(e),
    };
    let mut attempt = 0u64;
    loop {
        match op(table.clone()).await {
            Ok((t, out)) => {
                *table = t;
                return Ok(out);
            }
            Err(DeltaTableError::Transaction { source }) if attempt < 8 => {
                attempt += 1;
                tracing::debug!(
                    "{}: commit conflict ({source}); retrying, attempt {attempt}",
                    loc.url
                );
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                table.update_state().await.map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// Write the rows of a small table (`plate_stats`, `rejects`, `runs`) as one data file,
/// encoded on a blocking thread; `None` when there are no rows.
pub(crate) async fn small_file(loc: &Location, batch: RecordBatch) -> Result<Option<Add>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if batch.num_rows() == 0 {
        return Ok(None);
    }
    let schema = batch.schema();
    let layout = FileLayout {
        table: loc.clone(),
        stats_columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        schema,
        partitions: Vec::new(),
        properties: WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build(),
    };
    let name = format!(
        "part-{:x}-{}-{:05}.zstd.parquet",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut file = layout.file(&Vec::new(), &name).await?;
    let file = tokio::task::spawn_blocking(move || {
        file.write(&batch)?;
        file.close()?;
        Ok::<_, Error>(file)
    })
    .await
    .map_err(|e| Error::Write {
        url: loc.url.to_string(),
        message: format!("encoding failed: {e}"),
    })??;
    Ok(Some(file.finish().await?))
}

/// Add back those of `own` that `table` no longer has.
pub(crate) async fn restore_missing(
    table: &mut DeltaTable,
    loc: &Location,
    own: &[Add],
) -> Result<()> {
    if own.is_empty() {
        return Ok(());
    }
    let err = |e: deltalake::DeltaTableError| Error::Delta {
        table: loc.url.to_string(),
        source: Box::new(e),
    };
    table.update_state().await.map_err(err)?;
    let present: std::collections::BTreeSet<String> = table
        .snapshot()
        .map_err(err)?
        .log_data()
        .iter()
        .map(|f| f.path().to_string())
        .collect();
    let missing: Vec<Add> = own
        .iter()
        .filter(|a| !present.contains(&a.path))
        .cloned()
        .collect();
    if !missing.is_empty() {
        tracing::debug!(
            "{}: re-adding {} file(s) of this build",
            loc.url,
            missing.len()
        );
        let append = Replace {
            adds: missing,
            remove: None,
            predicate: None,
            metadata: Vec::new(),
            txn: None,
        };
        commit(table, loc, append).await?;
    }
    Ok(())
}
