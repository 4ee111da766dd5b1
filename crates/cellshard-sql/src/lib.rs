//! SQL over a cellshard store: a DataFusion session with the store's Delta tables
//! (`sites`, `plate_stats`, `rejects`, `runs`) registered, and result formatting.
//!
//! Reading only: nothing here writes to the store. Tables are registered through
//! delta-rs' table provider, so projection and partition pruning reach the Parquet scan.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use cellshard_store::Location;
use datafusion::prelude::{SessionConfig, SessionContext};

/// Result with the SQL [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQL failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] cellshard_store::Error),
    /// A table could not be registered.
    #[error("registering table {table}: {message}")]
    Register {
        /// Table name.
        table: String,
        /// Cause.
        message: String,
    },
    /// The query failed (bad SQL, unknown column, ...).
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Output formatting failed.
    #[error("formatting results: {0}")]
    Format(#[from] arrow::error::ArrowError),
    /// There is no store at the location.
    #[error("no cellshard tables under {0}: run `cellshard run` first")]
    Empty(String),
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned text table (binary values shown as their size).
    Table,
    /// CSV with a header.
    Csv,
    /// JSON lines.
    Json,
}

/// A session over the store at `url`; `version` picks a `sites` version (time travel).
pub async fn open_session(
    url: &str,
    options: &BTreeMap<String, String>,
    version: Option<i64>,
) -> Result<SessionContext> {
    let root = Location::parse(url, options)?;
    let tables = cellshard_store::table::open_existing(&root, version).await?;
    if tables.is_empty() {
        return Err(Error::Empty(root.url.to_string()));
    }
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let ctx = SessionContext::new_with_config(config);
    for (name, table) in tables {
        let reg = |message: String| Error::Register {
            table: name.to_string(),
            message,
        };
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| reg(e.to_string()))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| reg(e.to_string()))?;
        ctx.register_table(name, provider)
            .map_err(|e| reg(e.to_string()))?;
    }
    Ok(ctx)
}

/// Run one statement and collect its batches.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Binary columns become `<N bytes>` so a tensor never floods a terminal.
fn summarize_binary(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let summary = match c.data_type() {
            DataType::Binary => Some(sizes(
                c.as_binary::<i32>().iter().map(|v| v.map(<[u8]>::len)),
            )),
            DataType::LargeBinary => Some(sizes(
                c.as_binary::<i64>().iter().map(|v| v.map(<[u8]>::len)),
            )),
            DataType::BinaryView => {
                Some(sizes(c.as_binary_view().iter().map(|v| v.map(<[u8]>::len))))
            }
            _ => None,
        };
        match summary {
            Some(s) => {
                fields.push(Arc::new(Field::new(f.name(), DataType::Utf8, true)));
                cols.push(Arc::new(s));
            }
            None => {
                fields.push(f.clone());
                cols.push(c.clone());
            }
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

fn sizes(it: impl Iterator<Item = Option<usize>>) -> StringArray {
    it.map(|v| v.map(|n| format!("<{n} bytes>"))).collect()
}

/// Format batches for printing.
pub fn format(batches: &[RecordBatch], fmt: OutputFormat) -> Result<String> {
    match fmt {
        OutputFormat::Table => {
            let b: Vec<RecordBatch> = batches
                .iter()
                .map(summarize_binary)
                .collect::<Result<_>>()?;
            Ok(arrow::util::pretty::pretty_format_batches(&b)?.to_string())
        }
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(&summarize_binary(b)?)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                for b in batches {
                    w.write(&summarize_binary(b)?)?;
                }
                w.finish()?;
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

/// Total rows in a result.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}
