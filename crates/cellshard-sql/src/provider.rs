//! A store table as a DataFusion table: one Delta version pinned, its file list and
//! partition values taken from the log, read by DataFusion's own Parquet scan.
//!
//! The plan holds stock nodes only (`DataSourceExec` over Parquet), so it serializes with
//! DataFusion's protobuf codec and runs on Ballista executors unchanged; the table itself
//! travels as [`StoreTable::encode`] (the file list, not a path to re-read), so every node
//! reads exactly the pinned version. Valid while a table has no deletion vectors and no
//! column mapping, which is checked: such a table is refused with the reason.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, ScalarValue, plan_datafusion_err};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::helpers::{expr_applicable_for_cols, filter_partitioned_file};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::udf::TensorSpec;
use crate::{Error, Result};

/// One data file of the pinned version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DataFile {
    /// Object-store path (from the store's root, as the scan's object store sees it).
    path: String,
    /// Size in bytes.
    size: u64,
    /// Partition values, in the order of the table's partition columns.
    partitions: Vec<Option<String>>,
}

/// What [`StoreTable::encode`] writes (the schema travels beside it, in the plan).
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    name: String,
    url: String,
    version: i64,
    store_url: String,
    partition_columns: Vec<String>,
    files: Vec<DataFile>,
}

/// A Delta table of the store at one version.
#[derive(Debug, Clone)]
pub struct StoreTable {
    name: String,
    /// The table's root URL (for messages).
    url: String,
    version: i64,
    /// Scheme and authority of the store (`file://`, `s3://bucket`).
    store_url: ObjectStoreUrl,
    /// File columns, then partition columns (dictionary-encoded strings).
    schema: SchemaRef,
    partition_columns: Vec<String>,
    files: Vec<DataFile>,
}

impl StoreTable {
    /// The table `name` of a store as `table` (a loaded Delta version) has it; `loc` is the
    /// table's location, whose object store the scan reads through.
    pub fn from_delta(
        name: &str,
        table: &DeltaTable,
        loc: &cellshard_store::Location,
    ) -> Result<Self> {
        let refuse = |message: String| Error::Register {
            table: name.to_string(),
            message,
        };
        let snapshot = table.snapshot().map_err(|e| refuse(e.to_string()))?;
        let version = snapshot.version();
        let config = snapshot.metadata().configuration();
        if let Some(mode) = config.get("delta.columnMapping.mode")
            && !mode.eq_ignore_ascii_case("none")
        {
            return Err(refuse(format!(
                "version {version} uses column mapping (delta.columnMapping.mode = {mode}); cellshard reads tables whose Parquet columns carry the logical names, so rewrite it without column mapping"
            )));
        }
        let partition_columns = snapshot.metadata().partition_columns().to_vec();
        let arrow = snapshot.snapshot().arrow_schema();
        let mut fields: Vec<Field> = arrow
            .fields()
            .iter()
            .filter(|f| !partition_columns.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        // Columns the table gained after it was written read as NULL until a run adds them.
        for late in cellshard_store::schema::late_fields(name) {
            if !fields.iter().any(|f| f.name() == late.name()) {
                fields.push(late);
            }
        }
        for p in &partition_columns {
            let f = arrow
                .field_with_name(p)
                .map_err(|_| refuse(format!("partition column {p} is not in the schema")))?;
            if f.data_type() != &DataType::Utf8 {
                return Err(refuse(format!(
                    "partition column {p} is {}, only string partition columns are read",
                    f.data_type()
                )));
            }
            fields.push(Field::new(p, partition_type(), f.is_nullable()));
        }
        let prefix = loc.prefix.as_ref().trim_end_matches('/').to_string();
        let mut files = Vec::new();
        for f in snapshot.log_data().iter() {
            let rel = f.path();
            if let Some(dv) = f.deletion_vector_descriptor() {
                return Err(refuse(format!(
                    "version {version} has deletion vectors (file {rel}, {} rows deleted); cellshard reads whole files, so purge them first (OPTIMIZE with deletion vectors materialized)",
                    dv.cardinality
                )));
            }
            if rel.contains("://") {
                return Err(refuse(format!(
                    "file {rel} is outside the table (an absolute path); cellshard reads files under the table's root only"
                )));
            }
            let path = if prefix.is_empty() {
                rel.to_string()
            } else {
                format!("{prefix}/{rel}")
            };
            let path = Path::parse(&path).unwrap_or_else(|_| Path::from(path.as_str()));
            let map = f.partition_values_map();
            files.push(DataFile {
                path: path.to_string(),
                size: f.size().max(0).unsigned_abs(),
                partitions: partition_columns
                    .iter()
                    .map(|p| map.get(p).cloned().flatten())
                    .collect(),
            });
        }
        // The log's order is the replay order; sort so plans are stable.
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut base = loc.url.clone();
        base.set_path("/");
        let store_url = ObjectStoreUrl::parse(base.as_str()).map_err(|e| refuse(e.to_string()))?;
        Ok(Self {
            name: name.to_string(),
            url: loc.url.to_string(),
            version: version as i64,
            store_url,
            schema: Arc::new(Schema::new(fields)),
            partition_columns,
            files,
        })
    }

    /// The same table with the tensor column's shape and dtype in its field metadata (for
    /// stores whose Delta schema lost it), so tensor functions find it on every node.
    pub fn with_tensor_spec(mut self, column: &str, spec: TensorSpec) -> Self {
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == column && TensorSpec::from_field(f).is_none() {
                    let mut m = f.metadata().clone();
                    m.insert(
                        "cellshard.shape".into(),
                        format!("[{},{},{}]", spec.channels, spec.height, spec.width),
                    );
                    m.insert("cellshard.dtype".into(), spec.dtype.name().into());
                    f.as_ref().clone().with_metadata(m)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        self.schema = Arc::new(Schema::new(fields));
        self
    }

    /// The Delta version this table reads.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Number of data files in the version.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The table as bytes, for plans sent to other nodes (see [`StoreTable::decode`]).
    pub fn encode(&self) -> std::result::Result<Vec<u8>, DataFusionError> {
        let wire = Wire {
            name: self.name.clone(),
            url: self.url.clone(),
            version: self.version,
            store_url: self.store_url.as_str().to_string(),
            partition_columns: self.partition_columns.clone(),
            files: self.files.clone(),
        };
        serde_json::to_vec(&wire).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// A table from [`StoreTable::encode`]'s bytes and the schema the plan carries.
    pub fn decode(buf: &[u8], schema: SchemaRef) -> std::result::Result<Self, DataFusionError> {
        let w: Wire =
            serde_json::from_slice(buf).map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Self {
            name: w.name,
            url: w.url,
            version: w.version,
            store_url: ObjectStoreUrl::parse(&w.store_url)?,
            schema,
            partition_columns: w.partition_columns,
            files: w.files,
        })
    }

    fn file_schema(&self) -> SchemaRef {
        let n = self.schema.fields().len() - self.partition_columns.len();
        Arc::new(Schema::new_with_metadata(
            self.schema.fields()[..n].to_vec(),
            self.schema.metadata().clone(),
        ))
    }

    fn partition_fields(&self) -> Vec<Arc<Field>> {
        let n = self.schema.fields().len() - self.partition_columns.len();
        self.schema.fields()[n..].to_vec()
    }

    /// A filter decided by partition values alone: it names columns, all of them
    /// partition columns (one naming none is left to the scan, never to file pruning).
    fn is_partition_filter(&self, f: &Expr) -> bool {
        let cols: Vec<&str> = self.partition_columns.iter().map(String::as_str).collect();
        !f.column_refs().is_empty() && expr_applicable_for_cols(&cols, f)
    }

    fn partitioned_file(&self, f: &DataFile) -> PartitionedFile {
        // The path is a raw key (a partition directory may hold `%`): parsed, not encoded
        // again as `PartitionedFile::new` would.
        let location = object_store::path::Path::parse(&f.path)
            .unwrap_or_else(|_| object_store::path::Path::from(f.path.as_str()));
        PartitionedFile::new_from_meta(object_store::ObjectMeta {
            location,
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size: f.size,
            e_tag: None,
            version: None,
        })
        .with_partition_values(
            f.partitions
                .iter()
                .map(|v| {
                    ScalarValue::Dictionary(
                        Box::new(DataType::UInt16),
                        Box::new(ScalarValue::Utf8(v.clone())),
                    )
                })
                .collect(),
        )
    }
}

/// Partition columns are dictionary-encoded strings, as in DataFusion's listing tables.
fn partition_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8))
}

#[async_trait::async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.is_partition_filter(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let partition_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| self.is_partition_filter(f))
            .cloned()
            .collect();
        let part_schema = DFSchema::try_from(Arc::new(Schema::new(self.partition_fields())))?;
        let mut files = Vec::new();
        for f in &self.files {
            if let Some(pf) =
                filter_partitioned_file(self.partitioned_file(f), &partition_filters, &part_schema)?
            {
                files.push(pf);
            }
        }
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // Whole files, spread over the target partitions by size (largest first, each to
        // the lightest group), so tasks are even; the Parquet scan splits no further.
        let groups = state.config().target_partitions().max(1).min(files.len());
        files.sort_by(|a, b| {
            b.object_meta
                .size
                .cmp(&a.object_meta.size)
                .then(a.object_meta.location.cmp(&b.object_meta.location))
        });
        let mut grouped: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); groups];
        for f in files {
            let g = grouped
                .iter_mut()
                .min_by_key(|(bytes, _)| *bytes)
                .ok_or_else(|| plan_datafusion_err!("no file groups"))?;
            g.0 += f.object_meta.size;
            g.1.push(f);
        }
        let file_groups = grouped
            .into_iter()
            .map(|(_, mut g)| {
                g.sort_by(|a, b| a.object_meta.location.cmp(&b.object_meta.location));
                FileGroup::new(g)
            })
            .collect();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let table_schema = TableSchema::builder(self.file_schema())
            .with_table_partition_cols(self.partition_fields())
            .build();
        let source = format.file_source(table_schema);
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(file_groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

impl std::fmt::Display for StoreTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{} ({})", self.name, self.version, self.url)
    }
}
