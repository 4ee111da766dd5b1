//! What the pictures show, read through the SQL session: site tensors and per-well
//! statistics of one plate.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int32Type};
use cellshard_sql::Session;
use cellshard_sql::udf::TensorSpec;
use datafusion::prelude::SessionContext;

use crate::stat::Stat;
use crate::{Error, Result};

/// Sites in one contact sheet unless `--max-sites` says otherwise.
pub const DEFAULT_MAX_SITES: usize = 64;
/// The most sites one contact sheet shows.
pub const MAX_SITES: usize = 1024;

pub use cellshard_core::plate::{PlateFormat, row_name, well_name, well_position};

/// Quote a string as an SQL literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One site's tensor and labels.
#[derive(Debug, Clone)]
pub struct SiteImage {
    /// Site id.
    pub site_id: String,
    /// Well, when the query returned it.
    pub well: Option<String>,
    /// siRNA id (or NULL).
    pub sirna_id: Option<String>,
    /// Well type.
    pub well_type: Option<String>,
    /// Tensor shape and dtype.
    pub spec: TensorSpec,
    /// C x H x W little-endian values.
    pub tensor: Vec<u8>,
    /// How the channels are named and drawn.
    pub palette: std::sync::Arc<cellshard_core::palette::Palette>,
}

impl SiteImage {
    /// `B02 siRNA 1138` / `B02 negative_control`: the second label line.
    pub fn caption(&self) -> String {
        let mut parts = Vec::new();
        if let Some(w) = &self.well {
            parts.push(w.clone());
        }
        match (&self.sirna_id, &self.well_type) {
            (Some(s), _) => parts.push(format!("siRNA {s}")),
            (None, Some(t)) => parts.push(t.clone()),
            _ => {}
        }
        parts.join(" ")
    }
}

/// Run `sql` in `ctx` and collect at most `limit` rows.
pub async fn collect(
    ctx: &SessionContext,
    sql: &str,
    limit: Option<usize>,
) -> Result<Vec<RecordBatch>> {
    let mut df = ctx.sql(sql).await?;
    if let Some(n) = limit {
        df = df.limit(0, Some(n))?;
    }
    Ok(df.collect().await?)
}

/// A column of `batch` as strings (any type arrow can cast), None when it is absent.
fn strings(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Option<String>>>> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let s = cast(col, &DataType::Utf8)?;
    let s = s.as_string::<i32>();
    Ok(Some(
        (0..s.len())
            .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
            .collect(),
    ))
}

/// The sites a query returns, with their tensors. The query must return `site_id` and
/// `tensor`; `well`, `sirna_id` and `well_type` label the pictures when present. More
/// than `cap` rows is an error that says so.
pub async fn sites_from_query(session: &Session, sql: &str, cap: usize) -> Result<Vec<SiteImage>> {
    let batches = collect(&session.ctx, sql, Some(cap + 1)).await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > cap {
        return Err(Error::Usage(format!(
            "the query returns more than {cap} sites, the most one picture shows: add a LIMIT or narrow the WHERE clause (or raise --max-sites, up to {})",
            MAX_SITES
        )));
    }
    let mut out = Vec::with_capacity(rows);
    for b in &batches {
        let schema = b.schema();
        let Ok(field) = schema.field_with_name(cellshard_store::schema::TENSOR) else {
            return Err(Error::Usage(format!(
                "the query must return the `tensor` column (and `site_id`); it returned: {}",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let spec = TensorSpec::from_field(field)
            .or(session.tensor)
            .ok_or_else(|| {
                Error::Internal(
                    "the tensor column carries no shape (cellshard.shape metadata)".into(),
                )
            })?;
        let palette = std::sync::Arc::new(cellshard_core::palette::Palette::new(
            spec.channels,
            &session.channel_names,
        ));
        let ids = strings(b, "site_id")?.ok_or_else(|| {
            Error::Usage("the query must return `site_id` beside `tensor`".into())
        })?;
        let wells = strings(b, "well")?;
        let sirnas = strings(b, "sirna_id")?;
        let types = strings(b, "well_type")?;
        let t = cast(
            b.column_by_name(cellshard_store::schema::TENSOR)
                .ok_or_else(|| Error::Usage("no tensor column".into()))?,
            &DataType::Binary,
        )?;
        let t = t.as_binary::<i32>();
        for i in 0..b.num_rows() {
            if t.is_null(i) {
                continue;
            }
            let pick = |v: &Option<Vec<Option<String>>>| v.as_ref().and_then(|v| v[i].clone());
            out.push(SiteImage {
                site_id: ids[i].clone().unwrap_or_default(),
                well: pick(&wells),
                sirna_id: pick(&sirnas),
                well_type: pick(&types),
                spec,
                tensor: t.value(i).to_vec(),
                palette: palette.clone(),
            });
        }
    }
    Ok(out)
}

/// One site by id.
pub async fn site(session: &Session, site_id: &str) -> Result<SiteImage> {
    let sql = format!(
        "SELECT site_id, well, sirna_id, well_type, tensor FROM sites WHERE site_id = {}",
        literal(site_id)
    );
    let mut v = sites_from_query(session, &sql, 1).await?;
    v.pop().ok_or_else(|| {
        Error::NotFound(format!(
            "no site {site_id:?} in the store (site ids look like HUVEC-01_1_B02_1: experiment, plate, well, site)"
        ))
    })
}

/// A statistic's value per well, for each plate it was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateValues {
    /// (plate, well) -> value.
    pub values: BTreeMap<(i32, String), f64>,
}

impl PlateValues {
    /// The wells of one plate.
    pub fn plate(&self, plate: i32) -> BTreeMap<String, f64> {
        self.values
            .iter()
            .filter(|((p, _), _)| *p == plate)
            .map(|((_, w), v)| (w.clone(), *v))
            .collect()
    }

    /// Smallest and largest value (None when empty).
    pub fn range(&self) -> Option<(f64, f64)> {
        let mut it = self.values.values().copied().filter(|v| v.is_finite());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }
}

/// `stat` per well of `experiment`'s plates (`plate`, or every plate when None).
pub async fn plate_values(
    ctx: &SessionContext,
    experiment: &str,
    plate: Option<i32>,
    stat: Stat,
    channel: usize,
) -> Result<PlateValues> {
    let mut filter = format!("experiment = {}", literal(experiment));
    if let Some(p) = plate {
        filter.push_str(&format!(" AND plate = {p}"));
    }
    let sql = match stat {
        Stat::Qc(_) => format!(
            "SELECT plate, well, avg(CAST({} AS DOUBLE)) AS v FROM site_qc WHERE {filter} AND channel = {channel} GROUP BY plate, well",
            stat.column()
        ),
        Stat::RawMean => format!(
            "SELECT plate, well, avg(raw_channel_mean[{channel}]) AS v FROM sites WHERE {filter} GROUP BY plate, well"
        ),
        Stat::Sites => format!(
            "SELECT plate, well, CAST(count(*) AS DOUBLE) AS v FROM sites WHERE {filter} GROUP BY plate, well"
        ),
        Stat::Rejected => format!(
            "SELECT plate, site_id FROM rejects WHERE {filter} AND site_id IS NOT NULL \
             AND (build_id IS NULL OR build_id IN (SELECT DISTINCT build_id FROM sites WHERE {filter}))"
        ),
    };
    let batches = collect(ctx, &sql, None).await?;
    let mut values = BTreeMap::new();
    let mut sites_seen: BTreeMap<(i32, String), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    for b in &batches {
        let plates = cast(b.column(0), &DataType::Int32)?;
        let plates = plates.as_primitive::<Int32Type>();
        let second = cast(b.column(1), &DataType::Utf8)?;
        let second = second.as_string::<i32>();
        // The value column, cast once per batch (the rejects query has none).
        let v = match stat {
            Stat::Rejected => None,
            _ => Some(cast(b.column(2), &DataType::Float64)?),
        };
        let v = v.as_ref().map(|v| v.as_primitive::<Float64Type>());
        for i in 0..b.num_rows() {
            if plates.is_null(i) || second.is_null(i) {
                continue;
            }
            let p = plates.value(i);
            if stat == Stat::Rejected {
                // Site ids end in `_{well}_{site}`.
                let id = second.value(i);
                let mut parts = id.rsplit('_');
                let (_, well) = (parts.next(), parts.next());
                if let Some(w) = well {
                    sites_seen
                        .entry((p, w.to_string()))
                        .or_default()
                        .insert(id.to_string());
                }
                continue;
            }
            if let Some(v) = v.filter(|v| v.is_valid(i)) {
                values.insert((p, second.value(i).to_string()), v.value(i));
            }
        }
    }
    for (k, ids) in sites_seen {
        values.insert(k, ids.len() as f64);
    }
    if stat == Stat::RawMean && values.is_empty() {
        let any = collect(
            ctx,
            &format!("SELECT count(*) FROM sites WHERE {filter}"),
            None,
        )
        .await?;
        let n = any
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<arrow::datatypes::Int64Type>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        if n > 0 {
            return Err(Error::Usage(format!(
                "the sites of {experiment} have no raw_channel_mean (they were written before it was stored): rebuild the plate with `cellshard run` to record it"
            )));
        }
    }
    Ok(PlateValues { values })
}

/// Plates of `experiment` in the store.
pub async fn plates(ctx: &SessionContext, experiment: &str) -> Result<Vec<i32>> {
    let b = collect(
        ctx,
        &format!(
            "SELECT DISTINCT plate FROM sites WHERE experiment = {} ORDER BY plate",
            literal(experiment)
        ),
        None,
    )
    .await?;
    let mut out = Vec::new();
    for b in &b {
        let p = cast(b.column(0), &DataType::Int32)?;
        let p = p.as_primitive::<Int32Type>();
        out.extend((0..p.len()).filter(|&i| p.is_valid(i)).map(|i| p.value(i)));
    }
    Ok(out)
}

/// A 1-based channel of a tensor with `channels` channels.
pub fn check_channel(channel: usize, channels: usize) -> Result<()> {
    if (1..=channels).contains(&channel) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "channel {channel} is outside 1..={channels} (the store's tensors have {channels} channels)"
    )))
}

/// What one plate's heatmap shows: `stat` of `channel` per well.
pub async fn plate_map(
    ctx: &SessionContext,
    experiment: &str,
    plate: i32,
    stat: Stat,
    channel: usize,
) -> Result<BTreeMap<String, f64>> {
    let values = plate_values(ctx, experiment, Some(plate), stat, channel)
        .await?
        .plate(plate);
    if !plates(ctx, experiment).await?.contains(&plate) {
        return Err(Error::NotFound(format!(
            "no sites of plate {plate} of {experiment} in the store (`SELECT DISTINCT experiment, plate FROM sites` lists them)"
        )));
    }
    Ok(values)
}

/// What the before/after picture shows: raw crop means and stored means of `channel` over
/// every plate of the experiment, and how many plates that is.
#[derive(Debug, Clone)]
pub struct BeforeAfter {
    /// Raw crop means per (plate, well).
    pub raw: PlateValues,
    /// Stored (normalized) means per (plate, well).
    pub norm: PlateValues,
    /// Plates of the experiment.
    pub plates: usize,
}

/// Gather [`BeforeAfter`] for `plate` of `experiment`.
pub async fn before_after(
    ctx: &SessionContext,
    experiment: &str,
    plate: i32,
    channel: usize,
) -> Result<BeforeAfter> {
    let raw = plate_values(ctx, experiment, None, Stat::RawMean, channel).await?;
    let norm = plate_values(ctx, experiment, None, Stat::Qc("mean"), channel).await?;
    if norm.plate(plate).is_empty() {
        return Err(Error::NotFound(format!(
            "no sites of plate {plate} of {experiment} in the store"
        )));
    }
    let plates = plates(ctx, experiment).await?.len();
    Ok(BeforeAfter { raw, norm, plates })
}

/// Split `EXPERIMENT/PLATE` (`HUVEC-01/1`).
pub fn parse_plate(s: &str) -> Result<(String, i32)> {
    let (e, p) = s.rsplit_once('/').ok_or_else(|| {
        Error::Usage(format!(
            "plate {s:?} should be EXPERIMENT/PLATE, e.g. HUVEC-01/1"
        ))
    })?;
    let p: i32 = p
        .parse()
        .map_err(|_| Error::Usage(format!("plate {s:?}: {p:?} is not a plate number")))?;
    Ok((e.to_string(), p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wells_map_to_their_plate_format() {
        assert_eq!(well_position("A01"), Some((0, 0)));
        assert_eq!(well_position("P24"), Some((15, 23)));
        assert!(!PlateFormat::W384.holds("Q01") && !PlateFormat::W384.holds("A25"));
        assert_eq!(PlateFormat::containing(["B02", "AD27"]), PlateFormat::W1536);
        assert_eq!(well_name(15, 23), "P24");
        assert_eq!(parse_plate("HUVEC-01/3").unwrap(), ("HUVEC-01".into(), 3));
        assert!(parse_plate("HUVEC-01").is_err());
        assert_eq!(Stat::parse("outlier").unwrap(), Stat::Qc("outlier"));
        assert!(
            Stat::parse("median")
                .unwrap_err()
                .to_string()
                .contains("raw_mean")
        );
    }
}
