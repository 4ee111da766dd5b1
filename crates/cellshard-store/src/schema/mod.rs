//! The tables' Arrow schemas and typed rows, converted to `RecordBatch`es in one place.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::{Error, Result};

mod plate_stats;
mod rejects;
mod runs;

pub use plate_stats::{
    ILLUMINATION, IllumColumn, PlateStatRow, plate_stats_batch, plate_stats_schema,
};
pub use rejects::{RejectRow, rejects_batch, rejects_schema};
pub use runs::{RunCounts, RunRow, RunSeconds, runs_batch, runs_schema};

/// Partition columns of `sites`.
pub const SITES_PARTITIONS: [&str; 2] = ["cell_type", "experiment"];

/// Name of the tensor column.
pub const TENSOR: &str = "tensor";

/// Per-site raw (pre-normalization) channel means: added to `sites` after its first
/// release, so a store written without it gains it (NULL for older rows) on the next run.
pub const RAW_CHANNEL_MEAN: &str = "raw_channel_mean";

/// Nullable columns added to a table after its first release: a table written without
/// them gains them on the next run (NULL in older files).
pub const LATE_COLUMNS: [&str; 11] = [
    RAW_CHANNEL_MEAN,
    "qc_focus",
    "qc_saturation",
    "qc_foreground",
    "nuclei_count",
    "qc_flags",
    "qc_pass",
    "channel_name",
    ILLUMINATION,
    "illumination_shape",
    "illumination_source",
];

/// Columns of `sites` that get Delta file statistics (data skipping); the tensor never does.
pub const SITES_STATS_COLUMNS: &str =
    "plate,well,site,site_id,well_id,dataset,well_type,sirna_id,build_id";

/// The [`LATE_COLUMNS`] of table `name` (`sites`, `plate_stats`) as its writer defines them:
/// readers add those a table lacks, as NULL, so every store answers the same queries.
pub fn late_fields(name: &str) -> Vec<Field> {
    let schema = match name {
        "sites" => SitesContext::colliding_schema(),
        "plate_stats" => plate_stats_schema(),
        _ => return Vec::new(),
    };
    schema
        .fields()
        .iter()
        .filter(|f| LATE_COLUMNS.contains(&f.name().as_str()))
        .map(|f| f.as_ref().clone())
        .collect()
}

fn list(item: DataType, nullable: bool) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, nullable)))
}

/// A site's image quality, measured on its raw crop (see `cellshard_stages::qc`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteQcRow {
    /// Per channel: `PowerLogLogSlope` (more negative: less in focus).
    pub focus: Vec<f64>,
    /// Per channel: fraction of pixels at the top of the bit depth.
    pub saturation: Vec<f64>,
    /// Per channel: fraction of pixels above the Otsu threshold.
    pub foreground: Vec<f64>,
    /// Estimated nuclei in the DNA channel.
    pub nuclei: i32,
    /// Why the site fails QC (`saturated`, `empty`, `out_of_focus`); empty when it passes.
    pub flags: Vec<String>,
}

/// What every row of one `sites` write shares.
#[derive(Debug, Clone)]
pub struct SitesContext {
    /// Metadata columns beyond the typed ones, stored as strings, in order.
    pub extra_columns: Vec<String>,
    /// Tensor shape (channels, height, width).
    pub shape: [u32; 3],
    /// Channel names, in stacking order (`cellshard.channel_names` of the tensor field).
    pub channel_names: Vec<String>,
    /// numpy dtype name of the tensor elements.
    pub dtype: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline hash.
    pub pipeline_hash: String,
    /// Run id.
    pub run_id: String,
}

/// One stored site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRow {
    /// `{experiment}_{plate}_{well}_{site}`.
    pub site_id: String,
    /// `{experiment}_{plate}_{well}`.
    pub well_id: String,
    /// Cell type (partition).
    pub cell_type: String,
    /// train / test.
    pub dataset: Option<String>,
    /// Experiment (partition).
    pub experiment: String,
    /// Plate.
    pub plate: i32,
    /// Well.
    pub well: String,
    /// Site.
    pub site: i32,
    /// Well type.
    pub well_type: String,
    /// siRNA id.
    pub sirna_id: Option<i32>,
    /// Values of the context's extra columns.
    pub extra: Vec<Option<String>>,
    /// Per-channel mean of the stored values.
    pub channel_mean: Vec<f64>,
    /// Per-channel standard deviation of the stored values.
    pub channel_std: Vec<f64>,
    /// Per-channel mean of the input samples before normalization (raw crop).
    pub raw_channel_mean: Vec<f64>,
    /// Per-channel image quality of the raw crop.
    pub qc: SiteQcRow,
    /// Source objects, one per channel, in channel order.
    pub source_paths: Vec<String>,
    /// Their ETags, where the store gives them.
    pub source_etags: Vec<Option<String>>,
    /// Their sizes in bytes.
    pub source_sizes: Vec<i64>,
    /// C x H x W little-endian tensor.
    pub tensor: Vec<u8>,
}

impl SitesContext {
    /// The columns the store writes itself (no metadata columns).
    fn colliding_schema() -> SchemaRef {
        SitesContext {
            extra_columns: Vec::new(),
            shape: [1, 1, 1],
            channel_names: Vec::new(),
            dtype: String::new(),
            pipeline: String::new(),
            pipeline_hash: String::new(),
            run_id: String::new(),
        }
        .schema()
    }

    /// The metadata columns of `extra` that would take the name of a column the store
    /// writes itself (`tensor`, `run_id`, `build_id`, ...), which no run can store.
    pub fn colliding_columns(extra: &[String]) -> Vec<String> {
        let own = Self::colliding_schema();
        extra
            .iter()
            .filter(|c| own.field_with_name(c).is_ok() || SITES_PARTITIONS.contains(&c.as_str()))
            .cloned()
            .collect()
    }

    /// The `sites` schema. Shape and dtype are also recorded in the tensor field's metadata.
    pub fn schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new("site_id", DataType::Utf8, false),
            Field::new("well_id", DataType::Utf8, false),
            Field::new("cell_type", DataType::Utf8, false),
            Field::new("dataset", DataType::Utf8, true),
            Field::new("experiment", DataType::Utf8, false),
            Field::new("plate", DataType::Int32, false),
            Field::new("well", DataType::Utf8, false),
            Field::new("site", DataType::Int32, false),
            Field::new("well_type", DataType::Utf8, false),
            Field::new("sirna_id", DataType::Int32, true),
        ];
        fields.extend(
            self.extra_columns
                .iter()
                .map(|c| Field::new(c, DataType::Utf8, true)),
        );
        fields.extend([
            Field::new("channels", DataType::Int32, false),
            Field::new("height", DataType::Int32, false),
            Field::new("width", DataType::Int32, false),
            Field::new("dtype", DataType::Utf8, false),
            Field::new("channel_mean", list(DataType::Float64, true), true),
            Field::new("channel_std", list(DataType::Float64, true), true),
            Field::new(RAW_CHANNEL_MEAN, list(DataType::Float64, true), true),
            Field::new("qc_focus", list(DataType::Float64, true), true),
            Field::new("qc_saturation", list(DataType::Float64, true), true),
            Field::new("qc_foreground", list(DataType::Float64, true), true),
            Field::new("nuclei_count", DataType::Int32, true),
            Field::new("qc_flags", list(DataType::Utf8, true), true),
            Field::new("qc_pass", DataType::Boolean, true),
            Field::new("source_paths", list(DataType::Utf8, true), true),
            Field::new("source_etags", list(DataType::Utf8, true), true),
            Field::new("source_sizes", list(DataType::Int64, true), true),
            Field::new("pipeline", DataType::Utf8, false),
            Field::new("pipeline_hash", DataType::Utf8, false),
            Field::new("run_id", DataType::Utf8, false),
            Field::new("build_id", DataType::Utf8, false),
            Field::new(TENSOR, DataType::Binary, false).with_metadata(HashMap::from([
                (
                    "cellshard.shape".to_string(),
                    format!("[{},{},{}]", self.shape[0], self.shape[1], self.shape[2]),
                ),
                ("cellshard.dtype".to_string(), self.dtype.clone()),
                (
                    "cellshard.channel_names".to_string(),
                    serde_json::to_string(&self.channel_names).unwrap_or_default(),
                ),
                (
                    "cellshard.layout".to_string(),
                    "CHW,little-endian".to_string(),
                ),
            ])),
        ]);
        Arc::new(Schema::new(fields))
    }

    /// Rows of the plate build `build_id` to a batch (rows should already be in plate,
    /// well, site order).
    pub fn batch(&self, rows: &[SiteRow], build_id: &str) -> Result<RecordBatch> {
        let n = rows.len();
        let s = |f: &dyn Fn(&SiteRow) -> &str| -> ArrayRef {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            rows.iter().for_each(|r| b.append_value(f(r)));
            Arc::new(b.finish())
        };
        let so = |f: &dyn Fn(&SiteRow) -> Option<&str>| -> ArrayRef {
            let mut b = StringBuilder::with_capacity(n, n * 8);
            rows.iter().for_each(|r| b.append_option(f(r)));
            Arc::new(b.finish())
        };
        let i = |f: &dyn Fn(&SiteRow) -> Option<i32>| -> ArrayRef {
            let mut b = Int32Builder::with_capacity(n);
            rows.iter().for_each(|r| b.append_option(f(r)));
            Arc::new(b.finish())
        };
        let konst_i = |v: u32| -> ArrayRef {
            let mut b = Int32Builder::with_capacity(n);
            (0..n).for_each(|_| b.append_value(v as i32));
            Arc::new(b.finish())
        };
        let konst_s = |v: &str| -> ArrayRef {
            let mut b = StringBuilder::with_capacity(n, n * v.len());
            (0..n).for_each(|_| b.append_value(v));
            Arc::new(b.finish())
        };
        let f64_list = |f: &dyn Fn(&SiteRow) -> &[f64]| -> ArrayRef {
            let mut b = ListBuilder::new(Float64Builder::new());
            for r in rows {
                f(r).iter().for_each(|v| b.values().append_value(*v));
                b.append(true);
            }
            Arc::new(b.finish())
        };
        let mut cols: Vec<ArrayRef> = vec![
            s(&|r| &r.site_id),
            s(&|r| &r.well_id),
            s(&|r| &r.cell_type),
            so(&|r| r.dataset.as_deref()),
            s(&|r| &r.experiment),
            i(&|r| Some(r.plate)),
            s(&|r| &r.well),
            i(&|r| Some(r.site)),
            s(&|r| &r.well_type),
            i(&|r| r.sirna_id),
        ];
        for idx in 0..self.extra_columns.len() {
            cols.push(so(&|r| r.extra.get(idx).and_then(|v| v.as_deref())));
        }
        cols.push(konst_i(self.shape[0]));
        cols.push(konst_i(self.shape[1]));
        cols.push(konst_i(self.shape[2]));
        cols.push(konst_s(&self.dtype));
        cols.push(f64_list(&|r| &r.channel_mean));
        cols.push(f64_list(&|r| &r.channel_std));
        cols.push(f64_list(&|r| &r.raw_channel_mean));
        cols.push(f64_list(&|r| &r.qc.focus));
        cols.push(f64_list(&|r| &r.qc.saturation));
        cols.push(f64_list(&|r| &r.qc.foreground));
        cols.push(i(&|r| Some(r.qc.nuclei)));
        let mut flags = ListBuilder::new(StringBuilder::new());
        for r in rows {
            r.qc.flags
                .iter()
                .for_each(|f| flags.values().append_value(f));
            flags.append(true);
        }
        cols.push(Arc::new(flags.finish()));
        cols.push(Arc::new(
            rows.iter()
                .map(|r| Some(r.qc.flags.is_empty()))
                .collect::<arrow::array::BooleanArray>(),
        ));
        let mut paths = ListBuilder::new(StringBuilder::new());
        let mut etags = ListBuilder::new(StringBuilder::new());
        let mut sizes = ListBuilder::new(Int64Builder::new());
        for r in rows {
            r.source_paths
                .iter()
                .for_each(|p| paths.values().append_value(p));
            paths.append(true);
            r.source_etags
                .iter()
                .for_each(|e| etags.values().append_option(e.as_deref()));
            etags.append(true);
            r.source_sizes
                .iter()
                .for_each(|v| sizes.values().append_value(*v));
            sizes.append(true);
        }
        cols.push(Arc::new(paths.finish()));
        cols.push(Arc::new(etags.finish()));
        cols.push(Arc::new(sizes.finish()));
        cols.push(konst_s(&self.pipeline));
        cols.push(konst_s(&self.pipeline_hash));
        cols.push(konst_s(&self.run_id));
        cols.push(konst_s(build_id));
        let bytes: usize = rows.iter().map(|r| r.tensor.len()).sum();
        let mut t = BinaryBuilder::with_capacity(n, bytes);
        rows.iter().for_each(|r| t.append_value(&r.tensor));
        cols.push(Arc::new(t.finish()));
        RecordBatch::try_new(self.schema(), cols).map_err(|source| Error::Arrow {
            table: "sites".into(),
            source,
        })
    }
}
