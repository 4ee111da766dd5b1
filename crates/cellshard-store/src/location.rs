//! Store locations: a URL (`s3://`, `gs://`, `az://`, `file://`, `memory://`) or a local
//! path, resolved to an object store rooted at the bucket (or filesystem root) plus a
//! prefix inside it.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, RetryConfig};
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::counting::{CountingStore, ReadStats};
use crate::{Error, Result};

/// `memory://NAME/...` stores live for the whole process so that one command's writer and
/// another's reader (in tests) see the same bytes.
static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(Default::default);

/// Request counters of one location's HTTP client.
#[derive(Debug, Default)]
pub struct IoStats {
    /// HTTP requests sent (every attempt).
    pub requests: AtomicU64,
    /// Attempts that failed transiently (5xx, 429, timeouts, resets); each one is retried
    /// with exponential backoff and jitter until `max_retries` or `retry_timeout` is reached.
    pub transient_failures: AtomicU64,
}

impl IoStats {
    /// Attempts that were retried (or exhausted the retry budget).
    pub fn retries(&self) -> u64 {
        self.transient_failures.load(Ordering::Relaxed)
    }
}

/// Counts requests and transient failures on the way to the real HTTP client.
#[derive(Debug)]
struct CountingService {
    inner: HttpClient,
    stats: Arc<IoStats>,
}

#[async_trait::async_trait]
impl HttpService for CountingService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let res = self.inner.execute(req).await;
        let transient = match &res {
            Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
            Err(_) => true,
        };
        if transient {
            self.stats
                .transient_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        res
    }
}

#[derive(Debug)]
struct CountingConnector {
    stats: Arc<IoStats>,
}

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(CountingService {
            inner,
            stats: self.stats.clone(),
        }))
    }
}

/// Retry policy for cloud stores: options `max_retries` (default 10) and `retry_timeout`
/// (seconds, default 180); backoff starts at 100 ms, doubles, caps at 15 s, with jitter.
fn retry_config(options: &BTreeMap<String, String>) -> std::result::Result<RetryConfig, String> {
    let num = |k: &str, default: u64| -> std::result::Result<u64, String> {
        options.get(k).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("option {k} must be a number"))
        })
    };
    Ok(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: usize::try_from(num("max_retries", 10)?)
            .map_err(|_| "option max_retries is too large".to_string())?,
        retry_timeout: Duration::from_secs(num("retry_timeout", 180)?),
    })
}

/// Keys cellshard reads itself; everything else goes to the object store builder.
const OWN_OPTIONS: [&str; 2] = ["max_retries", "retry_timeout"];

/// A resolved location.
#[derive(Clone)]
pub struct Location {
    /// The normalized URL (local paths become absolute `file://` URLs).
    pub url: Url,
    /// The store, rooted at the bucket or filesystem root.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix of this location inside `store`.
    pub prefix: Path,
    /// HTTP request counters (zero for local and memory stores).
    pub stats: Arc<IoStats>,
    /// Bytes read through `store`, for every kind of store.
    pub reads: Arc<ReadStats>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({})", self.url)
    }
}

/// Turn a URL or a local path into a URL; paths become absolute `file://` URLs.
pub fn resolve_url(text: &str) -> Result<Url> {
    let err = |message: String| Error::Location {
        url: text.to_string(),
        message,
    };
    if text.trim().is_empty() {
        return Err(err("empty location".into()));
    }
    if text.contains("://") {
        let url = Url::parse(text).map_err(|e| err(e.to_string()))?;
        return match url.scheme() {
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "adl" | "file" | "memory" => {
                Ok(url)
            }
            other => Err(err(format!(
                "unsupported scheme {other:?}; use s3, gs, az, file, memory or a local path"
            ))),
        };
    }
    let abs = std::path::absolute(text).map_err(|e| err(e.to_string()))?;
    // Resolve `.` and `..` lexically: object store paths refuse them.
    let mut clean = std::path::PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Url::from_directory_path(&clean).map_err(|_| err("cannot turn the path into a file URL".into()))
}

impl Location {
    /// Resolve `text` with object store `options` (endpoint, region, ...). Credentials come
    /// from the standard environment variables of each cloud unless given in `options`.
    ///
    /// A local path becomes a `file://` URL of a directory; an unknown option names the
    /// option, never its value.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cellshard_store::Location;
    ///
    /// let loc = Location::parse("/data/stores/rxrx1", &BTreeMap::new()).unwrap();
    /// assert_eq!(loc.url.as_str(), "file:///data/stores/rxrx1/");
    /// assert_eq!(loc.child("sites").url.as_str(), "file:///data/stores/rxrx1/sites/");
    ///
    /// let bad = BTreeMap::from([("no_such_option".to_string(), "x".to_string())]);
    /// let e = Location::parse("s3://bucket/store", &bad).unwrap_err().to_string();
    /// assert!(e.contains("no_such_option"), "{e}");
    /// ```
    pub fn parse(text: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let url = resolve_url(text)?;
        Self::from_url(url, options)
    }

    /// Resolve a URL.
    pub fn from_url(mut url: Url, options: &BTreeMap<String, String>) -> Result<Self> {
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let err = |message: String| Error::Location {
            url: url.to_string(),
            message,
        };
        let stats = Arc::new(IoStats::default());
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match url.scheme() {
            "memory" => {
                let name = url.host_str().unwrap_or("").to_string();
                let mut stores = MEMORY_STORES
                    .lock()
                    .map_err(|_| err("memory store registry poisoned".into()))?;
                let store = stores
                    .entry(name)
                    .or_insert_with(|| Arc::new(InMemory::new()))
                    .clone();
                let prefix = Path::from_url_path(url.path()).map_err(|e| err(e.to_string()))?;
                (store, prefix)
            }
            "file" => {
                url.to_file_path()
                    .map_err(|_| err("not a local file URL".into()))?;
                let prefix = Path::from_url_path(url.path()).map_err(|e| err(e.to_string()))?;
                (
                    Arc::new(object_store::local::LocalFileSystem::new()),
                    prefix,
                )
            }
            scheme @ ("s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "adl") => {
                let retry = retry_config(options).map_err(err)?;
                let connector = CountingConnector {
                    stats: stats.clone(),
                };
                // Credentials and endpoints come from each cloud's standard environment
                // variables (`from_env`), overridable per pipeline. Values never appear in
                // messages: only unknown option *names* are reported.
                let opts = options
                    .iter()
                    .filter(|(k, _)| !OWN_OPTIONS.contains(&k.as_str()));
                let unknown = |k: &str| err(format!("unknown store option {k:?} for {scheme}://"));
                let build_err =
                    |e: object_store::Error| err(format!("cannot configure the store: {e}"));
                let store: Arc<dyn ObjectStore> = match scheme {
                    "s3" | "s3a" => {
                        // Delta commits need put-if-absent; S3 (and MinIO, R2, ...) support
                        // `If-None-Match: *`, so concurrent writers are safe without a lock table.
                        let mut b = AmazonS3Builder::from_env()
                            .with_url(url.as_str())
                            .with_conditional_put(S3ConditionalPut::ETagMatch)
                            .with_retry(retry)
                            .with_http_connector(connector);
                        for (k, v) in opts {
                            b = b.with_config(
                                AmazonS3ConfigKey::from_str(k).map_err(|_| unknown(k))?,
                                v,
                            );
                        }
                        Arc::new(b.build().map_err(build_err)?)
                    }
                    "gs" => {
                        let mut b = GoogleCloudStorageBuilder::from_env()
                            .with_url(url.as_str())
                            .with_retry(retry)
                            .with_http_connector(connector);
                        for (k, v) in opts {
                            b = b.with_config(
                                GoogleConfigKey::from_str(k).map_err(|_| unknown(k))?,
                                v,
                            );
                        }
                        Arc::new(b.build().map_err(build_err)?)
                    }
                    _ => {
                        let mut b = MicrosoftAzureBuilder::from_env()
                            .with_url(url.as_str())
                            .with_retry(retry)
                            .with_http_connector(connector);
                        for (k, v) in opts {
                            b = b.with_config(
                                AzureConfigKey::from_str(k).map_err(|_| unknown(k))?,
                                v,
                            );
                        }
                        Arc::new(b.build().map_err(build_err)?)
                    }
                };
                let prefix = Path::from_url_path(url.path()).map_err(|e| err(e.to_string()))?;
                (store, prefix)
            }
            other => return Err(err(format!("unsupported scheme {other:?}"))),
        };
        let reads = Arc::new(ReadStats::default());
        Ok(Self {
            url,
            store: Arc::new(CountingStore::new(store, reads.clone())),
            prefix,
            stats,
            reads,
        })
    }

    /// Create a local location's directory, for writing (a sink, a synth or export target).
    /// Resolving a location never creates anything, so a source or store that is not there
    /// stays an error. Object stores have no directories: there it does nothing.
    pub fn create_local_dir(&self) -> Result<()> {
        match self.local_dir() {
            Some(path) => std::fs::create_dir_all(&path).map_err(|source| Error::Create {
                path: path.display().to_string(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// An error when a local location's directory does not exist, for reading: a mistyped
    /// local path would otherwise list as an empty source. Object stores cannot tell a
    /// missing prefix from an empty one, so there it does nothing.
    pub fn require_local_dir(&self) -> Result<()> {
        match self.local_dir() {
            Some(path) if !path.is_dir() => Err(Error::Missing {
                url: self.url.to_string(),
                message: format!("{} is not a directory that exists", path.display()),
            }),
            _ => Ok(()),
        }
    }

    fn local_dir(&self) -> Option<std::path::PathBuf> {
        (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }

    /// A location below this one. Nothing is created: writers create local folders
    /// ([`Self::create_local_dir`]) before they write.
    pub fn child(&self, name: &str) -> Location {
        let mut url = self.url.clone();
        url.set_path(&format!("{}{}/", self.url.path(), name.trim_matches('/')));
        Location {
            url,
            store: self.store.clone(),
            prefix: self.prefix.clone().join(name.trim_matches('/')),
            stats: self.stats.clone(),
            reads: self.reads.clone(),
        }
    }

    /// Full path of `relative` (a key below this location), taken as the raw key: a `%` in
    /// it stays as it is (a segment object_store cannot hold raw, such as `..`, is encoded).
    pub fn path(&self, relative: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in relative.split('/').filter(|s| !s.is_empty()) {
            p = match object_store::path::PathPart::parse(part) {
                Ok(raw) => p.join(raw),
                Err(_) => p.join(part),
            };
        }
        p
    }

    /// Key of `path` relative to this location's prefix, if it is below it.
    pub fn relative<'a>(&self, path: &'a Path) -> Option<&'a str> {
        let full = path.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            return Some(full);
        }
        full.strip_prefix(prefix)?.strip_prefix('/')
    }

    /// Read a whole object below this location.
    pub async fn get(&self, relative: &str) -> Result<bytes::Bytes> {
        let path = self.path(relative);
        let res = self
            .store
            .get(&path)
            .await
            .map_err(|source| Error::ObjectStore {
                url: self.display(&path),
                source,
            })?;
        res.bytes().await.map_err(|source| Error::ObjectStore {
            url: self.display(&path),
            source,
        })
    }

    /// Write a whole object below this location.
    pub async fn put(&self, relative: &str, bytes: bytes::Bytes) -> Result<()> {
        let path = self.path(relative);
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|source| Error::ObjectStore {
                url: self.display(&path),
                source,
            })?;
        Ok(())
    }

    /// A readable name for an object (scheme, bucket and key).
    pub fn display(&self, path: &Path) -> String {
        match self.url.scheme() {
            "file" => format!("/{path}"),
            scheme => format!("{scheme}://{}/{path}", self.url.host_str().unwrap_or("")),
        }
    }
}

/// Bytes percent-encoded in a partition value's directory name: those the Delta protocol
/// names (as delta-rs writes them), plus every non-ASCII byte. Readers decode them
/// (Hive-style partitioning in pyarrow, DuckDB, Polars; the Delta log keeps the value).
const PARTITION_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'!')
    .add(b'"')
    .add(b'#')
    .add(b'$')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `value` as one path segment: any UTF-8 string, percent-encoded (a `/` or `=` in a
/// name never makes another directory or partition).
pub fn path_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, PARTITION_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_file_urls() {
        let u = resolve_url("/tmp/x").unwrap();
        assert_eq!(u.as_str(), "file:///tmp/x/");
        assert_eq!(
            resolve_url("/tmp/a/../b/./c").unwrap().as_str(),
            "file:///tmp/b/c/"
        );
        assert!(resolve_url("ftp://h/x").is_err());
        assert!(resolve_url("").is_err());
    }

    #[tokio::test]
    async fn memory_stores_are_shared_by_name() {
        let a = Location::parse("memory://t1/root", &BTreeMap::new()).unwrap();
        a.put("x/y.txt", bytes::Bytes::from_static(b"hi"))
            .await
            .unwrap();
        let b = Location::parse("memory://t1/root/x", &BTreeMap::new()).unwrap();
        assert_eq!(&b.get("y.txt").await.unwrap()[..], b"hi");
        assert_eq!(b.relative(&b.path("y.txt")), Some("y.txt"));
        assert_eq!(a.child("x").url.as_str(), "memory://t1/root/x/");
    }
}
