//! The viewer's pages: the store, the SQL box, a site; assets and the fallbacks.

use axum::extract::{Path, Query, State};
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Shared;
use super::html::{self, enc, esc};

use crate::Error;
use crate::data::literal;

pub(super) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css")],
        include_str!("../../assets/style.css"),
    )
        .into_response()
}

pub(super) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript")],
        include_str!("../../assets/app.js"),
    )
        .into_response()
}

pub(super) async fn not_found(State(v): State<Shared>, uri: Uri) -> Response {
    v.fail(
        "Not found",
        &Error::NotFound(format!("no page {} in this viewer", uri.path())),
    )
}

/// Liveness: answers while the queries are full, without the token.
pub(super) async fn health() -> &'static str {
    "ok"
}

/// Store page: experiments, plates, rejects by reason, recent runs.
pub(super) async fn store_page(State(v): State<Shared>) -> Response {
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
pub(super) struct SqlParams {
    q: Option<String>,
    page: Option<usize>,
}

/// The SQL box and a page of its results.
pub(super) async fn sql_page(State(v): State<Shared>, Query(p): Query<SqlParams>) -> Response {
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
    match v.visitor_query(q.clone(), limit, skip, rows).await {
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
            return v.fail_with("SQL", &e, &body);
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

/// A site: composite, channel tiles, metadata, the normalization applied, source objects.
#[derive(Deserialize)]
pub(super) struct SitePageParams {
    contrast: Option<String>,
    /// The model whose nearest neighbours the page shows.
    model: Option<String>,
}

pub(super) async fn site_page(
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
                &title,
                &Error::NotFound(format!("no site {site_id:?} in the store")),
            );
        }
        Err(e) => return v.fail(&title, &e),
    };
    let palette = v.palette();
    let channels = palette.len();
    let size = v.session.tensor.map_or(512, |t| t.height.min(t.width));
    let tile = size.min(192);
    // Small tensors are shown enlarged (pixelated), never below these sizes.
    let (shown, tile_shown) = (size.max(384), tile.max(160));
    let sid = enc(&site_id);
    let mut body = format!(
        r#"<div class="tiles"><figure><img id="composite" alt="composite" width="{shown}" height="{shown}" src="/img/site/{sid}?size={size}{contrast}"><figcaption>composite of {} in their colours, {} (<a id="contrast" href="/site/{sid}{}">{}</a>)</figcaption></figure></div><h2>Channels</h2><div class="tiles">"#,
        esc(&palette.names.join(", ")),
        if auto {
            "each channel's 99.5th percentile at full colour"
        } else {
            "fixed display maxima"
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
            esc(&palette.label(c))
        ));
    }
    body.push_str("</div>");
    if v.session.versions.contains_key("embeddings") {
        body.push_str(&neighbours(&v, &site_id, p.model.as_deref()).await);
    }
    body.push_str("<h2>Metadata</h2>");
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

/// The site's nearest neighbours under a model (the one asked for, else the first), as
/// linked thumbnails, with a choice of model.
async fn neighbours(v: &Shared, site_id: &str, model: Option<&str>) -> String {
    let column = |b: &[arrow::record_batch::RecordBatch], c: usize| -> Vec<String> {
        b.iter()
            .flat_map(|b| {
                arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Utf8)
                    .map(|a| {
                        use arrow::array::AsArray;
                        a.as_string::<i32>()
                            .iter()
                            .map(|s| s.unwrap_or_default().to_string())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect()
    };
    let models = match v
        .query(
            "SELECT DISTINCT model FROM embeddings ORDER BY model".into(),
            100,
        )
        .await
    {
        Ok(b) => column(&b, 0),
        Err(e) => return html::error(&e.to_string()),
    };
    let Some(model) = model
        .filter(|m| models.iter().any(|x| x == m))
        .map(str::to_string)
        .or_else(|| models.first().cloned())
    else {
        return String::new();
    };
    let sid = enc(site_id);
    let mut out = format!(
        r#"<h2>Nearest neighbours</h2><form method="get" action="/site/{sid}">Model <select name="model" data-autosubmit>"#
    );
    for m in &models {
        out.push_str(&format!(
            r#"<option value="{}"{}>{}</option>"#,
            esc(m),
            if *m == model { " selected" } else { "" },
            esc(m)
        ));
    }
    out.push_str(
        r#"</select><noscript><button>Show</button></noscript></form><div class="tiles">"#,
    );
    let sql = format!(
        "SELECT site_id, similarity FROM nearest('embeddings', {}, {}, 8) ORDER BY rank",
        literal(&model),
        literal(site_id)
    );
    match v.query(sql, 8).await {
        Ok(b) => {
            for (n, s) in column(&b, 0).iter().zip(column(&b, 1)) {
                let s: f64 = s.parse().unwrap_or(f64::NAN);
                out.push_str(&format!(
                    r#"<figure><a href="/site/{0}"><img class="tile neighbour" alt="{1}" width="96" height="96" src="/img/site/{0}?size=96"></a><figcaption>{1}<br>cosine {s:.3}</figcaption></figure>"#,
                    enc(n),
                    esc(n)
                ));
            }
        }
        Err(e) => out.push_str(&html::error(&e.to_string())),
    }
    out.push_str("</div>");
    out
}
