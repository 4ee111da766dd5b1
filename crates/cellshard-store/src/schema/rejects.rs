//! The `rejects` table: every input that did not make it into `sites`, with its reason.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use cellshard_core::RejectReason;

use crate::{Error, Result};

/// One input that did not make it into `sites`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRow {
    /// Site id, when the input could be tied to a site.
    pub site_id: Option<String>,
    /// Experiment, when known.
    pub experiment: Option<String>,
    /// Plate, when known.
    pub plate: Option<i32>,
    /// The object (or metadata file and line).
    pub object_path: Option<String>,
    /// Why; the table stores its code and its stage.
    pub reason: RejectReason,
    /// Plain-words message.
    pub message: String,
}

/// The `rejects` schema.
pub fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("site_id", DataType::Utf8, true),
        Field::new("experiment", DataType::Utf8, true),
        Field::new("plate", DataType::Int32, true),
        Field::new("object_path", DataType::Utf8, true),
        Field::new("stage", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("pipeline_hash", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("build_id", DataType::Utf8, true),
    ]))
}

/// Rows to a `rejects` batch; `build_id` is the plate build they belong to (`None` for
/// rejects tied to no plate).
pub fn rejects_batch(
    rows: &[RejectRow],
    pipeline_hash: &str,
    run_id: &str,
    build_id: Option<&str>,
) -> Result<RecordBatch> {
    fn so<'a>(rows: &'a [RejectRow], f: impl Fn(&'a RejectRow) -> Option<&'a str>) -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<arrow::array::StringArray>())
    }
    let cols: Vec<ArrayRef> = vec![
        so(rows, |r| r.site_id.as_deref()),
        so(rows, |r| r.experiment.as_deref()),
        Arc::new(
            rows.iter()
                .map(|r| r.plate)
                .collect::<arrow::array::Int32Array>(),
        ),
        so(rows, |r| r.object_path.as_deref()),
        so(rows, |r| Some(r.reason.stage())),
        so(rows, |r| Some(r.reason.code())),
        so(rows, |r| Some(&r.message)),
        Arc::new(arrow::array::StringArray::from(vec![
            pipeline_hash;
            rows.len()
        ])),
        Arc::new(arrow::array::StringArray::from(vec![run_id; rows.len()])),
        Arc::new(arrow::array::StringArray::from(vec![build_id; rows.len()])),
    ];
    RecordBatch::try_new(rejects_schema(), cols).map_err(|source| Error::Arrow {
        table: "rejects".into(),
        source,
    })
}
