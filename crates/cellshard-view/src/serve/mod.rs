//! `cellshard serve`: a read-only HTTP viewer over one SQL session of a store.
//!
//! Pages are server-rendered HTML (assets embedded in the binary, nothing fetched from
//! elsewhere). Queries and pictures run on a runtime of their own, under a row cap and a
//! timeout, so a slow query never holds up the pages of other requests.

mod guard;
pub mod html;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use cellshard_sql::Session;
use futures::StreamExt;
use serde::Deserialize;

use crate::data::{self, COLS, ROWS, Stat, literal, well_name};
use crate::render;
use crate::{Error, Result};
use html::{enc, esc, page};

pub use guard::check as check_read_only;

/// How the viewer runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// A token every request must carry (`Authorization: Bearer`, `?token=` or the cookie
    /// the latter sets). Required to listen on anything but a loopback address.
    pub token: Option<String>,
    /// Most rows a query returns (more are cut, and the page says so).
    pub max_rows: usize,
    /// Rows per page of results.
    pub page_rows: usize,
    /// Longest a query or picture may run.
    pub timeout: Duration,
    /// Threads of the query runtime.
    pub query_threads: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_rows: 10_000,
            page_rows: 50,
            timeout: Duration::from_secs(30),
            query_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

struct Viewer {
    session: Arc<Session>,
    opts: ServeOptions,
    queries: tokio::runtime::Handle,
    store: String,
}

type Shared = Arc<Viewer>;

/// Serve `session` until the process ends; `ready` gets the bound address (port 0 picks one).
pub async fn serve(
    session: Session,
    opts: ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    if opts.token.as_deref().is_some_and(|t| t.len() < 8) {
        return Err(Error::Usage(
            "--token must be at least 8 characters (an empty one would let anyone in)".into(),
        ));
    }
    if opts.token.is_none() && !opts.bind.ip().is_loopback() {
        return Err(Error::Usage(format!(
            "refusing to serve a store on {} without --token: anyone who can reach it could read the store (give --token, or bind to 127.0.0.1)",
            opts.bind
        )));
    }
    // Queries run on their own runtime; it lives as long as the process (a server that
    // stops only when killed), so it is leaked rather than dropped inside this one.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.query_threads.max(1))
        .thread_name("cellshard-query")
        .enable_all()
        .build()?;
    let queries = Box::leak(Box::new(rt)).handle().clone();
    let store = format!(
        "{} · {}",
        session.root.url,
        session
            .versions
            .iter()
            .map(|(t, v)| format!("{t} v{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let listener = tokio::net::TcpListener::bind(opts.bind)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {}: {e}", opts.bind)))?;
    let state: Shared = Arc::new(Viewer {
        session: Arc::new(session),
        opts,
        queries,
        store,
    });
    let app = Router::new()
        .route("/", get(store_page))
        .route("/sql", get(sql_page))
        .route("/plate/{experiment}/{plate}", get(plate_page))
        .route("/site/{site_id}", get(site_page))
        .route("/img/site/{site_id}", get(site_image))
        .route("/img/plate/{experiment}/{plate}", get(plate_image))
        .route("/assets/style.css", get(css))
        .route("/assets/app.js", get(js))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    ready(listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

const COOKIE: &str = "cellshard_token";

async fn auth(State(v): State<Shared>, req: Request, next: Next) -> Response {
    let Some(token) = v.opts.token.as_deref() else {
        // Loopback without a token: only requests addressed to this machine by name, so a
        // web page cannot reach the viewer by rebinding its own host name to 127.0.0.1.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = match host.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        if !matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
            let msg = "this viewer answers only requests for localhost; give --token to serve other hosts";
            return (
                StatusCode::FORBIDDEN,
                Html(page("Forbidden", "", &html::error(msg))),
            )
                .into_response();
        }
        return next.run(req).await;
    };
    let token_enc = enc(token);
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string());
    let query = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    if bearer == Some(token) || cookie.as_deref() == Some(token_enc.as_str()) {
        return next.run(req).await;
    }
    if query.is_some_and(|q| decode(&q) == token) {
        let mut res = next.run(req).await;
        let cookie = format!("{COOKIE}={token_enc}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(c) = HeaderValue::from_str(&cookie) {
            res.headers_mut().insert(header::SET_COOKIE, c);
        }
        return res;
    }
    (
        StatusCode::UNAUTHORIZED,
        Html(page("Token required", "", &html::error("this viewer needs its token: open it with ?token=... or send Authorization: Bearer ..."))),
    )
        .into_response()
}

/// Percent-decode a query string value (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Viewer {
    /// Run `work` on the query runtime under the timeout.
    async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let task = self.queries.spawn(work);
        let abort = task.abort_handle();
        match tokio::time::timeout(self.opts.timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(Error::Usage(format!("the query failed: {e}"))),
            Err(_) => {
                abort.abort();
                Err(Error::Usage(format!(
                    "the query was stopped after {} s (the viewer's --query-timeout)",
                    self.opts.timeout.as_secs_f64()
                )))
            }
        }
    }

    /// A guarded query, at most `limit` rows.
    async fn query(&self, sql: String, limit: usize) -> Result<Vec<RecordBatch>> {
        Ok(self.query_page(sql, limit, 0, limit).await?.0)
    }

    /// A guarded query: rows `skip..skip+take` of its first `limit` rows, and how many rows
    /// it has up to `limit`. Rows come off the result stream, only the page's are kept (a
    /// tensor column can be large), and the rest is never computed. A LIMIT node would not
    /// do: EXPLAIN ANALYZE must be the plan's root.
    async fn query_page(
        &self,
        sql: String,
        limit: usize,
        skip: usize,
        take: usize,
    ) -> Result<(Vec<RecordBatch>, usize)> {
        check_read_only(&sql).map_err(Error::Usage)?;
        let s = self.session.clone();
        self.run(async move {
            let df = s.ctx.sql_with_options(&sql, guard::options()).await?;
            let mut stream = df.execute_stream().await?;
            let (mut out, mut rows) = (Vec::new(), 0usize);
            while rows < limit {
                let Some(b) = stream.next().await else { break };
                let b = b?;
                let n = b.num_rows().min(limit - rows);
                let lo = skip.max(rows);
                let hi = skip.saturating_add(take).min(rows + n);
                if lo < hi {
                    out.push(b.slice(lo - rows, hi - lo));
                }
                rows += n;
            }
            Ok((out, rows))
        })
        .await
    }

    fn html(&self, title: &str, body: &str) -> Response {
        Html(page(title, &self.store, body)).into_response()
    }

    fn fail(&self, status: StatusCode, title: &str, e: &Error) -> Response {
        (
            status,
            Html(page(title, &self.store, &html::error(&e.to_string()))),
        )
            .into_response()
    }
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css")],
        include_str!("../../assets/style.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript")],
        include_str!("../../assets/app.js"),
    )
        .into_response()
}

async fn not_found(State(v): State<Shared>) -> Response {
    v.fail(
        StatusCode::NOT_FOUND,
        "Not found",
        &Error::Usage("no such page".into()),
    )
}

/// Store page: experiments, plates, rejects by reason, recent runs.
async fn store_page(State(v): State<Shared>) -> Response {
    let sections = [
        (
            "Experiments",
            "SELECT cell_type, experiment, count(DISTINCT plate) AS plates, count(*) AS sites, count(DISTINCT well) AS wells FROM sites GROUP BY cell_type, experiment ORDER BY cell_type, experiment",
        ),
        (
            "Plates",
            "SELECT cell_type, experiment, plate, sites, wells, negative_control_sites, positive_control_sites, treatment_sites, rejected_sites, bounds FROM plate_summary ORDER BY cell_type, experiment, plate",
        ),
        (
            "Rejects by reason",
            "SELECT stage, reason, count(*) AS objects, count(DISTINCT site_id) AS sites FROM rejects GROUP BY stage, reason ORDER BY objects DESC",
        ),
        (
            "Runs",
            "SELECT run_id, pipeline, worker, started_at, finished_at, plates, sites_stored, sites_rejected, objects_rejected, round(CAST(finished_at - started_at AS BIGINT) / 1e6, 1) AS seconds FROM runs ORDER BY started_at DESC LIMIT 20",
        ),
    ];
    let mut body = String::new();
    for (title, sql) in sections {
        body.push_str(&format!("<h2>{title}</h2>"));
        match v.query(sql.to_string(), 1000).await {
            Ok(b) => match html::table(&b, 0, 1000, v.session.tensor) {
                Ok(t) => body.push_str(&t),
                Err(e) => body.push_str(&html::error(&e.to_string())),
            },
            Err(e) => body.push_str(&html::error(&e.to_string())),
        }
    }
    v.html("Store", &body)
}

#[derive(Deserialize)]
struct SqlParams {
    q: Option<String>,
    page: Option<usize>,
}

/// The SQL box and a page of its results.
async fn sql_page(State(v): State<Shared>, Query(p): Query<SqlParams>) -> Response {
    let q = p.q.unwrap_or_default();
    let page_no = p.page.unwrap_or(1).max(1);
    let mut body = format!(
        r#"<form method="get" action="/sql"><textarea name="q" spellcheck="false" placeholder="SELECT site_id, well, sirna_id, tensor FROM controls LIMIT 20">{}</textarea>
<p><button type="submit" id="run">Run</button> <span class="note">Read-only: one SELECT at a time, at most {} rows, {} s. Tables: sites, plate_stats, rejects, runs; views: controls, treatments, site_qc, plate_summary, site_normalization; tensor functions (tensor_mean, tensor_thumbnail, ...). Ctrl+Enter runs.</span></p></form>"#,
        esc(&q),
        v.opts.max_rows,
        v.opts.timeout.as_secs_f64()
    );
    if q.trim().is_empty() {
        return v.html("SQL", &body);
    }
    let started = std::time::Instant::now();
    let rows = v.opts.page_rows.max(1);
    let skip = (page_no - 1).saturating_mul(rows);
    let limit = v.opts.max_rows.saturating_add(1);
    match v.query_page(q.clone(), limit, skip, rows).await {
        Ok((b, total)) => {
            let capped = total > v.opts.max_rows;
            let total = total.min(v.opts.max_rows);
            let pages = total.div_ceil(rows).max(1);
            body.push_str(&format!(
                r#"<p class="note" id="summary">{total} rows{} in {:.2} s; page {} of {pages}.</p>"#,
                if capped { format!(" (cut at the row cap of {})", v.opts.max_rows) } else { String::new() },
                started.elapsed().as_secs_f64(),
                page_no.min(pages)
            ));
            body.push_str(&pager(&q, page_no.min(pages), pages));
            // Thumbnails are drawn on the query runtime, under the timeout too.
            let take = rows.min(total.saturating_sub(skip));
            let spec = v.session.tensor;
            match v.run(async move { html::table(&b, 0, take, spec) }).await {
                Ok(t) => body.push_str(&t),
                Err(e) => body.push_str(&html::error(&e.to_string())),
            }
        }
        Err(e) => {
            body.push_str(&html::error(&e.to_string()));
            return (StatusCode::BAD_REQUEST, Html(page("SQL", &v.store, &body))).into_response();
        }
    }
    v.html("SQL", &body)
}

fn pager(q: &str, page_no: usize, pages: usize) -> String {
    if pages == 1 {
        return String::new();
    }
    let link =
        |p: usize, label: &str| format!(r#"<a href="/sql?q={}&amp;page={p}">{label}</a>"#, enc(q));
    let mut o = String::from(r#"<p class="pager">"#);
    if page_no > 1 {
        o.push_str(&link(page_no - 1, "&larr; previous"));
    }
    o.push_str(&format!("<span>page {page_no} / {pages}</span>"));
    if page_no < pages {
        o.push_str(&link(page_no + 1, "next &rarr;"));
    }
    o.push_str("</p>");
    o
}

#[derive(Deserialize)]
struct PlateParams {
    stat: Option<String>,
    channel: Option<usize>,
    before_after: Option<String>,
}

impl PlateParams {
    fn parse(&self) -> Result<(Stat, usize)> {
        let stat = Stat::parse(self.stat.as_deref().unwrap_or("mean"))?;
        let channel = self.channel.unwrap_or(1);
        if !(1..=6).contains(&channel) {
            return Err(Error::Usage(format!("channel {channel} is outside 1..=6")));
        }
        Ok((stat, channel))
    }
}

/// A plate's heatmap (PNG), its wells as links, and a statistic / channel selector.
async fn plate_page(
    State(v): State<Shared>,
    Path((experiment, plate)): Path<(String, i32)>,
    Query(p): Query<PlateParams>,
) -> Response {
    let title = format!("Plate {experiment}/{plate}");
    let (stat, channel) = match p.parse() {
        Ok(x) => x,
        Err(e) => return v.fail(StatusCode::BAD_REQUEST, &title, &e),
    };
    let s = v.session.clone();
    let (e2, stat2) = (experiment.clone(), stat);
    let got = v
        .run(async move {
            let values = data::plate_values(&s.ctx, &e2, Some(plate), stat2, channel).await?.plate(plate);
            let firsts = data::collect(
                &s.ctx,
                &format!(
                    "SELECT well, min(site_id) AS site_id FROM sites WHERE experiment = {} AND plate = {plate} GROUP BY well",
                    literal(&e2)
                ),
                None,
            )
            .await?;
            Ok((values, firsts))
        })
        .await;
    let (values, firsts) = match got {
        Ok(x) => x,
        Err(e) => return v.fail(StatusCode::BAD_REQUEST, &title, &e),
    };
    if values.is_empty() && firsts.iter().all(|b| b.num_rows() == 0) {
        return v.fail(
            StatusCode::NOT_FOUND,
            &title,
            &Error::Usage(format!(
                "no sites of plate {plate} of {experiment} in the store"
            )),
        );
    }
    let mut site_of: BTreeMap<String, String> = BTreeMap::new();
    for b in &firsts {
        let w = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8);
        let s = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8);
        if let (Ok(w), Ok(s)) = (w, s) {
            use arrow::array::{Array, AsArray};
            let (w, s) = (w.as_string::<i32>(), s.as_string::<i32>());
            for i in 0..w.len() {
                site_of.insert(w.value(i).to_string(), s.value(i).to_string());
            }
        }
    }
    let range = render::range_of(&values);
    let mut body = String::from(
        r#"<form class="inline" method="get">Statistic <select name="stat" data-autosubmit>"#,
    );
    for s in data::STATS {
        body.push_str(&format!(
            r#"<option value="{s}"{}>{s}</option>"#,
            if s == stat.name() { " selected" } else { "" }
        ));
    }
    body.push_str(r#"</select> Channel <select name="channel" data-autosubmit>"#);
    for c in 1..=6 {
        body.push_str(&format!(
            r#"<option value="{c}"{}>{}</option>"#,
            if c == channel { " selected" } else { "" },
            esc(&data::channel_label(c))
        ));
    }
    body.push_str(r#"</select><noscript><button>Show</button></noscript></form>"#);
    let q = format!("stat={}&amp;channel={channel}", stat.name());
    body.push_str(&format!(
        r#"<p><img id="heatmap" alt="heatmap" src="/img/plate/{}/{plate}?{q}"></p>"#,
        enc(&experiment)
    ));
    body.push_str(&format!(
        r#"<h2>Wells</h2><p class="note">{}: {} wells with a value, {} to {}. Click a well for its first site.</p><table class="plate" id="wells"><tr><th></th>"#,
        esc(&stat.title(channel)),
        values.len(),
        render::format_value(range.0),
        render::format_value(range.1)
    ));
    for c in 0..COLS {
        body.push_str(&format!("<th>{}</th>", c + 1));
    }
    body.push_str("</tr>");
    for r in 0..ROWS {
        body.push_str(&format!("<tr><th>{}</th>", (b'A' + r as u8) as char));
        for c in 0..COLS {
            let well = well_name(r, c);
            match (values.get(&well), site_of.get(&well)) {
                (value, Some(site)) => {
                    let colour = value.map_or(crate::canvas::EMPTY, |&x| {
                        crate::colormap::viridis(render::scaled(x, range))
                    });
                    let tip = value.map_or("no value".to_string(), |x| render::format_value(*x));
                    body.push_str(&format!(
                        r#"<td style="background:{}"><a class="well" data-well="{well}" href="/site/{}" title="{well}: {}"></a></td>"#,
                        crate::colormap::hex(colour),
                        enc(site),
                        esc(&tip)
                    ));
                }
                (Some(x), None) => body.push_str(&format!(
                    r#"<td style="background:{}" title="{well}: {}"></td>"#,
                    crate::colormap::hex(crate::colormap::viridis(render::scaled(*x, range))),
                    render::format_value(*x)
                )),
                (None, None) => body.push_str(r#"<td class="empty"></td>"#),
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    if matches!(stat, Stat::Qc("mean") | Stat::RawMean) {
        body.push_str(&format!(
            r#"<h2>Before and after per-plate normalization</h2><p class="note">Raw crop means and stored means of {} on the colour ranges of every plate of {} (a plate effect shows as a whole plate shifted on the left, and is gone on the right).</p><p><img id="before-after" alt="before and after normalization" src="/img/plate/{}/{plate}?stat=mean&amp;channel={channel}&amp;before_after=1"></p>"#,
            esc(&data::channel_label(channel)),
            esc(&experiment),
            enc(&experiment)
        ));
    }
    v.html(&title, &body)
}

/// The heatmap PNG of `stat` (or the before/after pair).
async fn plate_image(
    State(v): State<Shared>,
    Path((experiment, plate)): Path<(String, i32)>,
    Query(p): Query<PlateParams>,
) -> Response {
    let (stat, channel) = match p.parse() {
        Ok(x) => x,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let before_after = p.before_after.is_some_and(|s| s != "0");
    let s = v.session.clone();
    let png = v
        .run(async move {
            let canvas = if before_after {
                render::before_after(&s.ctx, &experiment, plate, channel).await?
            } else {
                render::plate(&s.ctx, &experiment, plate, stat, channel).await?
            };
            canvas.png()
        })
        .await;
    png_response(png)
}

fn png_response(png: Result<Vec<u8>>) -> Response {
    match png {
        Ok(b) => ([(header::CONTENT_TYPE, "image/png")], b).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct SiteImageParams {
    channels: Option<String>,
    size: Option<usize>,
    gray: Option<String>,
    contrast: Option<String>,
}

/// A site's composite, or one channel in grayscale (`gray=1`, one channel).
async fn site_image(
    State(v): State<Shared>,
    Path(site_id): Path<String>,
    Query(p): Query<SiteImageParams>,
) -> Response {
    let s = v.session.clone();
    let png = v
        .run(async move {
            let site = data::site(&s, &site_id).await?;
            let channels = match &p.channels {
                Some(c) => render::parse_channels(c)?,
                None => render::all_channels(&site),
            };
            let size = p.size.unwrap_or(site.spec.height.min(site.spec.width));
            let contrast = render::Contrast::parse(p.contrast.as_deref().unwrap_or("rxrx1"))?;
            let c = if p.gray.is_some_and(|g| g != "0") {
                let [c] = channels[..] else {
                    return Err(Error::Usage("gray=1 draws exactly one channel".into()));
                };
                render::channel_tile(&site, c, size, contrast)?
            } else {
                render::composite(&site, &channels, size, contrast)?
            };
            c.png()
        })
        .await;
    png_response(png)
}

/// A site: composite, channel tiles, metadata, the normalization applied, source objects.
#[derive(Deserialize)]
struct SitePageParams {
    contrast: Option<String>,
}

async fn site_page(
    State(v): State<Shared>,
    Path(site_id): Path<String>,
    Query(p): Query<SitePageParams>,
) -> Response {
    let auto = p.contrast.as_deref() == Some("auto");
    let contrast = if auto { "&amp;contrast=auto" } else { "" };
    let title = format!("Site {site_id}");
    let id = literal(&site_id);
    let meta = v
        .query(
            format!("SELECT * EXCLUDE (tensor, source_paths, source_etags, source_sizes) FROM sites WHERE site_id = {id}"),
            2,
        )
        .await;
    let meta = match meta {
        Ok(b) if b.iter().map(|b| b.num_rows()).sum::<usize>() == 1 => b,
        Ok(_) => {
            return v.fail(
                StatusCode::NOT_FOUND,
                &title,
                &Error::Usage(format!("no site {site_id:?} in the store")),
            );
        }
        Err(e) => return v.fail(StatusCode::BAD_REQUEST, &title, &e),
    };
    let channels = v.session.tensor.map_or(6, |t| t.channels.min(6));
    let size = v.session.tensor.map_or(512, |t| t.height.min(t.width));
    let tile = size.min(192);
    // Small tensors are shown enlarged (pixelated), never below these sizes.
    let (shown, tile_shown) = (size.max(384), tile.max(160));
    let sid = enc(&site_id);
    let mut body = format!(
        r#"<div class="tiles"><figure><img id="composite" alt="composite" width="{shown}" height="{shown}" src="/img/site/{sid}?size={size}{contrast}"><figcaption>composite of w1..w{channels} in the RxRx1 viewer colours, {} (<a id="contrast" href="/site/{sid}{}">{}</a>)</figcaption></figure></div><h2>Channels</h2><div class="tiles">"#,
        if auto {
            "each channel's 99.5th percentile at full colour"
        } else {
            "RxRx1 display maxima"
        },
        if auto { "" } else { "?contrast=auto" },
        if auto {
            "RxRx1 maxima"
        } else {
            "auto contrast"
        },
    );
    for c in 1..=channels {
        body.push_str(&format!(
            r#"<figure><img class="tile" alt="channel {c}" width="{tile_shown}" height="{tile_shown}" src="/img/site/{sid}?channels={c}&amp;gray=1&amp;size={tile}{contrast}"><figcaption>{}</figcaption></figure>"#,
            esc(&data::channel_label(c))
        ));
    }
    body.push_str("</div><h2>Metadata</h2>");
    body.push_str(&html::record(&meta).unwrap_or_else(|e| html::error(&e.to_string())));
    for (h, sql) in [
        (
            "Normalization applied (this site's plate build)",
            format!(
                "SELECT channel, method, reference, p_low, p_high, low_value, high_value, mean, std FROM site_normalization WHERE site_id = {id} ORDER BY channel"
            ),
        ),
        (
            "Source objects",
            format!("SELECT unnest(source_paths) AS source_path FROM sites WHERE site_id = {id}"),
        ),
    ] {
        body.push_str(&format!("<h2>{h}</h2>"));
        match v.query(sql, 100).await {
            Ok(b) => body.push_str(
                &html::table(&b, 0, 100, None).unwrap_or_else(|e| html::error(&e.to_string())),
            ),
            Err(e) => body.push_str(&html::error(&e.to_string())),
        }
    }
    v.html(&title, &body)
}
