//! The `plate_stats` table: one row per plate build and channel, with the normalization's
//! statistics, the channel's name and the illumination function it was divided by.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::list;
use crate::{Error, Result};

/// The illumination function column of `plate_stats` (added after its first release).
pub const ILLUMINATION: &str = "illumination";

/// One channel's statistics for one plate.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateStatRow {
    /// Experiment.
    pub experiment: String,
    /// Cell type.
    pub cell_type: String,
    /// Plate.
    pub plate: i32,
    /// Channel (1-based, as in the file names).
    pub channel: i32,
    /// `percentile` or `zscore`.
    pub method: String,
    /// `all`, `controls` or `negative_controls`.
    pub reference: String,
    /// Requested lower percentile (percentile method).
    pub p_low: Option<f64>,
    /// Requested upper percentile.
    pub p_high: Option<f64>,
    /// Sample value at `p_low` (the clip floor).
    pub low_value: Option<i32>,
    /// Sample value at `p_high` (the clip ceiling).
    pub high_value: Option<i32>,
    /// Mean of the reference samples.
    pub mean: f64,
    /// Standard deviation of the reference samples.
    pub std: f64,
    /// Smallest reference sample.
    pub min: i32,
    /// Largest reference sample.
    pub max: i32,
    /// Reference samples counted.
    pub pixel_count: i64,
    /// Reference sites counted.
    pub site_count: i32,
    /// Pipeline hash.
    pub pipeline_hash: String,
    /// Run id.
    pub run_id: String,
    /// The plate build these statistics normalized (the `build_id` of its `sites` rows).
    pub build_id: String,
    /// The channel's name in the pipeline (`DNA`, or `w1` when channels are only counted).
    pub channel_name: Option<String>,
    /// The illumination function the channel was divided by, when the pipeline corrects
    /// illumination.
    pub illumination: Option<IllumColumn>,
}

/// An illumination function as `plate_stats` stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct IllumColumn {
    /// Little-endian f32 grid values, row-major.
    pub grid: Vec<u8>,
    /// `[image_height, image_width, grid_height, grid_width]`: the grid expands bilinearly
    /// to the image.
    pub shape: [i32; 4],
    /// `compute`, or the `.npy` object it was read from.
    pub source: String,
}

/// The `plate_stats` schema.
pub fn plate_stats_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("experiment", DataType::Utf8, false),
        Field::new("cell_type", DataType::Utf8, false),
        Field::new("plate", DataType::Int32, false),
        Field::new("channel", DataType::Int32, false),
        Field::new("method", DataType::Utf8, false),
        Field::new("reference", DataType::Utf8, false),
        Field::new("p_low", DataType::Float64, true),
        Field::new("p_high", DataType::Float64, true),
        Field::new("low_value", DataType::Int32, true),
        Field::new("high_value", DataType::Int32, true),
        Field::new("mean", DataType::Float64, false),
        Field::new("std", DataType::Float64, false),
        Field::new("min", DataType::Int32, false),
        Field::new("max", DataType::Int32, false),
        Field::new("pixel_count", DataType::Int64, false),
        Field::new("site_count", DataType::Int32, false),
        Field::new("pipeline_hash", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("build_id", DataType::Utf8, false),
        Field::new("channel_name", DataType::Utf8, true),
        Field::new(ILLUMINATION, DataType::Binary, true),
        Field::new("illumination_shape", list(DataType::Int32, true), true),
        Field::new("illumination_source", DataType::Utf8, true),
    ]))
}

/// Rows to a `plate_stats` batch.
pub fn plate_stats_batch(rows: &[PlateStatRow]) -> Result<RecordBatch> {
    let s = |f: &dyn Fn(&PlateStatRow) -> &str| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|r| Some(f(r)))
                .collect::<arrow::array::StringArray>(),
        )
    };
    let i = |f: &dyn Fn(&PlateStatRow) -> Option<i32>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<arrow::array::Int32Array>())
    };
    let d = |f: &dyn Fn(&PlateStatRow) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<arrow::array::Float64Array>())
    };
    let cols: Vec<ArrayRef> = vec![
        s(&|r| &r.experiment),
        s(&|r| &r.cell_type),
        i(&|r| Some(r.plate)),
        i(&|r| Some(r.channel)),
        s(&|r| &r.method),
        s(&|r| &r.reference),
        d(&|r| r.p_low),
        d(&|r| r.p_high),
        i(&|r| r.low_value),
        i(&|r| r.high_value),
        d(&|r| Some(r.mean)),
        d(&|r| Some(r.std)),
        i(&|r| Some(r.min)),
        i(&|r| Some(r.max)),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.pixel_count))
                .collect::<arrow::array::Int64Array>(),
        ),
        i(&|r| Some(r.site_count)),
        s(&|r| &r.pipeline_hash),
        s(&|r| &r.run_id),
        s(&|r| &r.build_id),
        Arc::new(
            rows.iter()
                .map(|r| r.channel_name.as_deref())
                .collect::<arrow::array::StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.illumination.as_ref().map(|i| i.grid.as_slice()))
                .collect::<arrow::array::BinaryArray>(),
        ),
        {
            let mut b = ListBuilder::new(Int32Builder::new());
            for r in rows {
                match &r.illumination {
                    Some(i) => {
                        b.values().append_slice(&i.shape);
                        b.append(true);
                    }
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        },
        Arc::new(
            rows.iter()
                .map(|r| r.illumination.as_ref().map(|i| i.source.as_str()))
                .collect::<arrow::array::StringArray>(),
        ),
    ];
    RecordBatch::try_new(plate_stats_schema(), cols).map_err(|source| Error::Arrow {
        table: "plate_stats".into(),
        source,
    })
}
