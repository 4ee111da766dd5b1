//! `cellshard sql` (one-shot or an interactive shell) and `cellshard export`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use cellshard_sql::export::{ExportFormat, ExportOptions};
use cellshard_sql::{AsOf, OutputFormat, Session};
use clap::ValueEnum;

/// Output formats on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON lines.
    Json,
    /// Parquet (needs --output; binary values kept).
    Parquet,
}

impl Format {
    fn output(self) -> OutputFormat {
        match self {
            Format::Table => OutputFormat::Table,
            Format::Csv => OutputFormat::Csv,
            Format::Json => OutputFormat::Json,
            Format::Parquet => OutputFormat::Parquet,
        }
    }
}

/// Which state of the store to read.
#[derive(clap::Args)]
pub struct TimeTravel {
    /// Read `sites` as of this Delta version (the other tables stay latest).
    #[arg(long, conflicts_with = "timestamp")]
    version: Option<i64>,
    /// Read every table as it was at this time (RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]] UTC).
    #[arg(long)]
    timestamp: Option<String>,
    /// Object store option for the store, KEY=VALUE (repeatable; e.g. endpoint, region).
    #[arg(long = "store-option", value_parser = parse_kv)]
    store_options: Vec<(String, String)>,
}

impl TimeTravel {
    fn as_of(&self) -> Result<AsOf> {
        Ok(match (&self.version, &self.timestamp) {
            (Some(v), _) => AsOf::Version(*v),
            (None, Some(t)) => AsOf::parse_timestamp(t)?,
            (None, None) => AsOf::Latest,
        })
    }

    pub(crate) fn options(&self) -> BTreeMap<String, String> {
        self.store_options.iter().cloned().collect()
    }
}

pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((k.trim().to_string(), v.to_string()))
}

/// `cellshard sql`.
#[derive(clap::Args)]
pub struct SqlArgs {
    /// Store root URL or path.
    #[arg(long)]
    store: String,
    /// SQL to run (several statements separated by ';').
    #[arg(short = 'c', long = "command", conflicts_with = "file")]
    command: Option<String>,
    /// A file of SQL statements to run.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// SQL to run, as a positional argument.
    #[arg(conflicts_with_all = ["command", "file"])]
    query: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write results to this file instead of standard output (required for Parquet).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Start the shell even when standard input is not a terminal (scripts, tests).
    #[arg(long)]
    interactive: bool,
    /// Most MiB of operator state (sorts, joins, aggregates) the queries hold; a query
    /// past it fails with "resources exhausted" (default: unbounded).
    #[arg(long)]
    query_memory: Option<usize>,
    /// Seconds each statement may run; past it the command stops with an error (exit 1).
    #[arg(long)]
    query_timeout: Option<f64>,
    /// Run statements that write or reach outside the store (CREATE EXTERNAL TABLE, COPY,
    /// DDL, DML, SET); without it only queries run.
    #[arg(long)]
    allow_writes: bool,
    /// Run every query on the Ballista cluster whose scheduler is at df://HOST[:PORT]
    /// (`cellshard scheduler`); the tables are pinned here, at the same versions.
    #[cfg(feature = "cluster")]
    #[arg(long, env = "CELLSHARD_CLUSTER")]
    cluster: Option<String>,
    /// Seconds to wait for the cluster's scheduler to accept a connection.
    #[cfg(feature = "cluster")]
    #[arg(long, default_value_t = 10.0)]
    cluster_timeout: f64,
    #[command(flatten)]
    travel: TimeTravel,
}

/// `cellshard export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Store root URL or path to read.
    #[arg(long)]
    store: String,
    /// The rows to export (may select `tensor` and any SQL expression).
    #[arg(long)]
    query: String,
    /// Target URL or path (must be new).
    #[arg(long)]
    to: String,
    /// Write a Delta table or plain Parquet files.
    #[arg(long, value_enum, default_value_t = ExportKind::Delta)]
    format: ExportKind,
    /// Partition columns of a Delta export, comma separated.
    #[arg(long, value_delimiter = ',')]
    partition_by: Vec<String>,
    /// ZSTD level of the tensor column.
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
    /// Object store option for the target, KEY=VALUE (repeatable).
    #[arg(long = "to-option", value_parser = parse_kv)]
    to_options: Vec<(String, String)>,
    #[command(flatten)]
    travel: TimeTravel,
}

/// Export targets.
#[derive(Clone, Copy, ValueEnum)]
pub enum ExportKind {
    /// A Delta table.
    Delta,
    /// Parquet files.
    Parquet,
}

pub(crate) async fn open(store: &str, travel: &TimeTravel) -> Result<Session> {
    open_bounded(store, travel, None).await
}

/// Open a session whose queries together hold at most `memory_mib` MiB of operator state.
pub(crate) async fn open_bounded(
    store: &str,
    travel: &TimeTravel,
    memory_mib: Option<usize>,
) -> Result<Session> {
    let memory = memory_mib.map(|m| m.saturating_mul(1 << 20));
    Ok(cellshard_sql::open_session_with(store, &travel.options(), travel.as_of()?, memory).await?)
}

#[cfg(feature = "cluster")]
async fn open_sql(a: &SqlArgs) -> Result<Session> {
    let Some(cluster) = &a.cluster else {
        return open_bounded(&a.store, &a.travel, a.query_memory).await;
    };
    let url = cellshard_cluster::ClusterUrl::parse(cluster)?;
    let timeout = std::time::Duration::try_from_secs_f64(a.cluster_timeout)
        .context("--cluster-timeout must be a number of seconds")?;
    let options = a.travel.options();
    Ok(cellshard_cluster::connect(&url, timeout, &a.store, &options, a.travel.as_of()?).await?)
}

#[cfg(not(feature = "cluster"))]
async fn open_sql(a: &SqlArgs) -> Result<Session> {
    open_bounded(&a.store, &a.travel, a.query_memory).await
}

/// Run `cellshard sql`.
pub async fn sql(a: SqlArgs) -> Result<()> {
    let fmt = a.format.output();
    if fmt == OutputFormat::Parquet && a.output.is_none() {
        return Err(crate::exit::invalid("--format parquet needs --output FILE"));
    }
    let text = match (&a.command, &a.query, &a.file) {
        (Some(q), _, _) | (None, Some(q), _) => Some(q.clone()),
        (None, None, Some(f)) => Some(
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        ),
        (None, None, None) if !a.interactive && !std::io::stdin().is_terminal() => {
            let mut t = String::new();
            std::io::stdin().read_to_string(&mut t)?;
            Some(t)
        }
        (None, None, None) => None,
    };
    let timeout = match a.query_timeout {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(
            std::time::Duration::try_from_secs_f64(s)
                .map_err(|_| crate::exit::invalid("--query-timeout is out of range"))?,
        ),
        Some(_) => return Err(crate::exit::invalid("--query-timeout must be positive")),
    };
    let mut session = open_sql(&a).await?;
    session.allow_writes(a.allow_writes);
    let mut out: Box<dyn Write + Send> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let Some(text) = text else {
        if fmt == OutputFormat::Parquet {
            return Err(crate::exit::invalid(
                "--format parquet writes one result: pass the query with -c or -f",
            ));
        }
        return repl(&mut session, fmt, &mut out).await;
    };
    let statements = cellshard_sql::split_statements(&text);
    if statements.is_empty() {
        return Err(crate::exit::invalid(
            "no SQL given: pass a query, -c SQL, -f FILE, or pipe statements on standard input",
        ));
    }
    if fmt == OutputFormat::Parquet && statements.len() > 1 {
        return Err(crate::exit::invalid(
            "--format parquet writes one result: give one statement",
        ));
    }
    for q in statements {
        let batches = session
            .run_within(&q, timeout)
            .await
            .with_context(|| format!("in: {}", first_line(&q)))?;
        cellshard_sql::write_output(&batches, fmt, &mut out)?;
        if fmt == OutputFormat::Table {
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn first_line(q: &str) -> String {
    let l = q.lines().next().unwrap_or("");
    if l.len() < q.trim_end().len() {
        format!("{l} ...")
    } else {
        l.to_string()
    }
}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("CELLSHARD_HISTORY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cellshard_history")))
}

/// The interactive shell: statements end with ';' and may span lines; backslash commands
/// end at the line. History is kept in `~/.cellshard_history` (or `$CELLSHARD_HISTORY`).
async fn repl(
    session: &mut Session,
    fmt: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let mut rl = rustyline::DefaultEditor::new()?;
    let history = history_file();
    if let Some(h) = &history {
        rl.load_history(h).ok();
    }
    eprintln!(
        "cellshard sql on {} ({}). End statements with ';'. \\d lists tables and views, \\d NAME its columns, \\df the tensor functions, \\version N / \\timestamp T / \\latest time-travel, \\q quits.",
        session.root.url, session.as_of
    );
    for (view, why) in &session.skipped_views {
        eprintln!("note: view {view} not created: {why}");
    }
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() {
            "cellshard> "
        } else {
            "      ...> "
        };
        let line = match rl.readline(prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buf.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buf.is_empty() && (trimmed == "\\q" || trimmed == "quit" || trimmed == "exit") {
            break;
        }
        if trimmed.is_empty() && buf.is_empty() {
            continue;
        }
        buf.push_str(&line);
        buf.push('\n');
        let complete = buf.trim_start().starts_with('\\') || buf.trim_end().ends_with(';');
        if !complete {
            continue;
        }
        let text = std::mem::take(&mut buf);
        rl.add_history_entry(text.trim_end())?;
        for q in cellshard_sql::split_statements(&text) {
            let started = std::time::Instant::now();
            match session.run(&q).await {
                Ok(batches) => {
                    cellshard_sql::write_output(&batches, fmt, out)?;
                    writeln!(out)?;
                    eprintln!(
                        "({} rows, {:.3} s)",
                        cellshard_sql::row_count(&batches),
                        started.elapsed().as_secs_f64()
                    );
                }
                Err(e) => eprintln!("error: {}", cellshard_core::error_line(&e)),
            }
        }
        out.flush()?;
    }
    if let Some(h) = &history {
        rl.save_history(h).ok();
    }
    Ok(())
}

/// Run `cellshard export`.
pub async fn export(a: ExportArgs) -> Result<()> {
    let session = open(&a.store, &a.travel).await?;
    let opts = ExportOptions {
        options: a.to_options.into_iter().collect(),
        format: match a.format {
            ExportKind::Delta => ExportFormat::Delta,
            ExportKind::Parquet => ExportFormat::Parquet,
        },
        partition_by: a.partition_by,
        zstd_level: a.zstd_level,
        ..ExportOptions::new(a.to)
    };
    let summary = cellshard_sql::export::export(&session, &a.query, &opts).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
