//! The `profiles` table: per site, and aggregated per well, a vector of image features
//! (`cellshard profile`), raw and normalised to the plate's controls.
//!
//! Columns: `level` (`site` or `well`), `site_id` (NULL on well rows), `plate`, `well`,
//! `sites` (1, or the well's sites), `features` (the raw values, list of float32),
//! `vector` (the same values centred and scaled by the plate's control sites), `dim`,
//! `created` (UTC) and `experiment` (the partition column). The feature names, in vector
//! order, are the commit's `cellshard.features` metadata and `cellshard profile`'s report.
//! A write replaces the plates it holds in one commit.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Int32Array, ListBuilder, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::TableProperty;
use serde_json::Value;

use crate::commit::{FileView, Replace, commit};
use crate::shard::FileLayout;
use crate::table::open_or_create;
use crate::{Error, Location, Result};

/// The table's folder under the store root.
pub const PROFILES: &str = "profiles";

fn vector_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
        false,
    )
}

/// The `profiles` schema (`experiment` last: the partition column).
pub fn profiles_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("level", DataType::Utf8, false),
        Field::new("site_id", DataType::Utf8, true),
        Field::new("plate", DataType::Int32, false),
        Field::new("well", DataType::Utf8, false),
        Field::new("sites", DataType::Int32, false),
        vector_field("features"),
        vector_field("vector"),
        Field::new("dim", DataType::Int32, false),
        Field::new(
            "created",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("experiment", DataType::Utf8, false),
    ]))
}

/// One profile row.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    /// The site, or None for a well's aggregate.
    pub site_id: Option<String>,
    /// Well.
    pub well: String,
    /// Sites behind the row (1 for a site).
    pub sites: u32,
    /// Raw feature values.
    pub features: Vec<f32>,
    /// Normalised values.
    pub vector: Vec<f32>,
}

/// A plate's profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateProfiles {
    /// Experiment.
    pub experiment: String,
    /// Plate.
    pub plate: i32,
    /// Site rows and well rows.
    pub rows: Vec<ProfileRow>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProfilesWritten {
    /// Plates replaced.
    pub plates: usize,
    /// Site rows.
    pub sites: u64,
    /// Well rows.
    pub wells: u64,
    /// Vector width.
    pub dim: usize,
    /// The table's version after the commit.
    pub version: i64,
}

fn plate_batch(schema: &SchemaRef, p: &PlateProfiles, dim: usize, now: i64) -> Result<RecordBatch> {
    let n = p.rows.len();
    let list = |pick: fn(&ProfileRow) -> &[f32]| {
        let mut b = ListBuilder::new(Float32Builder::with_capacity(n * dim))
            .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
        for r in &p.rows {
            b.values().append_slice(pick(r));
            b.append(true);
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let level = |r: &ProfileRow| if r.site_id.is_some() { "site" } else { "well" };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(p.rows.iter().map(level))),
        Arc::new(StringArray::from_iter(
            p.rows.iter().map(|r| r.site_id.as_deref()),
        )),
        Arc::new(Int32Array::from(vec![p.plate; n])),
        Arc::new(StringArray::from_iter_values(
            p.rows.iter().map(|r| r.well.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(
            p.rows
                .iter()
                .map(|r| i32::try_from(r.sites).unwrap_or(i32::MAX)),
        )),
        list(|r| &r.features),
        list(|r| &r.vector),
        Arc::new(Int32Array::from(vec![
            i32::try_from(dim).unwrap_or(i32::MAX);
            n
        ])),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec![p.experiment.as_str(); n])),
    ];
    RecordBatch::try_new(schema.clone(), cols).map_err(|source| Error::Arrow {
        table: PROFILES.into(),
        source,
    })
}

/// Replace the profiles of the plates in `plates` with theirs, in one commit; `names` are
/// the features' names in vector order.
pub async fn write_profiles(
    root: &Location,
    plates: &[PlateProfiles],
    names: &[String],
) -> Result<ProfilesWritten> {
    let dim = names.len();
    for p in plates {
        if let Some(r) = p
            .rows
            .iter()
            .find(|r| r.features.len() != dim || r.vector.len() != dim)
        {
            return Err(Error::Input(format!(
                "profile of {} plate {} well {}: {} features and {} normalised values, expected {dim}",
                p.experiment,
                p.plate,
                r.well,
                r.features.len(),
                r.vector.len()
            )));
        }
    }
    let loc = root.child(PROFILES);
    let schema = profiles_schema();
    let mut table = open_or_create(
        &loc,
        PROFILES,
        &schema,
        &["experiment"],
        vec![(TableProperty::CheckpointInterval, "10")],
    )
    .await?;
    let layout = FileLayout {
        table: loc.clone(),
        schema: schema.clone(),
        partitions: vec!["experiment".into()],
        stats_columns: vec!["plate".into(), "well".into(), "site_id".into()],
        properties: crate::embeddings::zstd_properties(),
    };
    let now = chrono::Utc::now().timestamp_micros();
    let mut adds = Vec::new();
    for (i, p) in plates.iter().enumerate() {
        let batch = plate_batch(&schema, p, dim, now)?;
        adds.extend(
            crate::embeddings::write_parts(&layout, &batch, &format!("{now:x}-{i}")).await?,
        );
    }
    let replaced: HashSet<(String, i64)> = plates
        .iter()
        .map(|p| (p.experiment.clone(), i64::from(p.plate)))
        .collect();
    let same_plate = |f: &FileView| {
        let exp = f.partitions.get("experiment").cloned().flatten();
        let plate = f.single("plate").and_then(Value::as_i64);
        match (exp, plate) {
            (Some(e), Some(p)) => replaced.contains(&(e, p)),
            _ => false,
        }
    };
    let scope = plates
        .iter()
        .map(|p| {
            format!(
                "(experiment = '{}' AND plate = {})",
                p.experiment.replace('\'', "''"),
                p.plate
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let committed = commit(
        &mut table,
        &loc,
        Replace {
            adds,
            remove: Some(&same_plate),
            predicate: Some(scope),
            metadata: vec![(
                "cellshard.features".into(),
                Value::Array(names.iter().cloned().map(Value::String).collect()),
            )],
            txn: None,
        },
    )
    .await?;
    let count = |site: bool| {
        plates
            .iter()
            .flat_map(|p| &p.rows)
            .filter(|r| r.site_id.is_some() == site)
            .count() as u64
    };
    Ok(ProfilesWritten {
        plates: plates.len(),
        sites: count(true),
        wells: count(false),
        dim,
        version: committed.version,
    })
}
