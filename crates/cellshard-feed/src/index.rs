//! The rows a feed reads: the `sites` files at a pinned Delta version, their metadata
//! columns (never the tensor), and the rows an SQL predicate selects, in `site_id` order.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use bytes::Bytes;
use cellshard_store::Location;
use cellshard_store::schema::TENSOR;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

use crate::{Error, Result};

/// One `sites` data file.
#[derive(Debug, Clone)]
pub struct FileRef {
    /// Object path.
    pub path: Path,
    /// Size in bytes.
    pub size: u64,
    /// Footer and page index, read once.
    pub meta: ArrowReaderMetadata,
}

/// Parquet reads through an object store, by byte range.
pub(crate) struct ObjectReader {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) path: Path,
    pub(crate) size: u64,
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    /// All of a row group's metadata column chunks in one request: the store reads a
    /// local file's ranges under one open and merges nearby ranges of a remote one.
    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let meta = ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// Shape and element type of the tensor column, from its field metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorShape {
    /// Channels, height, width.
    pub dims: [usize; 3],
    /// Bytes per element.
    pub element_bytes: usize,
}

impl TensorShape {
    /// Bytes of one tensor.
    pub fn bytes(&self) -> usize {
        self.dims.iter().product::<usize>() * self.element_bytes
    }

    fn from_field(f: &Field) -> Option<Self> {
        let shape = f.metadata().get("cellshard.shape")?;
        let dims: Vec<usize> = shape
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|d| d.trim().parse().ok())
            .collect::<Option<_>>()?;
        let element_bytes = match f.metadata().get("cellshard.dtype")?.as_str() {
            "uint8" => 1,
            "uint16" | "float16" => 2,
            "float32" => 4,
            _ => return None,
        };
        Some(TensorShape {
            dims: dims.try_into().ok()?,
            element_bytes,
        })
    }
}

/// The selected rows, in `site_id` order.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The files.
    pub files: Vec<FileRef>,
    /// Per row: file index and row within the file.
    pub at: Vec<(u32, u32)>,
    /// Per row: site id.
    pub site_ids: Vec<String>,
    /// Per row: the metadata columns asked for.
    pub meta: RecordBatch,
    /// The tensor's shape.
    pub shape: TensorShape,
    /// Channel names in stacking order (`cellshard.channel_names`; `w1`.. when the files
    /// name none).
    pub channel_names: Vec<String>,
}

/// A `sites` data file as the log lists it: path, size, partition values.
pub(crate) type ListedFile = (String, u64, Vec<(String, Option<String>)>);

/// The files whose partition values can satisfy `predicate`: each top-level `AND` term
/// that names only partition columns is evaluated on one row per file, before any file
/// is opened. Terms naming other columns (or a predicate that does not parse here) prune
/// nothing; `select` applies the whole predicate to the rows.
pub(crate) async fn prune_by_partitions(
    files: Vec<ListedFile>,
    predicate: Option<&str>,
) -> Result<Vec<ListedFile>> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    let (Some(predicate), Some(first)) = (predicate, files.first()) else {
        return Ok(files);
    };
    if first.2.is_empty() {
        return Ok(files);
    }
    let Ok(expr) = Parser::new(&GenericDialect {})
        .try_with_sql(predicate)
        .and_then(|mut p| p.parse_expr())
    else {
        return Ok(files);
    };
    let mut terms = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                stack.push(*left);
                stack.push(*right);
            }
            Expr::Nested(inner) => stack.push(*inner),
            other => terms.push(other),
        }
    }
    // More files than a u32 can number: prune nothing.
    let Ok(count) = u32::try_from(files.len()) else {
        return Ok(files);
    };
    let names: Vec<&str> = first.2.iter().map(|(k, _)| k.as_str()).collect();
    let mut fields = vec![Field::new("_i", DataType::UInt32, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from_iter_values(0..count))];
    for (c, name) in names.iter().enumerate() {
        fields.push(Field::new(*name, DataType::Utf8, true));
        let values: Vec<Option<&str>> = files
            .iter()
            .map(|f| f.2.get(c).and_then(|(_, v)| v.as_deref()))
            .collect();
        cols.push(Arc::new(StringArray::from(values)));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    let ctx = SessionContext::new();
    ctx.register_table(
        "files",
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
    )?;
    let mut keep = vec![true; files.len()];
    for term in terms {
        // A term over other columns does not plan against this table: it prunes nothing.
        let Ok(df) = ctx.sql(&format!("SELECT _i FROM files WHERE {term}")).await else {
            continue;
        };
        let Ok(rows) = df.collect().await else {
            continue;
        };
        let mut pass = vec![false; files.len()];
        for b in &rows {
            for i in b.column(0).as_primitive::<UInt32Type>().values() {
                pass[*i as usize] = true;
            }
        }
        keep.iter_mut().zip(pass).for_each(|(k, p)| *k &= p);
    }
    Ok(files
        .into_iter()
        .zip(keep)
        .filter_map(|(f, k)| k.then_some(f))
        .collect())
}

/// Read the metadata columns of every `sites` file of `table` and select rows with
/// `predicate`; `keep` then filters rows by (experiment, plate, well).
pub(crate) async fn select(
    sites: &Location,
    files: Vec<ListedFile>,
    predicate: Option<&str>,
    columns: &[String],
    keep: &(dyn Fn(&str, i64, &str) -> bool + Sync),
) -> Result<Selection> {
    let mut refs = Vec::new();
    let mut batches = Vec::new();
    let mut shape = None;
    let mut names: Option<Vec<String>> = None;
    let mut loaded = futures::stream::iter(files.into_iter().enumerate())
        .map(|(i, listed)| load_file(sites, i, listed))
        .buffered(FILES_OPENED);
    while let Some(f) = loaded.try_next().await? {
        shape = shape.or(f.shape);
        names = names.or(f.names);
        batches.extend(f.batches);
        refs.push(f.file);
    }
    let shape = shape.ok_or_else(|| Error::Store {
        url: sites.url.to_string(),
        message: "no file records the tensor's shape (cellshard.shape)".into(),
    })?;
    let Some(first) = batches.first() else {
        return Err(Error::Store {
            url: sites.url.to_string(),
            message: "the sites table holds no rows at this version".into(),
        });
    };
    let ctx = SessionContext::new();
    // The predicate and the columns are checked against the table as users see it, so an
    // error never names the internal position columns (`_file`, `_row`).
    let visible: Vec<usize> = (2..first.num_columns()).collect();
    let user_batches = batches
        .iter()
        .map(|b| b.project(&visible))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let user_schema = Arc::new(first.schema().project(&visible)?);
    ctx.register_table(
        "sites",
        Arc::new(MemTable::try_new(user_schema, vec![user_batches])?),
    )?;
    let positions = MemTable::try_new(first.schema(), vec![batches.clone()])?;
    ctx.register_table(POSITIONS, Arc::new(positions))?;
    let mut quoted: Vec<String> = [
        "\"_file\"",
        "\"_row\"",
        "site_id AS \"_site\"",
        "experiment AS \"_experiment\"",
        "plate AS \"_plate\"",
        "well AS \"_well\"",
    ]
    .map(String::from)
    .to_vec();
    quoted.extend(columns.iter().map(|c| format!("\"{c}\"")));
    let bad = |e: datafusion::error::DataFusionError| Error::Predicate {
        predicate: predicate.unwrap_or("").to_string(),
        message: e.to_string(),
    };
    let user_columns: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let check = format!(
        "SELECT {} FROM sites WHERE {}",
        if user_columns.is_empty() {
            "1".to_string()
        } else {
            user_columns.join(", ")
        },
        predicate.unwrap_or("true")
    );
    ctx.sql(&check).await.map_err(bad)?;
    let sql = format!(
        "SELECT {} FROM {POSITIONS} AS sites WHERE {} ORDER BY site_id",
        quoted.join(", "),
        predicate.unwrap_or("true")
    );
    let rows: Vec<RecordBatch> = ctx
        .sql(&sql)
        .await
        .map_err(bad)?
        .collect()
        .await
        .map_err(bad)?;
    let schema = rows
        .first()
        .map_or_else(|| Arc::new(Schema::empty()), |b| b.schema());
    let all = arrow::compute::concat_batches(&schema, &rows)?;
    let mut at = Vec::new();
    let mut site_ids = Vec::new();
    let mut kept = Vec::new();
    if all.num_rows() > 0 {
        let file = all.column(0).as_primitive::<UInt32Type>();
        let row = all.column(1).as_primitive::<UInt32Type>();
        let site = arrow::compute::cast(all.column(2), &DataType::Utf8)?;
        let exp = arrow::compute::cast(all.column(3), &DataType::Utf8)?;
        let plate = arrow::compute::cast(all.column(4), &DataType::Int64)?;
        let well = arrow::compute::cast(all.column(5), &DataType::Utf8)?;
        let (site, exp, well) = (
            site.as_string::<i32>(),
            exp.as_string::<i32>(),
            well.as_string::<i32>(),
        );
        let plate = plate.as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..all.num_rows() {
            if keep(exp.value(i), plate.value(i), well.value(i)) {
                at.push((file.value(i), row.value(i)));
                site_ids.push(site.value(i).to_string());
                kept.push(u32::try_from(i).map_err(|_| Error::Store {
                    url: sites.url.to_string(),
                    message: "the selection holds more than 2^32 rows".into(),
                })?);
            }
        }
    }
    let user: Vec<usize> = (6..all.num_columns()).collect();
    let meta = take_rows(&nullable(&all.project(&user)?)?, &UInt32Array::from(kept))?;
    Ok(Selection {
        files: refs,
        at,
        site_ids,
        meta,
        shape,
        channel_names: names
            .filter(|n| n.len() == shape.dims[0])
            .unwrap_or_else(|| (1..=shape.dims[0]).map(|c| format!("w{c}")).collect()),
    })
}

/// The selection's table with its internal position columns, never named to users.
const POSITIONS: &str = "cellshard_positions";

/// `batch` with every column nullable: a padded slot of a batch has a null row.
fn nullable(batch: &RecordBatch) -> Result<RecordBatch> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        batch.columns().to_vec(),
        &options,
    )?)
}

/// `batch` with its file index, row numbers (`rows`, one per row of `batch`) and partition
/// values as columns.
/// Data files whose footers and metadata columns are read at once.
const FILES_OPENED: usize = 8;

/// One data file as the selection needs it.
struct LoadedFile {
    file: FileRef,
    /// Its rows' metadata columns, with their positions.
    batches: Vec<RecordBatch>,
    shape: Option<TensorShape>,
    names: Option<Vec<String>>,
}

/// Read data file `i` of the listing: its footer and page index, then every column but
/// the tensor.
async fn load_file(sites: &Location, i: usize, listed: ListedFile) -> Result<LoadedFile> {
    let (relative, size, partitions) = listed;
    let file = u32::try_from(i).map_err(|_| Error::Store {
        url: sites.url.to_string(),
        message: "the sites table has more than 2^32 files".into(),
    })?;
    let path = sites.path(&relative);
    let read_err = |e: ParquetError| Error::Read {
        path: sites.display(&path),
        message: e.to_string(),
    };
    let mut reader = ObjectReader {
        store: sites.store.clone(),
        path: path.clone(),
        size,
    };
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let meta = ArrowReaderMetadata::load_async(&mut reader, options)
        .await
        .map_err(read_err)?;
    let schema = meta.schema().clone();
    let tensor = schema
        .index_of(TENSOR)
        .map_err(|_| read_err(ParquetError::General("no tensor column".into())))?;
    let shape = TensorShape::from_field(schema.field(tensor));
    let names = schema
        .field(tensor)
        .metadata()
        .get("cellshard.channel_names")
        .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
        .filter(|v| !v.is_empty());
    let roots: Vec<usize> = (0..schema.fields().len())
        .filter(|&c| c != tensor)
        .collect();
    let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
    let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta.clone())
        .with_projection(mask)
        .build()
        .map_err(read_err)?;
    let mut row = 0u32;
    let parts: Vec<_> = stream.try_collect().await.map_err(read_err)?;
    let mut batches = Vec::with_capacity(parts.len());
    for b in parts {
        let next = u32::try_from(b.num_rows())
            .ok()
            .and_then(|n| row.checked_add(n))
            .ok_or_else(|| read_err(ParquetError::General("more than 2^32 rows".into())))?;
        batches.push(with_position(&b, file, row..next, &partitions)?);
        row = next;
    }
    Ok(LoadedFile {
        file: FileRef { path, size, meta },
        batches,
        shape,
        names,
    })
}

fn with_position(
    batch: &RecordBatch,
    file: u32,
    rows: Range<u32>,
    partitions: &[(String, Option<String>)],
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut fields: Vec<Field> = vec![
        Field::new("_file", DataType::UInt32, false),
        Field::new("_row", DataType::UInt32, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(vec![file; n])),
        Arc::new(UInt32Array::from_iter_values(rows)),
    ];
    for (name, value) in partitions {
        fields.push(Field::new(name, DataType::Utf8, true));
        cols.push(Arc::new(StringArray::from(vec![value.as_deref(); n])));
    }
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        fields.push(f.as_ref().clone().with_metadata(Default::default()));
        cols.push(c.clone());
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// Rows `idx` of `batch` (null rows where `idx` is null), also for a batch of no columns.
pub(crate) fn take_rows(batch: &RecordBatch, idx: &UInt32Array) -> Result<RecordBatch> {
    if batch.num_columns() > 0 {
        return Ok(arrow::compute::take_record_batch(batch, idx)?);
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(idx.len()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        Vec::new(),
        &options,
    )?)
}
