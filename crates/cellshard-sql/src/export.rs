//! `cellshard export`: the rows of a query, tensors included, written as a new Delta table
//! or as plain Parquet files, for training jobs and other tools.
//!
//! Rows are streamed: one record batch at a time goes from the query to the writer, so an
//! export of many thousands of tensors needs no more memory than a few row groups. The
//! tensor column keeps its `cellshard.shape`/`cellshard.dtype` field metadata and the
//! store's Parquet settings (ZSTD, no dictionary, no statistics, one value per page).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cellshard_store::Location;
use cellshard_store::schema::TENSOR;
use cellshard_store::shard::{FileLayout, PartitionValues, ShardFile};
use cellshard_store::table::{
    ShardSettings, commit_files, open_or_create, open_table, rows_per_group,
};
use deltalake::TableProperty;
use deltalake::kernel::Add;
use futures::StreamExt;

use crate::{Error, Result, Session};

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A new Delta table (readable by delta-rs, Spark, DuckDB's delta extension, ...).
    Delta,
    /// Plain Parquet files `part-NNNNN.parquet` under the target.
    Parquet,
}

/// Export settings.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Target URL or path; it must not hold a table or files yet.
    pub to: String,
    /// Object store options of the target.
    pub options: BTreeMap<String, String>,
    /// Output format.
    pub format: ExportFormat,
    /// Partition columns (Delta only).
    pub partition_by: Vec<String>,
    /// ZSTD level of the tensor column.
    pub zstd_level: i32,
    /// Target bytes per row group.
    pub row_group_bytes: u64,
    /// Target bytes per file.
    pub target_file_size: u64,
}

impl ExportOptions {
    /// Defaults for a target: Delta, ZSTD 3, 64 MiB row groups, 256 MiB files.
    pub fn new(to: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            options: BTreeMap::new(),
            format: ExportFormat::Delta,
            partition_by: Vec::new(),
            zstd_level: 3,
            row_group_bytes: 64 << 20,
            target_file_size: 256 << 20,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    /// Target URL.
    pub url: String,
    /// `delta` or `parquet`.
    pub format: &'static str,
    /// Rows written.
    pub rows: u64,
    /// Data files written.
    pub files: u64,
    /// Bytes of the data files.
    pub bytes: u64,
    /// Delta version committed (Delta only).
    pub version: Option<i64>,
}

/// Plain Arrow types for writers and other readers: dictionary-encoded partition columns
/// and view types become their base types.
pub(crate) fn plain_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Dictionary(_, v) => v.as_ref().clone(),
                t => t.clone(),
            };
            let t = match t {
                DataType::Utf8View => DataType::Utf8,
                DataType::BinaryView => DataType::Binary,
                t => t,
            };
            f.as_ref().clone().with_data_type(t)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// [`plain_schema`], and a binary `tensor` column gets the session's shape and dtype
/// metadata if it lost them.
fn output_schema(schema: &Schema, session: &Session) -> SchemaRef {
    let fields: Vec<Field> = plain_schema(schema)
        .fields()
        .iter()
        .map(|f| {
            let mut out = f.as_ref().clone();
            if f.name() == TENSOR
                && !f.metadata().contains_key("cellshard.shape")
                && let Some(s) = session.tensor
            {
                let mut m = f.metadata().clone();
                m.insert(
                    "cellshard.shape".into(),
                    format!("[{},{},{}]", s.channels, s.height, s.width),
                );
                m.insert("cellshard.dtype".into(), s.dtype.name().into());
                m.insert("cellshard.layout".into(), "CHW,little-endian".into());
                out = out.with_metadata(m);
            }
            out
        })
        .collect();
    Arc::new(Schema::new(fields))
}

pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Run `sql` in `session` and write its rows to `opts.to`.
pub async fn export(session: &Session, sql: &str, opts: &ExportOptions) -> Result<ExportSummary> {
    let target = Location::parse(&opts.to, &opts.options)?;
    target.create_local_dir()?;
    let df = session.ctx.sql(sql).await?;
    let schema = output_schema(df.schema().as_arrow(), session);
    for p in &opts.partition_by {
        if schema.field_with_name(p).is_err() {
            return Err(Error::Usage(format!(
                "partition column {p:?} is not in the query's columns"
            )));
        }
    }
    let tensor_bytes = session.tensor.map_or(1 << 20, |s| {
        (s.channels * s.height * s.width * s.dtype.size()) as u64
    });
    let settings = ShardSettings {
        codec: cellshard_core::pipeline::TensorCodec::Zstd,
        zstd_level: opts.zstd_level,
        rows_per_group: rows_per_group(opts.row_group_bytes, tensor_bytes),
        target_file_size: opts.target_file_size,
    };
    let props = settings.writer_properties()?;
    let mut stream = df.execute_stream().await?;
    let mut rows = 0u64;
    let version = match opts.format {
        ExportFormat::Delta => {
            if open_table(&target, None).await?.is_some() {
                return Err(Error::Usage(format!(
                    "{} already holds a Delta table: export to a new location",
                    target.url
                )));
            }
            // Delta statistics for every column but binary ones (the tensor, thumbnails).
            let stats_columns: Vec<String> = schema
                .fields()
                .iter()
                .filter(|f| !matches!(f.data_type(), DataType::Binary | DataType::LargeBinary))
                .map(|f| f.name().clone())
                .collect();
            let stats = stats_columns.join(",");
            let parts: Vec<&str> = opts.partition_by.iter().map(String::as_str).collect();
            let mut table = open_or_create(
                &target,
                "export",
                &schema,
                &parts,
                vec![(TableProperty::DataSkippingStatsColumns, stats.as_str())],
            )
            .await?;
            let layout = Arc::new(FileLayout {
                table: target.clone(),
                schema: schema.clone(),
                partitions: opts.partition_by.clone(),
                stats_columns,
                properties: props,
            });
            let mut files = PartitionFiles::new(layout, settings.target_file_size);
            while let Some(batch) = stream.next().await {
                let batch = conform(&batch?, &schema)?;
                rows += batch.num_rows() as u64;
                files.write(batch).await?;
            }
            let adds = files.finish().await?;
            Some(commit_files(&mut table, &target, adds).await?)
        }
        ExportFormat::Parquet => {
            if !opts.partition_by.is_empty() {
                return Err(Error::Usage(
                    "--partition-by applies to Delta exports; Parquet exports are flat files"
                        .into(),
                ));
            }
            let existing = target.store.list(Some(&target.prefix)).next().await;
            if let Some(Ok(m)) = existing {
                return Err(Error::Usage(format!(
                    "{} is not empty (holds {}): export to a new location",
                    target.url, m.location
                )));
            }
            let layout = Arc::new(FileLayout {
                table: target.clone(),
                schema: schema.clone(),
                partitions: Vec::new(),
                stats_columns: Vec::new(),
                properties: props,
            });
            let mut files = PartitionFiles::new(layout, settings.target_file_size);
            while let Some(batch) = stream.next().await {
                let batch = conform(&batch?, &schema)?;
                rows += batch.num_rows() as u64;
                files.write(batch).await?;
            }
            files.finish().await?;
            None
        }
    };
    let (files, bytes) = data_files(&target).await?;
    Ok(ExportSummary {
        url: target.url.to_string(),
        format: match opts.format {
            ExportFormat::Delta => "delta",
            ExportFormat::Parquet => "parquet",
        },
        rows,
        files,
        bytes,
        version,
    })
}

/// The open export file of each partition, cut at the target file size. Rows are encoded
/// on blocking threads, never on the async threads that run the query.
struct PartitionFiles {
    layout: Arc<FileLayout>,
    target_file_size: u64,
    open: Vec<(PartitionValues, ShardFile, u64)>,
    done: Vec<Add>,
    next: usize,
}

impl PartitionFiles {
    fn new(layout: Arc<FileLayout>, target_file_size: u64) -> Self {
        PartitionFiles {
            layout,
            target_file_size,
            open: Vec::new(),
            done: Vec::new(),
            next: 0,
        }
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        for (values, part) in self.layout.split(&batch)? {
            let i = match self.open.iter().position(|(v, _, _)| *v == values) {
                Some(i) => i,
                None => {
                    let name = format!("part-{:05}.zstd.parquet", self.next);
                    self.next += 1;
                    let file = self.layout.file(&values, &name).await?;
                    self.open.push((values, file, 0));
                    self.open.len() - 1
                }
            };
            let (values, mut file, bytes) = self.open.swap_remove(i);
            file.wait_for_capacity().await?;
            let size = part.get_array_memory_size() as u64;
            let file = tokio::task::spawn_blocking(move || file.write(&part).map(|()| file))
                .await
                .map_err(|e| Error::Export {
                    url: self.layout.table.url.to_string(),
                    message: format!("encoding failed: {e}"),
                })??;
            if bytes + size >= self.target_file_size {
                self.done.push(close(file).await?);
            } else {
                self.open.push((values, file, bytes + size));
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<Add>> {
        for (_, file, _) in std::mem::take(&mut self.open) {
            self.done.push(close(file).await?);
        }
        Ok(self.done)
    }
}

/// Write a file's footer on a blocking thread and complete its upload.
async fn close(mut file: ShardFile) -> Result<Add> {
    let file = tokio::task::spawn_blocking(move || file.close().map(|()| file))
        .await
        .map_err(|e| Error::Export {
            url: String::new(),
            message: format!("closing a file failed: {e}"),
        })??;
    Ok(file.finish().await?)
}

/// Parquet files under `loc` (outside the Delta log) and their total size.
async fn data_files(loc: &Location) -> Result<(u64, u64)> {
    let mut list = loc.store.list(Some(&loc.prefix));
    let (mut files, mut bytes) = (0, 0);
    while let Some(m) = list.next().await {
        let m = m.map_err(|e| Error::Export {
            url: loc.url.to_string(),
            message: e.to_string(),
        })?;
        if m.location.extension() == Some("parquet") && !m.location.as_ref().contains("_delta_log")
        {
            files += 1;
            bytes += m.size;
        }
    }
    Ok((files, bytes))
}
