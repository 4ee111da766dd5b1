//! `cellshard serve`: a read-only HTTP viewer over one SQL session of a store.
//!
//! Pages are server-rendered HTML (assets embedded in the binary, nothing fetched from
//! elsewhere). Queries and pictures run on a runtime of their own, under a row cap, a
//! timeout and a limit on how many run at once, so a slow query never holds up the pages
//! of other requests.
//!
//! Each failure answers the status of its class, mapped in one place ([`status_of`]):
//!
//! | status | when |
//! |---|---|
//! | 400 | a bad query or parameter (SQL that does not parse, an unknown column, a channel out of range) |
//! | 403 | a cross-site request, or a host name other than localhost without `--token` |
//! | 401 | no token, or the wrong one |
//! | 404 | an unknown site, plate or page |
//! | 503 | the store is unreachable, the queries' memory is exhausted, or `--max-queries` ran for the whole timeout while the request waited (with `Retry-After`) |
//! | 504 | a query or picture ran past `--query-timeout` |
//! | 500 | a bug (a query task panicked) |

mod auth;
pub mod html;
mod images;
mod pages;
mod plate;
mod query;
mod worker;

pub use worker::{RSS_SLACK, WorkerSpec, query_once, worker_main};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use cellshard_core::ErrorClass;
use cellshard_sql::Session;

use crate::{Error, Result};

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
    /// Most queries and pictures that run at once; more wait, and one that waits past the
    /// timeout is answered 503.
    pub max_queries: usize,
    /// Run visitors' SQL in worker processes started so (`None`: in this process, where a
    /// query past the timeout keeps its CPU until it next yields).
    pub workers: Option<WorkerSpec>,
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
            max_queries: 4,
            workers: None,
        }
    }
}

struct Viewer {
    session: Arc<Session>,
    opts: ServeOptions,
    queries: tokio::runtime::Handle,
    running: Arc<tokio::sync::Semaphore>,
    store: String,
    workers: Option<Arc<worker::Pool>>,
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
    if opts.max_queries == 0 {
        return Err(Error::Usage("--max-queries must be at least 1".into()));
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
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", opts.bind),
            ))
        })?;
    let workers = opts
        .workers
        .clone()
        .map(|spec| Arc::new(worker::Pool::new(spec)));
    if let Some(pool) = workers.clone() {
        tokio::spawn(async move { pool.warm().await });
    }
    let state: Shared = Arc::new(Viewer {
        session: Arc::new(session),
        running: Arc::new(tokio::sync::Semaphore::new(opts.max_queries)),
        opts,
        queries,
        store,
        workers,
    });
    let app = Router::new()
        .route("/", get(pages::store_page))
        .route("/sql", get(pages::sql_page))
        .route("/plate/{experiment}/{plate}", get(plate::plate_page))
        .route("/site/{site_id}", get(pages::site_page))
        .route("/img/site/{site_id}", get(images::site_image))
        .route("/img/plate/{experiment}/{plate}", get(images::plate_image))
        .route("/assets/style.css", get(pages::css))
        .route("/assets/app.js", get(pages::js))
        .route("/health", get(pages::health))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth::auth))
        .layer(middleware::from_fn(auth::same_origin))
        .layer(middleware::from_fn(auth::security_headers))
        .with_state(state);
    ready(listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The HTTP status of a failure: by its class, a timeout 504.
pub fn status_of(e: &Error) -> StatusCode {
    if matches!(e, Error::Timeout(_)) {
        return StatusCode::GATEWAY_TIMEOUT;
    }
    match e.class() {
        ErrorClass::BadInput => StatusCode::BAD_REQUEST,
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::External => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `body` with the status of `e`, and `Retry-After` when retrying later may succeed.
fn failure(e: &Error, body: impl IntoResponse) -> Response {
    let status = status_of(e);
    let mut res = (status, body).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let after = if matches!(e, Error::Busy(_)) {
            "1"
        } else {
            "5"
        };
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
    }
    res
}

impl Viewer {
    /// Channels of the store's tensors (six when the store holds none yet).
    fn channels(&self) -> usize {
        self.session.tensor.map_or(6, |t| t.channels)
    }

    /// How the store's channels are named and drawn.
    fn palette(&self) -> cellshard_core::palette::Palette {
        cellshard_core::palette::Palette::new(self.channels(), &self.session.channel_names)
    }

    fn html(&self, title: &str, body: &str) -> Response {
        Html(html::page(title, &self.store, body)).into_response()
    }

    /// An error page naming the cause, with the status of its class.
    fn fail(&self, title: &str, e: &Error) -> Response {
        self.fail_with(title, e, &html::error(&e.to_string()))
    }

    /// `body` (which says what failed) as a page with the status of `e`.
    fn fail_with(&self, title: &str, e: &Error, body: &str) -> Response {
        failure(e, Html(html::page(title, &self.store, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_of_failure_has_its_status_and_an_outage_says_when_to_retry() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cases = [
            (Error::Usage("bad".into()), 400),
            (Error::NotFound("no such site".into()), 404),
            (Error::Io(refused), 503),
            (Error::Busy(4), 503),
            (Error::Timeout(Duration::from_secs(3)), 504),
            (Error::Internal("a query task panicked".into()), 500),
        ];
        for (e, want) in cases {
            let res = failure(&e, e.to_string());
            assert_eq!(res.status().as_u16(), want, "{e}");
            assert_eq!(
                res.headers().contains_key(header::RETRY_AFTER),
                want == 503,
                "{e}"
            );
        }
    }
}
