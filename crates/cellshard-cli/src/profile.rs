//! `cellshard profile`: per-site image features (a CellProfiler-lite set, documented in
//! `cellshard_stages::profile`) and their well medians, raw and normalised to each plate's
//! control sites, into the store's `profiles` table.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use cellshard_sql::Session;
use cellshard_sql::udf::TensorSpec;
use cellshard_stages::profile::{column_medians, feature_names, site_features};
use cellshard_stages::vector::{Scaling, center_scale};
use cellshard_store::Location;
use cellshard_store::profiles::{PlateProfiles, ProfileRow, write_profiles};
use futures::StreamExt;

use crate::sql::{TimeTravel, open};

/// `cellshard profile`.
#[derive(clap::Args)]
pub(crate) struct ProfileArgs {
    /// Store root URL or path.
    #[arg(long)]
    store: String,
    #[command(flatten)]
    travel: TimeTravel,
    /// Only this experiment (repeatable; every experiment by default).
    #[arg(long)]
    experiment: Vec<String>,
    /// Only this plate number (repeatable; every plate by default).
    #[arg(long)]
    plate: Vec<i32>,
    /// The sites each plate's features are centred and scaled by: an SQL predicate over
    /// `sites`. A plate without any uses all its sites.
    #[arg(long, default_value = "well_type = 'negative_control'")]
    control: String,
    /// How features are centred and scaled: `standardize` (mean, standard deviation) or
    /// `robust` (median, 1.4826 x MAD), as pycytominer's `normalize` methods.
    #[arg(long, default_value = "standardize")]
    scaling: String,
    /// Threads computing features (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Features of each tensor, on `threads` threads.
fn features_of(spec: &TensorSpec, tensors: &[&[u8]], threads: usize) -> Vec<Vec<f32>> {
    let one = |t: &[u8]| {
        let planes: Vec<Vec<f32>> = (0..spec.channels)
            .map(|c| spec.unit_channel(t, c))
            .collect();
        let refs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
        site_features(&refs, spec.width, spec.height)
    };
    let per = tensors.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = tensors
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(|t| one(t)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// One column of `batch` as strings.
fn strings(batch: &arrow::array::RecordBatch, i: usize) -> Result<Vec<Option<String>>> {
    let c = arrow::compute::cast(batch.column(i), &DataType::Utf8)?;
    let c = c.as_string::<i32>();
    Ok((0..c.len())
        .map(|r| c.is_valid(r).then(|| c.value(r).to_string()))
        .collect())
}

/// A plate's site and well profiles.
async fn plate_profiles(
    session: &mut Session,
    experiment: &str,
    plate: i32,
    a: &ProfileArgs,
    how: Scaling,
    threads: usize,
) -> Result<PlateProfiles> {
    let scope = format!("experiment = {} AND plate = {plate}", literal(experiment));
    let mut controls: HashMap<String, bool> = HashMap::new();
    let sql = format!(
        "SELECT site_id, coalesce(({}), false) FROM sites WHERE {scope}",
        a.control
    );
    for b in session
        .run(&sql)
        .await
        .with_context(|| format!("--control {:?} is not a predicate over sites", a.control))?
    {
        let ids = strings(&b, 0)?;
        let c = arrow::compute::cast(b.column(1), &DataType::Boolean)?;
        for (i, id) in ids.into_iter().enumerate() {
            controls.insert(id.unwrap_or_default(), c.as_boolean().value(i));
        }
    }
    let sql = format!("SELECT site_id, well, tensor FROM sites WHERE {scope}");
    let df = session.ctx.sql(&sql).await?;
    let mut stream = df.execute_stream().await?;
    let mut sites: Vec<(String, String, Vec<f32>)> = Vec::new();
    while let Some(b) = stream.next().await {
        let b = b?;
        let spec = b
            .schema()
            .field_with_name("tensor")
            .ok()
            .and_then(TensorSpec::from_field)
            .or(session.tensor)
            .context("the tensor column carries no shape (cellshard.shape metadata)")?;
        let (ids, wells) = (strings(&b, 0)?, strings(&b, 1)?);
        let t = arrow::compute::cast(b.column(2), &DataType::Binary)?;
        let t = t.as_binary::<i32>();
        let bytes = spec.channels * spec.height * spec.width * spec.dtype.size();
        let mut keep = Vec::new();
        let mut tensors = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let len = if t.is_valid(i) { t.value(i).len() } else { 0 };
            if len != bytes {
                anyhow::bail!(
                    "site {}: its tensor has {len} bytes, its shape needs {bytes}",
                    id.as_deref().unwrap_or("?")
                );
            }
            keep.push(i);
            tensors.push(t.value(i));
        }
        for (i, f) in keep.into_iter().zip(features_of(&spec, &tensors, threads)) {
            sites.push((
                ids[i].clone().unwrap_or_default(),
                wells[i].clone().unwrap_or_default(),
                f,
            ));
        }
    }
    sites.sort_by(|x, y| x.0.cmp(&y.0));
    let dim = sites.first().map_or(0, |s| s.2.len());
    let mut flat: Vec<f32> = sites.iter().flat_map(|s| s.2.iter().copied()).collect();
    let reference: Vec<bool> = sites
        .iter()
        .map(|s| controls.get(&s.0).copied().unwrap_or(false))
        .collect();
    center_scale(&mut flat, dim.max(1), &reference, how);
    let mut rows: Vec<ProfileRow> = sites
        .iter()
        .zip(flat.chunks(dim.max(1)))
        .map(|((id, well, f), v)| ProfileRow {
            site_id: Some(id.clone()),
            well: well.clone(),
            sites: 1,
            features: f.clone(),
            vector: v.to_vec(),
        })
        .collect();
    let mut by_well: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_well.entry(r.well.clone()).or_default().push(i);
    }
    for (well, members) in by_well {
        let pick = |f: fn(&ProfileRow) -> &[f32]| {
            let v: Vec<&[f32]> = members.iter().map(|&i| f(&rows[i])).collect();
            column_medians(&v, dim)
        };
        let (features, vector) = (pick(|r| &r.features), pick(|r| &r.vector));
        rows.push(ProfileRow {
            site_id: None,
            well,
            sites: u32::try_from(members.len()).unwrap_or(u32::MAX),
            features,
            vector,
        });
    }
    Ok(PlateProfiles {
        experiment: experiment.to_string(),
        plate,
        rows,
    })
}

/// `cellshard profile`.
pub(crate) async fn profile(a: ProfileArgs) -> Result<()> {
    let how = Scaling::parse(&a.scaling).ok_or_else(|| {
        crate::exit::invalid(format!(
            "--scaling {:?}: expected standardize or robust",
            a.scaling
        ))
    })?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err(crate::exit::invalid("--threads must be at least 1"));
    }
    let start = Instant::now();
    let mut session = open(&a.store, &a.travel).await?;
    let mut filter = vec!["TRUE".to_string()];
    if !a.experiment.is_empty() {
        let e: Vec<String> = a.experiment.iter().map(|e| literal(e)).collect();
        filter.push(format!("experiment IN ({})", e.join(", ")));
    }
    if !a.plate.is_empty() {
        let p: Vec<String> = a.plate.iter().map(i32::to_string).collect();
        filter.push(format!("plate IN ({})", p.join(", ")));
    }
    let sql = format!(
        "SELECT DISTINCT CAST(experiment AS VARCHAR), plate FROM sites WHERE {} ORDER BY 1, 2",
        filter.join(" AND ")
    );
    let mut plates = Vec::new();
    for b in session.run(&sql).await? {
        let e = strings(&b, 0)?;
        let p = arrow::compute::cast(b.column(1), &DataType::Int32)?;
        let p = p.as_primitive::<arrow::datatypes::Int32Type>();
        for (i, e) in e.into_iter().enumerate() {
            plates.push((e.unwrap_or_default(), p.value(i)));
        }
    }
    if plates.is_empty() {
        return Err(crate::exit::invalid(format!(
            "{}: no sites match the chosen experiments and plates",
            a.store
        )));
    }
    let channels = session.tensor.map_or(0, |t| t.channels);
    let names: Vec<String> = (0..channels)
        .map(|c| {
            session
                .channel_names
                .get(c)
                .cloned()
                .unwrap_or_else(|| format!("ch{}", c + 1))
        })
        .collect();
    let mut out = Vec::with_capacity(plates.len());
    for (experiment, plate) in &plates {
        out.push(plate_profiles(&mut session, experiment, *plate, &a, how, threads).await?);
    }
    let names = if names.is_empty() {
        let dim = out
            .iter()
            .flat_map(|p| &p.rows)
            .map(|r| r.features.len())
            .next()
            .unwrap_or(0);
        let c = dim / cellshard_stages::profile::FEATURES_PER_CHANNEL;
        feature_names(&(1..=c).map(|i| format!("ch{i}")).collect::<Vec<_>>())
    } else {
        feature_names(&names)
    };
    let root = Location::parse(&a.store, &a.travel.options())?;
    let w = write_profiles(&root, &out, &names).await?;
    let seconds = start.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "plates": w.plates,
        "sites": w.sites,
        "wells": w.wells,
        "dim": w.dim,
        "version": w.version,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "sites_per_second": (w.sites as f64 / seconds.max(1e-9) * 10.0).round() / 10.0,
        "features": names,
    });
    println!("{report}");
    Ok(())
}
