//! `cellshard render` (pictures to PNG files) and `cellshard serve` (the web viewer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use cellshard_view::data;
use cellshard_view::render;
use cellshard_view::serve::{ServeOptions, WorkerSpec, serve};
use cellshard_view::stat::Stat;

use crate::sql::{TimeTravel, open, open_bounded};

/// `cellshard render`.
#[derive(clap::Args)]
pub struct RenderArgs {
    /// Store root URL or path.
    #[arg(long)]
    store: String,
    /// One site by id (EXPERIMENT_PLATE_WELL_SITE, e.g. HUVEC-01_1_B02_1).
    #[arg(long, conflicts_with_all = ["query", "plate"])]
    site: Option<String>,
    /// A contact sheet of the sites a query returns (it must return site_id and tensor).
    #[arg(long, conflicts_with = "plate")]
    query: Option<String>,
    /// A plate heatmap: EXPERIMENT/PLATE, e.g. HUVEC-01/1.
    #[arg(long)]
    plate: Option<String>,
    /// Channels to draw (1-based, comma separated; default all six).
    #[arg(long)]
    channels: Option<String>,
    /// With --site: each channel as a labelled grayscale tile beside the composite. With
    /// --query: one labelled composite per site (the default for --query).
    #[arg(long)]
    grid: bool,
    /// Side of each picture in pixels (default: the tensor's side for --site, 128 for a
    /// contact sheet, 256 for a --grid tile).
    #[arg(long)]
    size: Option<usize>,
    /// Colour scale: rxrx1 (the RxRx1 viewer's fixed display maxima, as tensor_thumbnail)
    /// or auto (each channel's 99.5th percentile of the site at full colour).
    #[arg(long, default_value = "rxrx1")]
    contrast: String,
    /// Most sites in a contact sheet (a query returning more is refused).
    #[arg(long, default_value_t = data::DEFAULT_MAX_SITES)]
    max_sites: usize,
    /// Heatmap statistic per well: mean, std, z_mean (site_qc), blank, low_contrast,
    /// outlier, saturated (fraction of sites flagged), raw_mean (before normalization),
    /// sites (stored per well), rejected (rejected sites per well).
    #[arg(long, default_value = "mean")]
    stat: String,
    /// Heatmap channel (for per-channel statistics).
    #[arg(long, default_value_t = 1)]
    channel: usize,
    /// Heatmap: raw crop means beside the normalized means, on ranges shared by every plate
    /// of the experiment.
    #[arg(long)]
    before_after: bool,
    /// Output PNG file.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    #[command(flatten)]
    travel: TimeTravel,
}

/// `cellshard serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Store root URL or path.
    #[arg(long)]
    store: String,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Token every request must carry (?token=..., then a cookie; or Authorization:
    /// Bearer ...). Required for a non-loopback --bind.
    #[arg(long, env = "CELLSHARD_VIEWER_TOKEN")]
    token: Option<String>,
    /// Most rows a query returns.
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
    /// Seconds a query or picture may run.
    #[arg(long, default_value_t = 30.0)]
    query_timeout: f64,
    /// Threads that run queries and draw pictures (default: all cores).
    #[arg(long)]
    query_threads: Option<usize>,
    /// Most queries and pictures that run at once; more wait, up to --query-timeout.
    #[arg(long, default_value_t = 4)]
    max_queries: usize,
    /// Most MiB of operator state (sorts, joins, aggregates) the running queries hold
    /// together; a query past it is answered 503 "resources exhausted".
    #[arg(long, default_value_t = 1024)]
    query_memory: usize,
    /// Run visitors' SQL inside the server process instead of in worker processes (a
    /// query past the timeout then keeps its CPU until it next yields).
    #[arg(long)]
    in_process: bool,
    #[command(flatten)]
    travel: TimeTravel,
}

/// The command line that runs this program's `sub`command: this executable, or, inside the
/// Python package's console command, `python -m cellshard`.
fn self_command(sub: &str) -> Vec<std::ffi::OsString> {
    let mut cmd: Vec<std::ffi::OsString> = match std::env::var_os("CELLSHARD_PYTHON_EXE") {
        Some(python) => vec![python, "-m".into(), "cellshard".into()],
        None => vec![
            std::env::current_exe()
                .map(Into::into)
                .unwrap_or_else(|_| "cellshard".into()),
        ],
    };
    cmd.push(sub.into());
    cmd
}

pub async fn render_cmd(a: RenderArgs) -> Result<()> {
    let session = open(&a.store, &a.travel).await?;
    let palette = cellshard_core::palette::Palette::new(
        session.tensor.map_or(6, |t| t.channels),
        &session.channel_names,
    );
    let channels = a
        .channels
        .as_deref()
        .map(|c| render::parse_channels(c, &palette))
        .transpose()?;
    let contrast = render::Contrast::parse(&a.contrast)?;
    let canvas = if let Some(id) = &a.site {
        let site = data::site(&session, id).await?;
        let channels = channels.unwrap_or_else(|| render::all_channels(&site));
        let side = site.spec.height.min(site.spec.width);
        if a.grid {
            render::site_grid(&site, &channels, a.size.unwrap_or(side.min(256)), contrast)?
        } else {
            render::composite(&site, &channels, a.size.unwrap_or(side), contrast)?
        }
    } else if let Some(q) = &a.query {
        if a.max_sites > data::MAX_SITES {
            return Err(crate::exit::invalid(format!(
                "--max-sites {} is above {}",
                a.max_sites,
                data::MAX_SITES
            )));
        }
        let sites = data::sites_from_query(&session, q, a.max_sites).await?;
        let Some(first) = sites.first() else {
            return Err(crate::exit::invalid("the query returned no sites"));
        };
        let channels = channels.unwrap_or_else(|| render::all_channels(first));
        let side = first.spec.height.min(first.spec.width);
        render::contact_sheet(&sites, &channels, a.size.unwrap_or(side.min(128)), contrast)?
    } else if let Some(p) = &a.plate {
        let (experiment, plate) = data::parse_plate(p)?;
        data::check_channel(a.channel, session.tensor.map_or(6, |t| t.channels))?;
        if a.before_after {
            let d = data::before_after(&session.ctx, &experiment, plate, a.channel).await?;
            render::before_after(&experiment, plate, &palette.label(a.channel), &d)
        } else {
            let stat = Stat::parse(&a.stat)?;
            let values = data::plate_map(&session.ctx, &experiment, plate, stat, a.channel).await?;
            render::plate(&experiment, plate, stat, &palette.label(a.channel), &values)
        }
    } else {
        return Err(crate::exit::invalid(
            "say what to draw: --site ID, --query SQL or --plate EXPERIMENT/PLATE",
        ));
    };
    let png = canvas.png()?;
    std::fs::write(&a.output, &png)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    eprintln!(
        "wrote {} ({}x{} px)",
        a.output.display(),
        canvas.width,
        canvas.height
    );
    Ok(())
}

pub async fn serve_cmd(a: ServeArgs) -> Result<()> {
    if !a.query_timeout.is_finite() || a.query_timeout <= 0.0 {
        return Err(crate::exit::invalid("--query-timeout must be positive"));
    }
    let session = open_bounded(&a.store, &a.travel, Some(a.query_memory)).await?;
    // The workers read the state this session pinned: the same version, or every table as
    // of now (which includes every commit this session saw).
    let as_of = match session.as_of {
        cellshard_sql::AsOf::Latest => cellshard_sql::AsOf::Timestamp(chrono::Utc::now()),
        other => other,
    };
    let workers = (!a.in_process).then(|| WorkerSpec {
        command: self_command("query-worker"),
        store: a.store.clone(),
        options: a.travel.options(),
        as_of,
        memory: Some(a.query_memory.saturating_mul(1 << 20)),
    });
    let mut opts = ServeOptions {
        bind: a.bind,
        token: a.token,
        max_rows: a.max_rows.max(1),
        timeout: Duration::try_from_secs_f64(a.query_timeout)
            .map_err(|_| crate::exit::invalid("--query-timeout is out of range"))?,
        max_queries: a.max_queries,
        workers,
        ..ServeOptions::default()
    };
    if let Some(n) = a.query_threads {
        opts.query_threads = n.max(1);
    }
    let token = opts.token.is_some();
    serve(session, opts, |addr| {
        // The first line of stdout is the address (scripts and tests read it).
        println!("listening on http://{addr}/");
        if token {
            eprintln!("open http://{addr}/?token=... (the token given)");
        }
    })
    .await?;
    Ok(())
}
