//! `cellshard embeddings import`: a model's vectors from a Parquet file into the store's
//! `embeddings` table.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Float32Type};
use cellshard_store::Location;

use crate::sql::parse_kv;

/// `cellshard embeddings`.
#[derive(clap::Subcommand)]
pub(crate) enum EmbeddingsCommand {
    /// Import a model's vectors from a Parquet file (a site id column and a vector column:
    /// a list of numbers per row, all of one length), replacing the model's rows.
    Import(ImportArgs),
}

/// `cellshard embeddings import`.
#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// Store root URL or path.
    #[arg(long)]
    store: String,
    /// The model's name.
    #[arg(long)]
    model: String,
    /// The Parquet file (local path).
    file: PathBuf,
    /// The column of site ids.
    #[arg(long, default_value = "site_id")]
    site_id_column: String,
    /// The column of vectors.
    #[arg(long, default_value = "vector")]
    vector_column: String,
    /// Object store option for the store, KEY=VALUE (repeatable).
    #[arg(long = "store-option", value_parser = parse_kv)]
    store_options: Vec<(String, String)>,
}

/// Site ids and row-major vectors of `file`, and the vectors' width.
fn read_vectors(a: &ImportArgs) -> Result<(Vec<String>, usize, Vec<f32>)> {
    let name = a.file.display().to_string();
    let f = std::fs::File::open(&a.file).with_context(|| format!("cannot open {name}"))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .with_context(|| format!("{name} is not a Parquet file"))?
        .build()?;
    let (mut ids, mut values, mut dim) = (Vec::new(), Vec::new(), None);
    let invalid = |m: String| crate::exit::invalid(format!("{name}: {m}"));
    let list = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
    for batch in reader {
        let batch = batch?;
        let col = |c: &str| {
            batch
                .column_by_name(c)
                .cloned()
                .ok_or_else(|| invalid(format!("no column {c:?}")))
        };
        let sid = arrow::compute::cast(&col(&a.site_id_column)?, &DataType::Utf8)?;
        let vec = arrow::compute::cast(&col(&a.vector_column)?, &list).map_err(|e| {
            invalid(format!(
                "{:?} is not a list of numbers: {e}",
                a.vector_column
            ))
        })?;
        let (sid, vec) = (sid.as_string::<i32>(), vec.as_list::<i32>());
        for i in 0..batch.num_rows() {
            if sid.is_null(i) || vec.is_null(i) {
                return Err(invalid(format!(
                    "row {} has no site id or no vector",
                    ids.len()
                )));
            }
            let v = vec.value(i);
            let v = v.as_primitive::<Float32Type>();
            if v.null_count() > 0 {
                return Err(invalid(format!("the vector of {} has NULLs", sid.value(i))));
            }
            let d = *dim.get_or_insert(v.len());
            if v.len() != d {
                return Err(invalid(format!(
                    "the vector of {} has {} values, the first has {d}",
                    sid.value(i),
                    v.len()
                )));
            }
            ids.push(sid.value(i).to_string());
            values.extend_from_slice(v.values());
        }
    }
    let Some(dim) = dim else {
        return Err(invalid("no rows".into()));
    };
    Ok((ids, dim, values))
}

/// `cellshard embeddings ...`.
pub(crate) async fn embeddings(c: EmbeddingsCommand) -> Result<()> {
    let EmbeddingsCommand::Import(a) = c;
    let (ids, dim, values) = read_vectors(&a)?;
    let root = Location::parse(&a.store, &a.store_options.iter().cloned().collect())?;
    root.create_local_dir()?;
    let w =
        cellshard_store::embeddings::write_embeddings(&root, &a.model, &ids, dim, &values).await?;
    println!("{}", serde_json::to_string(&w)?);
    Ok(())
}
