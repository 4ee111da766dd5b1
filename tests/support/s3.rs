//! A real S3-protocol server on 127.0.0.1 (s3s over a local directory, SigV4
//! authentication on), with a fault layer in front of it: transient errors, resets and
//! delays at a chosen rate, 403 and 503 for chosen keys, and atomic put-if-absent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};

/// The server's access key.
pub const ACCESS_KEY: &str = "cellshard-test-access";
/// The secret must never appear in any message, log line, summary or table.
pub const SECRET_KEY: &str = "sEcReT-cellshard-9f8e7d6c5b4a";

/// Faults injected in front of the S3 server. Transient faults are answered before the
/// request reaches the server (as a throttling or failing front end would), so a retry is
/// always safe; permanent faults answer 403 for matching keys.
#[derive(Default)]
pub struct Faults {
    /// Share of requests that fail transiently, in parts per thousand.
    pub transient_per_mille: AtomicU64,
    /// Requests seen.
    pub requests: AtomicU64,
    /// Transient faults injected.
    pub injected: AtomicU64,
    /// Key substrings answered with 403 Forbidden on GET.
    pub forbidden: Mutex<Vec<String>>,
    /// Key substrings answered with 503 Service Unavailable on every GET (an outage that
    /// outlasts any retry policy).
    pub unavailable: Mutex<Vec<String>>,
    /// Serializes put-if-absent requests: the file-backed server checks `If-None-Match`
    /// and writes in two steps, so two racing commits could both succeed without this.
    pub create_lock: tokio::sync::Mutex<()>,
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn xml_error(status: u16, code: &str) -> s3s::HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected fault</Message></Error>"
    );
    http::Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(s3s::Body::from(body))
        .unwrap()
}

/// An S3 server on a loopback port, stopped when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The fault layer.
    pub faults: Arc<Faults>,
    _root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Server {
    /// Start a server with the given buckets.
    pub async fn start(buckets: &[&str]) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir_all(root.path().join(b)).unwrap();
        }
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let s3 = builder.build();
        let faults = Arc::new(Faults::default());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let f = faults.clone();
        let data_root = root.path().to_path_buf();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let s3 = s3.clone();
                let f = f.clone();
                let data_root = data_root.clone();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s3 = s3.clone();
                        let f = f.clone();
                        let data_root = data_root.clone();
                        async move {
                            let n = f.requests.fetch_add(1, Ordering::Relaxed);
                            let path = req.uri().path().to_string();
                            let safe = req.method() == http::Method::GET
                                || req.method() == http::Method::HEAD;
                            if safe
                                && f.forbidden
                                    .lock()
                                    .unwrap()
                                    .iter()
                                    .any(|k| path.contains(k.as_str()))
                            {
                                return Ok(xml_error(403, "AccessDenied"));
                            }
                            if safe
                                && f.unavailable
                                    .lock()
                                    .unwrap()
                                    .iter()
                                    .any(|k| path.contains(k.as_str()))
                            {
                                return Ok(xml_error(503, "ServiceUnavailable"));
                            }
                            let share = f.transient_per_mille.load(Ordering::Relaxed);
                            let r = mix(n);
                            if share > 0 && r % 1000 < share {
                                f.injected.fetch_add(1, Ordering::Relaxed);
                                match (r >> 20) % 3 {
                                    0 => return Ok(xml_error(503, "SlowDown")),
                                    1 if safe => {
                                        // Drop the connection without an answer (a reset).
                                        return Err(s3s::HttpError::new(Box::new(
                                            std::io::Error::other("injected reset"),
                                        )));
                                    }
                                    _ => return Ok(xml_error(500, "InternalError")),
                                }
                            }
                            if share > 0 && (r >> 40).is_multiple_of(10) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            let create = req.method() == http::Method::PUT
                                && req.headers().get("if-none-match").is_some_and(|v| v == "*");
                            if create {
                                let _guard = f.create_lock.lock().await;
                                if data_root.join(path.trim_start_matches('/')).exists() {
                                    return Ok(xml_error(412, "PreconditionFailed"));
                                }
                                return s3.call(req.map(s3s::Body::from)).await;
                            }
                            s3.call(req.map(s3s::Body::from)).await
                        }
                    });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), svc)
                        .await;
                });
            }
        });
        S3Server {
            endpoint: format!("http://{addr}"),
            faults,
            _root: root,
            task,
        }
    }

    /// Store options for this server (credentials included, as a pipeline could carry them).
    pub fn options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("endpoint".to_string(), self.endpoint.clone()),
            ("allow_http".to_string(), "true".to_string()),
            ("region".to_string(), "us-east-1".to_string()),
            ("access_key_id".to_string(), ACCESS_KEY.to_string()),
            ("secret_access_key".to_string(), SECRET_KEY.to_string()),
            ("max_retries".to_string(), "12".to_string()),
        ])
    }
}
