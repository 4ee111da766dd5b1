//! Result formatting: aligned tables, CSV, JSON lines and Parquet. Binary values (tensors,
//! thumbnails) show as their size except in Parquet, which keeps every value.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::{Error, Result, export};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned text table (binary values shown as their size).
    Table,
    /// CSV with a header (binary values shown as their size).
    Csv,
    /// JSON lines (binary values shown as their size).
    Json,
    /// Parquet, every value kept (tensors and thumbnails included).
    Parquet,
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

/// Write `batches` in `fmt` to `out` (Parquet keeps binary values; the others summarize them).
pub fn write_output(
    batches: &[RecordBatch],
    fmt: OutputFormat,
    out: &mut (dyn std::io::Write + Send),
) -> Result<()> {
    if fmt != OutputFormat::Parquet {
        out.write_all(format(batches, fmt)?.as_bytes())?;
        return Ok(());
    }
    let Some(first) = batches.first() else {
        return Err(Error::Usage(
            "the query returned no batches to write as Parquet".into(),
        ));
    };
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let schema = export::plain_schema(&first.schema());
    let mut w = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(props))?;
    for b in batches {
        w.write(&export::conform(b, &schema)?)?;
    }
    w.close()?;
    Ok(())
}

/// Format batches for printing.
pub fn format(batches: &[RecordBatch], fmt: OutputFormat) -> Result<String> {
    match fmt {
        OutputFormat::Parquet => Err(Error::Usage(
            "Parquet output is binary: use write_output with a file".into(),
        )),
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
