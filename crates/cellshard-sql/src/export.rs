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
use cellshard_store::table::{ShardSettings, open_or_create, open_table, rows_per_group};
use deltalake::TableProperty;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;

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
            let stats: Vec<&str> = schema
                .fields()
                .iter()
                .filter(|f| !matches!(f.data_type(), DataType::Binary | DataType::LargeBinary))
                .map(|f| f.name().as_str())
                .collect();
            let stats = stats.join(",");
            let parts: Vec<&str> = opts.partition_by.iter().map(String::as_str).collect();
            let mut table = open_or_create(
                &target,
                "export",
                &schema,
                &parts,
                vec![(TableProperty::DataSkippingStatsColumns, stats.as_str())],
            )
            .await?;
            let delta = |e: deltalake::DeltaTableError| Error::Export {
                url: target.url.to_string(),
                message: e.to_string(),
            };
            let mut writer = RecordBatchWriter::for_table(&table)
                .map_err(delta)?
                .with_writer_properties(props)
                .with_target_file_size(settings.target_file_size);
            while let Some(batch) = stream.next().await {
                let batch = conform(&batch?, &schema)?;
                rows += batch.num_rows() as u64;
                writer.write(batch).await.map_err(delta)?;
            }
            Some(writer.flush_and_commit(&mut table).await.map_err(delta)? as i64)
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
            let mut file = 0usize;
            let mut writer: Option<AsyncArrowWriter<BufWriter>> = None;
            while let Some(batch) = stream.next().await {
                let batch = conform(&batch?, &schema)?;
                rows += batch.num_rows() as u64;
                let w = match writer.as_mut() {
                    Some(w) => w,
                    None => {
                        let path = target.path(&format!("part-{file:05}.parquet"));
                        file += 1;
                        let out = BufWriter::new(target.store.clone(), path);
                        writer.insert(AsyncArrowWriter::try_new(
                            out,
                            schema.clone(),
                            Some(props.clone()),
                        )?)
                    }
                };
                w.write(&batch).await?;
                if w.bytes_written() as u64 + w.in_progress_size() as u64
                    >= settings.target_file_size
                    && let Some(w) = writer.take()
                {
                    w.close().await?;
                }
            }
            if let Some(w) = writer.take() {
                w.close().await?;
            }
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
