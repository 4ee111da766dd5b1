//! The `embeddings` table: one vector per site and model, from any model (a trained
//! network's features, a profile), many models side by side.
//!
//! Columns: `site_id`, `vector` (a list of float32: models of different widths share the
//! table, so the list is not fixed-size; every row of a model has the same length, `dim`),
//! `dim`, `created` (UTC) and `model` (the partition column). A write replaces all of a
//! model's rows in one Delta commit: readers see the old rows or the new ones, never a mix.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Int32Array, ListBuilder, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::TableProperty;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::commit::{FileView, Replace, commit};
use crate::shard::FileLayout;
use crate::table::open_or_create;
use crate::{Error, Location, Result};

/// The table's folder under the store root.
pub const EMBEDDINGS: &str = "embeddings";

/// Longest model name.
const MAX_MODEL: usize = 200;

/// The `embeddings` schema (`model` last: the partition column).
pub fn embeddings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("site_id", DataType::Utf8, false),
        Field::new(
            "vector",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
            false,
        ),
        Field::new("dim", DataType::Int32, false),
        Field::new(
            "created",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("model", DataType::Utf8, false),
    ]))
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EmbeddingsWritten {
    /// The model.
    pub model: String,
    /// Rows written.
    pub rows: u64,
    /// Vector width.
    pub dim: u32,
    /// The table's version after the commit.
    pub version: i64,
}

/// Check a write's inputs; the message says which value and why.
fn check(model: &str, site_ids: &[String], dim: usize, values: &[f32]) -> Result<()> {
    let bad = |message: String| Err(Error::Input(message));
    if model.is_empty() || model.len() > MAX_MODEL {
        return bad(format!("model name must be 1..{MAX_MODEL} characters"));
    }
    if model.chars().any(char::is_control) || model.contains("..") || model.contains('/') {
        return bad(format!(
            "model name {model:?} may not hold control characters, '/' or '..'"
        ));
    }
    if dim == 0 || i32::try_from(dim).is_err() {
        return bad(format!("vector width {dim} is out of range"));
    }
    if site_ids.len().checked_mul(dim) != Some(values.len()) {
        return bad(format!(
            "{} site ids and {} values do not make vectors of {dim}",
            site_ids.len(),
            values.len()
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return bad(format!(
            "vector {} ({}) holds a value that is not finite",
            i / dim,
            site_ids[i / dim]
        ));
    }
    let mut seen = HashSet::with_capacity(site_ids.len());
    if let Some(dup) = site_ids.iter().find(|s| !seen.insert(s.as_str())) {
        return bad(format!("site id {dup:?} appears twice"));
    }
    Ok(())
}

/// Parquet settings of the vector tables: zstd at its default level.
pub(crate) fn zstd_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

/// Write `batch` as one file per partition of `layout` (named from `tag` and the
/// process), encoded off the async threads; the files' `Add` actions.
pub(crate) async fn write_parts(
    layout: &FileLayout,
    batch: &RecordBatch,
    tag: &str,
) -> Result<Vec<deltalake::kernel::Add>> {
    let mut adds = Vec::new();
    for (i, (values, part)) in layout.split(batch)?.into_iter().enumerate() {
        let name = format!("part-{tag}-{i}-{}.zstd.parquet", std::process::id());
        let mut file = layout.file(&values, &name).await?;
        let file = tokio::task::spawn_blocking(move || {
            file.write(&part)?;
            file.close()?;
            Ok::<_, Error>(file)
        })
        .await
        .map_err(|e| Error::Write {
            url: layout.table.url.to_string(),
            message: format!("encoding failed: {e}"),
        })??;
        adds.push(file.finish().await?);
    }
    Ok(adds)
}

/// Replace model `model`'s rows of the store at `root` with `site_ids[i]` ->
/// `values[i * dim..(i + 1) * dim]`, in one commit.
pub async fn write_embeddings(
    root: &Location,
    model: &str,
    site_ids: &[String],
    dim: usize,
    values: &[f32],
) -> Result<EmbeddingsWritten> {
    check(model, site_ids, dim, values)?;
    let loc = root.child(EMBEDDINGS);
    let schema = embeddings_schema();
    let mut table = open_or_create(
        &loc,
        EMBEDDINGS,
        &schema,
        &["model"],
        vec![(TableProperty::CheckpointInterval, "10")],
    )
    .await?;
    let n = site_ids.len();
    let mut vectors = ListBuilder::new(Float32Builder::with_capacity(values.len()))
        .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
    for v in values.chunks_exact(dim) {
        vectors.values().append_slice(v);
        vectors.append(true);
    }
    let now = chrono::Utc::now().timestamp_micros();
    let dim32 = i32::try_from(dim).unwrap_or(i32::MAX);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(site_ids)),
        Arc::new(vectors.finish()),
        Arc::new(Int32Array::from(vec![dim32; n])),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec![model; n])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|source| Error::Arrow {
        table: EMBEDDINGS.into(),
        source,
    })?;
    let layout = FileLayout {
        table: loc.clone(),
        schema: schema.clone(),
        partitions: vec!["model".into()],
        stats_columns: vec!["site_id".into(), "dim".into()],
        properties: zstd_properties(),
    };
    let adds = write_parts(&layout, &batch, &format!("{now:x}")).await?;
    let wanted = Value::String(model.to_string());
    let same_model =
        |f: &FileView| f.partitions.get("model").cloned().flatten().as_deref() == wanted.as_str();
    let committed = commit(
        &mut table,
        &loc,
        Replace {
            adds,
            remove: Some(&same_model),
            predicate: Some(format!("model = '{}'", model.replace('\'', "''"))),
            metadata: vec![("cellshard.model".into(), Value::String(model.into()))],
            txn: None,
        },
    )
    .await?;
    Ok(EmbeddingsWritten {
        model: model.to_string(),
        rows: n as u64,
        dim: u32::try_from(dim).unwrap_or(u32::MAX),
        version: committed.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked_with_reasons() {
        let ids = vec!["a".to_string(), "b".to_string()];
        assert!(check("m", &ids, 2, &[0.0; 4]).is_ok());
        for (model, ids, dim, values, why) in [
            ("", ids.clone(), 2, vec![0.0; 4], "1.."),
            ("a/b", ids.clone(), 2, vec![0.0; 4], "'/'"),
            (
                "m",
                ids.clone(),
                3,
                vec![0.0; 4],
                "do not make vectors of 3",
            ),
            ("m", ids.clone(), 0, vec![], "width 0"),
            (
                "m",
                ids.clone(),
                2,
                vec![0.0, f32::NAN, 0.0, 0.0],
                "vector 0 (a)",
            ),
            ("m", vec!["a".into(), "a".into()], 1, vec![0.0; 2], "twice"),
        ] {
            let e = check(model, &ids, dim, &values).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
