//! The `runs` table: one row per run or worker, with its counts and stage times.

use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::{Error, Result};

/// One run (or one worker's share of a run).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline hash.
    pub pipeline_hash: String,
    /// `I/N`.
    pub worker: String,
    /// Start, microseconds since the epoch.
    pub started_us: i64,
    /// End, microseconds since the epoch.
    pub finished_us: i64,
    /// Counts.
    pub counts: RunCounts,
    /// Seconds per stage.
    pub seconds: RunSeconds,
    /// The JSON run summary.
    pub summary_json: String,
}

/// The counts of a run; each field is a column of `runs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Objects listed.
    pub objects_discovered: u64,
    /// Objects whose keys do not follow the layout.
    pub objects_ignored: u64,
    /// Objects with a reject row.
    pub objects_rejected: u64,
    /// Objects stored.
    pub objects_stored: u64,
    /// Sites seen.
    pub sites_discovered: u64,
    /// Sites stored.
    pub sites_stored: u64,
    /// Sites rejected.
    pub sites_rejected: u64,
    /// Plates processed.
    pub plates: u64,
    /// Source bytes read.
    pub bytes_in: u64,
    /// Shard bytes written.
    pub bytes_out: u64,
    /// Metadata rows that could not be used.
    pub metadata_rows_rejected: u64,
}

impl RunCounts {
    /// `(column, value)` in column order.
    pub fn columns(&self) -> [(&'static str, u64); 11] {
        [
            ("objects_discovered", self.objects_discovered),
            ("objects_ignored", self.objects_ignored),
            ("objects_rejected", self.objects_rejected),
            ("objects_stored", self.objects_stored),
            ("sites_discovered", self.sites_discovered),
            ("sites_stored", self.sites_stored),
            ("sites_rejected", self.sites_rejected),
            ("plates", self.plates),
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("metadata_rows_rejected", self.metadata_rows_rejected),
        ]
    }
}

/// Seconds per stage of a run (summed over concurrent work); each a `*_seconds` column.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunSeconds {
    /// Listing the source.
    pub list: f64,
    /// Waiting on GETs.
    pub read: f64,
    /// Decode, downsample, crop, histogram, spill.
    pub decode: f64,
    /// Normalize and stack.
    pub normalize: f64,
    /// Writing and publishing.
    pub write: f64,
}

impl RunSeconds {
    /// `(stage, seconds)` in column order.
    pub fn columns(&self) -> [(&'static str, f64); 5] {
        [
            ("list", self.list),
            ("read", self.read),
            ("decode", self.decode),
            ("normalize", self.normalize),
            ("write", self.write),
        ]
    }
}

/// The `runs` schema.
pub fn runs_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("pipeline_hash", DataType::Utf8, false),
        Field::new("worker", DataType::Utf8, false),
        Field::new("started_at", ts.clone(), false),
        Field::new("finished_at", ts, false),
    ];
    fields.extend(
        RunCounts::default()
            .columns()
            .iter()
            .map(|(c, _)| Field::new(*c, DataType::Int64, false)),
    );
    fields.extend(
        RunSeconds::default()
            .columns()
            .iter()
            .map(|(c, _)| Field::new(format!("{c}_seconds"), DataType::Float64, false)),
    );
    fields.push(Field::new("summary", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// One row to a `runs` batch.
pub fn runs_batch(r: &RunRow) -> Result<RecordBatch> {
    let s = |v: &str| -> ArrayRef { Arc::new(arrow::array::StringArray::from(vec![v])) };
    let ts = |v: i64| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        b.append_value(v);
        Arc::new(b.finish())
    };
    let mut cols = vec![
        s(&r.run_id),
        s(&r.pipeline),
        s(&r.pipeline_hash),
        s(&r.worker),
        ts(r.started_us),
        ts(r.finished_us),
    ];
    for (_, v) in r.counts.columns() {
        cols.push(Arc::new(arrow::array::Int64Array::from(vec![v as i64])));
    }
    for (_, v) in r.seconds.columns() {
        cols.push(Arc::new(arrow::array::Float64Array::from(vec![v])));
    }
    cols.push(s(&r.summary_json));
    RecordBatch::try_new(runs_schema(), cols).map_err(|source| Error::Arrow {
        table: "runs".into(),
        source,
    })
}
