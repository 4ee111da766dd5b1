//! One Parquet data file of a Delta table, written the one way the store writes data.
//!
//! [`ShardFile::write`] encodes a batch (Parquet pages, ZSTD included) on the caller's
//! thread, which must not be an async runtime thread for large batches, and hands the
//! finished bytes to a multipart upload whose parts go out on the runtime while encoding
//! goes on. [`ShardFile::finish`] completes the upload and returns the Delta `Add` action
//! with the file's partition values and its data-skipping statistics (row count, min, max
//! and null count of the chosen columns), ready for a commit. Partition columns are not
//! stored in the file, as Delta requires; every row of one file has the same partition
//! values.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, Schema, SchemaRef};
use deltalake::kernel::Add;
use object_store::{ObjectStoreExt, WriteMultipart};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

use crate::{Error, Location, Result};

/// Delta's name for a null partition value in a path.
const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Upload parts in flight per file before [`ShardFile::wait_for_capacity`] waits.
const UPLOAD_PARTS_IN_FLIGHT: usize = 4;

/// What every file of one table write shares.
#[derive(Debug, Clone)]
pub struct FileLayout {
    /// The table's root.
    pub table: Location,
    /// The table schema (partition columns included).
    pub schema: SchemaRef,
    /// Partition columns, in path order.
    pub partitions: Vec<String>,
    /// Columns that get min/max statistics in the `Add` action.
    pub stats_columns: Vec<String>,
    /// Parquet settings.
    pub properties: WriterProperties,
}

impl FileLayout {
    /// The schema of the data files: the table schema without its partition columns.
    pub fn file_schema(&self) -> SchemaRef {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !self.partitions.contains(f.name()))
            .cloned()
            .collect();
        Arc::new(Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ))
    }

    /// Split `batch` (in the table schema) into groups of rows that share partition values,
    /// each without its partition columns, in order of first appearance.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<(PartitionValues, RecordBatch)>> {
        let parts: Vec<ArrayRef> = self
            .partitions
            .iter()
            .map(|p| {
                let col = batch.column_by_name(p).ok_or_else(|| Error::Write {
                    url: self.table.url.to_string(),
                    message: format!("partition column {p:?} is missing from the rows"),
                })?;
                arrow::compute::cast(col, &DataType::Utf8).map_err(|e| self.arrow_err(e))
            })
            .collect::<Result<_>>()?;
        let mut groups: Vec<(PartitionValues, Vec<u32>)> = Vec::new();
        for row in 0..batch.num_rows() {
            let index = u32::try_from(row).map_err(|_| Error::Write {
                url: self.table.url.to_string(),
                message: format!("a batch of {} rows is over 2^32 rows", batch.num_rows()),
            })?;
            let values: PartitionValues = parts
                .iter()
                .map(|a| {
                    let a = a.as_string::<i32>();
                    a.is_valid(row).then(|| a.value(row).to_string())
                })
                .collect();
            match groups.iter_mut().find(|(v, _)| *v == values) {
                Some((_, rows)) => rows.push(index),
                None => groups.push((values, vec![index])),
            }
        }
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| !self.partitions.contains(batch.schema().field(i).name()))
            .collect();
        let data = batch.project(&keep).map_err(|e| self.arrow_err(e))?;
        let file_schema = self.file_schema();
        groups
            .into_iter()
            .map(|(values, rows)| {
                let rows = if rows.len() == batch.num_rows() {
                    data.clone()
                } else {
                    let idx = arrow::array::UInt32Array::from(rows);
                    arrow::compute::take_record_batch(&data, &idx).map_err(|e| self.arrow_err(e))?
                };
                let rows = RecordBatch::try_new(file_schema.clone(), rows.columns().to_vec())
                    .map_err(|e| self.arrow_err(e))?;
                Ok((values, rows))
            })
            .collect()
    }

    /// A new file `name` in the partition `values`.
    pub async fn file(&self, values: &PartitionValues, name: &str) -> Result<ShardFile> {
        let mut dir = String::new();
        for (col, v) in self.partitions.iter().zip(values) {
            let v = match v.as_deref() {
                None => NULL_PARTITION.to_string(),
                // Delta reads an empty partition value as null.
                Some("") => {
                    return Err(Error::Write {
                        url: self.table.url.to_string(),
                        message: format!("an empty value of partition column {col:?}"),
                    });
                }
                Some(v) => crate::location::path_segment(v),
            };
            dir.push_str(&format!("{col}={v}/"));
        }
        let relative = format!("{dir}{name}");
        let path = self.table.path(&relative);
        let upload = self
            .table
            .store
            .put_multipart(&path)
            .await
            .map_err(|source| Error::ObjectStore {
                url: self.table.display(&path),
                source,
            })?;
        let encoder = ArrowWriter::try_new(
            Vec::new(),
            self.file_schema(),
            Some(self.properties.clone()),
        )
        .map_err(|e| self.parquet_err(&relative, e))?;
        let file_schema = self.file_schema();
        let stats = file_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| self.stats_columns.contains(f.name()))
            .map(|(i, f)| ColumnStats::new(i, f.name()))
            .collect();
        Ok(ShardFile {
            url: self.table.display(&path),
            relative,
            partition_values: self
                .partitions
                .iter()
                .cloned()
                .zip(values.clone())
                .collect(),
            encoder,
            upload: WriteMultipart::new(upload),
            runtime: tokio::runtime::Handle::current(),
            stats,
            rows: 0,
            bytes: 0,
        })
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> Error {
        Error::Write {
            url: self.table.url.to_string(),
            message: e.to_string(),
        }
    }

    fn parquet_err(&self, relative: &str, e: parquet::errors::ParquetError) -> Error {
        Error::Write {
            url: format!("{}{relative}", self.table.url),
            message: e.to_string(),
        }
    }
}

/// Values of the partition columns, in [`FileLayout::partitions`] order.
pub type PartitionValues = Vec<Option<String>>;

/// A data file being written; see the module docs.
pub struct ShardFile {
    url: String,
    relative: String,
    partition_values: HashMap<String, Option<String>>,
    encoder: ArrowWriter<Vec<u8>>,
    upload: WriteMultipart,
    runtime: tokio::runtime::Handle,
    stats: Vec<ColumnStats>,
    rows: u64,
    bytes: u64,
}

impl std::fmt::Debug for ShardFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardFile")
            .field("url", &self.url)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl ShardFile {
    /// Encode `batch` (in the file schema) on this thread and queue the finished bytes for
    /// upload. Row groups are cut by the writer properties' row limit.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.encoder.write(batch).map_err(|e| self.err(e))?;
        self.rows += batch.num_rows() as u64;
        for s in &mut self.stats {
            s.add(batch.column(s.index));
        }
        self.drain();
        Ok(())
    }

    /// Wait until few enough upload parts are in flight (backpressure on the encoder).
    pub async fn wait_for_capacity(&mut self) -> Result<()> {
        self.upload
            .wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT)
            .await
            .map_err(|source| Error::ObjectStore {
                url: self.url.clone(),
                source,
            })
    }

    /// The file's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Close the file on this thread and hand its tail to the upload; then call
    /// [`Self::finish`].
    pub fn close(&mut self) -> Result<()> {
        self.encoder.finish().map_err(|e| self.err(e))?;
        self.drain();
        Ok(())
    }

    /// Complete the upload (after [`Self::close`]) and return the file's `Add` action.
    pub async fn finish(self) -> Result<Add> {
        let ShardFile {
            url,
            relative,
            partition_values,
            upload,
            stats,
            rows,
            bytes,
            ..
        } = self;
        upload.finish().await.map_err(|source| Error::ObjectStore {
            url: url.clone(),
            source,
        })?;
        let mut min = Map::new();
        let mut max = Map::new();
        let mut nulls = Map::new();
        for s in stats {
            nulls.insert(s.name.clone(), Value::from(s.nulls));
            if let (Some(lo), Some(hi)) = (s.min, s.max) {
                min.insert(s.name.clone(), lo);
                max.insert(s.name, hi);
            }
        }
        let stats = serde_json::json!({
            "numRecords": rows,
            "minValues": min,
            "maxValues": max,
            "nullCount": nulls,
        });
        Ok(Add {
            path: relative,
            partition_values,
            size: bytes as i64,
            modification_time: chrono::Utc::now().timestamp_millis(),
            data_change: true,
            stats: Some(stats.to_string()),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        })
    }

    /// Move the encoder's finished bytes to the upload. Part uploads are spawned on the
    /// runtime the file was created on, so this thread only copies bytes.
    fn drain(&mut self) {
        let buf = self.encoder.inner_mut();
        if buf.is_empty() {
            return;
        }
        self.bytes += buf.len() as u64;
        let _runtime = self.runtime.enter();
        self.upload.write(buf);
        buf.clear();
    }

    fn err(&self, e: parquet::errors::ParquetError) -> Error {
        Error::Write {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }
}

/// Running min, max and null count of one column, as Delta statistics JSON values.
struct ColumnStats {
    index: usize,
    name: String,
    min: Option<Value>,
    max: Option<Value>,
    nulls: u64,
}

impl ColumnStats {
    fn new(index: usize, name: &str) -> Self {
        ColumnStats {
            index,
            name: name.to_string(),
            min: None,
            max: None,
            nulls: 0,
        }
    }

    fn add(&mut self, col: &ArrayRef) {
        self.nulls += col.null_count() as u64;
        let (lo, hi): (Option<Value>, Option<Value>) = match col.data_type() {
            DataType::Int32 => {
                let a = col.as_primitive::<Int32Type>();
                (
                    arrow::compute::min(a).map(Value::from),
                    arrow::compute::max(a).map(Value::from),
                )
            }
            DataType::Int64 => {
                let a = col.as_primitive::<Int64Type>();
                (
                    arrow::compute::min(a).map(Value::from),
                    arrow::compute::max(a).map(Value::from),
                )
            }
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                (
                    arrow::compute::min_string(a).map(Value::from),
                    arrow::compute::max_string(a).map(Value::from),
                )
            }
            // Other types get a null count only.
            _ => (None, None),
        };
        if let Some(lo) = lo
            && self.min.as_ref().is_none_or(|m| less(&lo, m))
        {
            self.min = Some(lo);
        }
        if let Some(hi) = hi
            && self.max.as_ref().is_none_or(|m| less(m, &hi))
        {
            self.max = Some(hi);
        }
    }
}

/// `a < b` for two statistics values of one column (both numbers or both strings).
fn less(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_i64() < y.as_i64(),
        (Value::String(x), Value::String(y)) => x < y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::Field;

    fn layout(table: Location) -> FileLayout {
        FileLayout {
            table,
            schema: Arc::new(Schema::new(vec![
                Field::new("part", DataType::Utf8, true),
                Field::new("n", DataType::Int32, true),
                Field::new("s", DataType::Utf8, true),
            ])),
            partitions: vec!["part".into()],
            stats_columns: vec!["n".into(), "s".into()],
            properties: WriterProperties::builder().build(),
        }
    }

    #[tokio::test]
    async fn files_carry_partition_values_and_exact_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(&dir.path().display().to_string(), &Default::default()).unwrap();
        let layout = layout(loc);
        let batch = RecordBatch::try_new(
            layout.schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    Some("a"),
                    None,
                ])),
                Arc::new(Int32Array::from(vec![Some(5), Some(1), None, Some(7)])),
                Arc::new(StringArray::from(vec!["x", "y", "w", "z"])),
            ],
        )
        .unwrap();
        let groups = layout.split(&batch).unwrap();
        let keys: Vec<_> = groups
            .iter()
            .map(|(v, b)| (v.clone(), b.num_rows()))
            .collect();
        assert_eq!(
            keys,
            [
                (vec![Some("a".to_string())], 2),
                (vec![Some("b".to_string())], 1),
                (vec![None], 1)
            ]
        );
        let (values, rows) = &groups[0];
        assert_eq!(rows.num_columns(), 2, "partition column dropped");
        let mut f = layout.file(values, "f.parquet").await.unwrap();
        f.write(rows).unwrap();
        f.close().unwrap();
        let add = f.finish().await.unwrap();
        assert_eq!(add.path, "part=a/f.parquet");
        assert_eq!(add.partition_values["part"].as_deref(), Some("a"));
        let on_disk = std::fs::metadata(dir.path().join("part=a/f.parquet")).unwrap();
        assert_eq!(u64::try_from(add.size).unwrap(), on_disk.len());
        let stats: Value = serde_json::from_str(add.stats.as_deref().unwrap()).unwrap();
        assert_eq!(stats["numRecords"], 2);
        assert_eq!(stats["minValues"]["n"], 5);
        assert_eq!(stats["maxValues"]["n"], 5);
        assert_eq!(stats["nullCount"]["n"], 1);
        assert_eq!(stats["minValues"]["s"], "w");
        assert_eq!(stats["maxValues"]["s"], "x");
        let null_dir = layout.file(&groups[2].0, "g.parquet").await.unwrap();
        assert!(format!("{null_dir:?}").contains(NULL_PARTITION));
        let odd = layout
            .file(&vec![Some("a b/é=%".into())], "h.parquet")
            .await
            .unwrap();
        assert!(format!("{odd:?}").contains("part=a%20b%2F%C3%A9%3D%25/h.parquet"));
        let empty = layout.file(&vec![Some(String::new())], "i.parquet").await;
        assert!(empty.unwrap_err().to_string().contains("an empty value"));
    }
}
