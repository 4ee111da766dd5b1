//! `cellshard qc`: the plates, wells and sites that fail image QC, with their reasons.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cellshard_sql::OutputFormat;

use crate::sql::{TimeTravel, open};

/// Report formats.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum QcFormat {
    /// Aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON lines.
    Json,
}

/// `cellshard qc`.
#[derive(clap::Args)]
pub(crate) struct QcArgs {
    /// Store root URL or path.
    #[arg(long)]
    store: String,
    #[command(flatten)]
    travel: TimeTravel,
    /// Output format.
    #[arg(long, value_enum, default_value_t = QcFormat::Table)]
    format: QcFormat,
    /// Write the report to FILE instead of standard output.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// A plate is flagged when more than this fraction of its sites fail.
    #[arg(long, default_value_t = 0.25)]
    plate_fraction: f64,
}

/// The report: `level` (plate, well, site), where, `reasons` (flag:count for plates and
/// wells; the site's flags), `failed` and `sites`. A well is flagged when all its sites
/// fail, a plate when more than `fraction` of them do. Sites stored before QC was measured
/// (NULL `qc_pass`) are left out.
fn report_sql(fraction: f64) -> String {
    format!(
        "WITH s AS (
           SELECT experiment, plate, well, site_id, qc_pass, qc_flags FROM sites
           WHERE qc_pass IS NOT NULL
         ), failed AS (SELECT * FROM s WHERE NOT qc_pass),
         flag AS (SELECT experiment, plate, well, unnest(qc_flags) AS f FROM failed),
         well_reasons AS (
           SELECT experiment, plate, well,
                  string_agg(concat(f, ':', CAST(n AS VARCHAR)), ',' ORDER BY f) AS reasons
           FROM (SELECT experiment, plate, well, f, count(*) AS n FROM flag GROUP BY 1, 2, 3, 4)
           GROUP BY 1, 2, 3
         ), plate_reasons AS (
           SELECT experiment, plate,
                  string_agg(concat(f, ':', CAST(n AS VARCHAR)), ',' ORDER BY f) AS reasons
           FROM (SELECT experiment, plate, f, count(*) AS n FROM flag GROUP BY 1, 2, 3)
           GROUP BY 1, 2
         ), wells AS (
           SELECT experiment, plate, well, count(*) AS sites,
                  sum(CASE WHEN qc_pass THEN 0 ELSE 1 END) AS failed
           FROM s GROUP BY 1, 2, 3
         ), plates AS (
           SELECT experiment, plate, count(*) AS sites,
                  sum(CASE WHEN qc_pass THEN 0 ELSE 1 END) AS failed
           FROM s GROUP BY 1, 2
         )
         SELECT level, experiment, plate, well, site_id, reasons, failed, sites FROM (
           SELECT 1 AS o, 'plate' AS level, p.experiment, p.plate, CAST(NULL AS VARCHAR) AS well,
                  CAST(NULL AS VARCHAR) AS site_id, r.reasons, p.failed, p.sites
           FROM plates p JOIN plate_reasons r ON p.experiment = r.experiment AND p.plate = r.plate
           WHERE p.failed > {fraction} * p.sites
           UNION ALL
           SELECT 2, 'well', w.experiment, w.plate, w.well, NULL, r.reasons, w.failed, w.sites
           FROM wells w JOIN well_reasons r
             ON w.experiment = r.experiment AND w.plate = r.plate AND w.well = r.well
           WHERE w.failed = w.sites
           UNION ALL
           SELECT 3, 'site', experiment, plate, well, site_id, array_to_string(qc_flags, ','),
                  1, 1
           FROM failed
         ) ORDER BY o, experiment, plate, well, site_id"
    )
}

/// `cellshard qc`.
pub(crate) async fn qc(a: QcArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&a.plate_fraction) {
        return Err(crate::exit::invalid(format!(
            "--plate-fraction {} must be in 0..=1",
            a.plate_fraction
        )));
    }
    let mut session = open(&a.store, &a.travel).await?;
    let batches = session.run(&report_sql(a.plate_fraction)).await?;
    let missing = session
        .run("SELECT count(*) FROM sites WHERE qc_pass IS NULL")
        .await?;
    let unmeasured = cellshard_sql::format(&missing, OutputFormat::Csv)?
        .lines()
        .nth(1)
        .unwrap_or("0")
        .to_string();
    if unmeasured != "0" {
        eprintln!(
            "qc: {unmeasured} site(s) were stored before QC was measured; rebuild their plates (cellshard run) to include them"
        );
    }
    let fmt = match a.format {
        QcFormat::Table => OutputFormat::Table,
        QcFormat::Csv => OutputFormat::Csv,
        QcFormat::Json => OutputFormat::Json,
    };
    match &a.output {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            cellshard_sql::write_output(&batches, fmt, &mut f)?;
        }
        None => cellshard_sql::write_output(&batches, fmt, &mut std::io::stdout())?,
    }
    Ok(())
}
