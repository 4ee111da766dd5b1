//! SQL over a cellshard store: a DataFusion session with the store's Delta tables
//! (`sites`, `plate_stats`, `rejects`, `runs`) registered, and result formatting.
//!
//! Reading only: nothing here writes to the store. Each table is a [`StoreTable`]: one Delta
//! version pinned, read by DataFusion's Parquet scan with partition pruning and projection,
//! in a plan that also runs on a Ballista cluster (`cellshard-cluster`).

mod as_of;
mod carried;
mod class;
pub mod export;
pub mod guard;
mod meta;
pub mod nearest;
mod output;
mod provider;
pub mod replicate_map;
mod spec;
pub mod travel;
pub mod udf;

pub use as_of::AsOf;
pub use class::{class_of, class_one, datafusion_class, io_class};
pub use provider::StoreTable;

pub use output::{OutputFormat, format, row_count, write_output};

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use cellshard_core::ErrorClass;
use cellshard_store::Location;
use cellshard_store::schema::TENSOR;
use cellshard_store::table::TABLES;
use datafusion::catalog::TableProvider;
use datafusion::prelude::{SessionConfig, SessionContext};

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Query(e)
    }
}

/// DataFusion's message for `e`, with a parser error in its own words (DataFusion shows
/// it as a Rust `Debug` value).
fn query_message(e: &datafusion::error::DataFusionError) -> String {
    match e {
        datafusion::error::DataFusionError::SQL(parse, _) => parse.to_string(),
        other => other.to_string(),
    }
}

/// Result with the SQL [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQL failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] cellshard_store::Error),
    /// A table could not be registered.
    #[error("registering table {table}: {message}")]
    Register {
        /// Table name.
        table: String,
        /// Cause.
        message: String,
    },
    /// The query failed (bad SQL, unknown column, ...). DataFusion's text already holds
    /// its causes, so it is not given as a source (that would say them twice).
    #[error("{}", query_message(.0))]
    Query(datafusion::error::DataFusionError),
    /// Output formatting failed.
    #[error("formatting results: {0}")]
    Format(#[from] arrow::error::ArrowError),
    /// There is no store at the location.
    #[error("no cellshard tables under {0}: run `cellshard run` first")]
    Empty(String),
    /// A view of `sql/views.sql` failed for a reason other than a missing table.
    #[error("creating view {name}: {message}")]
    View {
        /// View name.
        name: String,
        /// Cause.
        message: String,
    },
    /// An export failed.
    #[error("exporting to {url}: {message}")]
    Export {
        /// Target URL.
        url: String,
        /// Cause.
        message: String,
    },
    /// A bad meta command, timestamp or option.
    #[error("{0}")]
    Usage(String),
    /// Writing output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Writing Parquet failed.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A statement ran past its timeout and was stopped.
    #[error("the query was stopped after {} s (its timeout)", .0.as_secs_f64())]
    Timeout(std::time::Duration),
}

impl Error {
    /// Whose fault the failure is (see [`cellshard_core::ErrorClass`]): SQL that does not
    /// parse or names an unknown table or column is bad input, an empty location is not
    /// found, a store failure keeps its class.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Store(e) => e.class(),
            Error::Register { .. } | Error::View { .. } => ErrorClass::Internal,
            Error::Query(e) => class::datafusion_class(e),
            Error::Format(_) => ErrorClass::Internal,
            Error::Empty(_) => ErrorClass::NotFound,
            Error::Export { .. } | Error::Io(_) | Error::Parquet(_) | Error::Timeout(_) => {
                ErrorClass::External
            }
            Error::Usage(_) => ErrorClass::BadInput,
        }
    }
}

/// The views of `sql/views.sql`, created in every session.
pub const VIEWS_SQL: &str = include_str!("../../../sql/views.sql");

/// A DataFusion session over a store: its tables, the views and the tensor functions.
pub struct Session {
    /// The DataFusion context (also reachable through `Deref`).
    pub ctx: SessionContext,
    /// The store root (its `reads` count every byte fetched).
    pub root: Location,
    /// The state of the store being read.
    pub as_of: AsOf,
    /// Versions of the registered tables.
    pub versions: BTreeMap<String, i64>,
    /// Views that could not be created, with the reason (a table missing from the store).
    pub skipped_views: Vec<(String, String)>,
    /// Shape and dtype of `sites.tensor`, when known.
    pub tensor: Option<udf::TensorSpec>,
    /// The store's channel names in stacking order (`plate_stats.channel_name`; empty when
    /// the store names none).
    pub channel_names: Vec<String>,
    /// Whether [`Session::run`] runs statements other than queries (DDL, DML, `COPY`,
    /// `SET`). False unless the caller opts in ([`Session::allow_writes`]).
    writes: bool,
}

impl std::ops::Deref for Session {
    type Target = SessionContext;
    fn deref(&self) -> &SessionContext {
        &self.ctx
    }
}

/// Open a session over the store at `url`.
pub async fn open_session(
    url: &str,
    options: &BTreeMap<String, String>,
    as_of: AsOf,
) -> Result<Session> {
    open_session_with(url, options, as_of, None).await
}

/// Open a session over the store at `url`, its queries' memory bounded by `memory` bytes
/// (see [`Session::context`]).
pub async fn open_session_with(
    url: &str,
    options: &BTreeMap<String, String>,
    as_of: AsOf,
    memory: Option<usize>,
) -> Result<Session> {
    let root = Location::parse(url, options)?;
    root.require_local_dir()?;
    Session::open_in(Session::context(memory)?, root, as_of).await
}

impl Session {
    /// The configuration of a local session (also the base of a cluster session's).
    pub fn config() -> SessionConfig {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
        // DataFusion fetches a 512 KiB suffix of every file to find the footer in one
        // request; in a tensor store that is one or two tensors per file that a metadata
        // query never uses. Read the footer's length, then the footer, instead.
        config.options_mut().execution.parquet.metadata_size_hint = None;
        config
    }

    /// Open a session over `root`.
    pub async fn open(root: Location, as_of: AsOf) -> Result<Session> {
        Self::open_in(Self::context(None)?, root, as_of).await
    }

    /// A context in [`Session::config`] whose queries together hold at most `memory` bytes
    /// of operator state: a sort, join or aggregate past it fails with "resources
    /// exhausted" instead of growing the process. None leaves memory unbounded.
    pub fn context(memory: Option<usize>) -> Result<SessionContext> {
        let Some(limit) = memory else {
            return Ok(SessionContext::new_with_config(Self::config()));
        };
        let rt = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(limit, 1.0)
            .build_arc()?;
        Ok(SessionContext::new_with_config_rt(Self::config(), rt))
    }

    /// Open a session over `root` in a prepared context (one whose queries run on a
    /// cluster, say): the tables, tensor functions and views are registered in it.
    pub async fn open_in(ctx: SessionContext, root: Location, as_of: AsOf) -> Result<Session> {
        let mut s = Session {
            ctx,
            root,
            as_of,
            versions: BTreeMap::new(),
            skipped_views: Vec::new(),
            tensor: None,
            channel_names: Vec::new(),
            writes: false,
        };
        s.register().await?;
        Ok(s)
    }

    /// Read another state of the store (re-registers the tables and views).
    pub async fn set_as_of(&mut self, as_of: AsOf) -> Result<()> {
        let old = self.as_of;
        self.as_of = as_of;
        if let Err(e) = self.register().await {
            self.as_of = old;
            self.register().await?;
            return Err(e);
        }
        Ok(())
    }

    async fn register(&mut self) -> Result<()> {
        let tables = cellshard_store::table::open_at(&self.root, self.as_of.into()).await?;
        if tables.is_empty() {
            return Err(Error::Empty(self.root.url.to_string()));
        }
        for name in TABLES {
            self.ctx.deregister_table(name)?;
        }
        self.versions.clear();
        // Scans read through the store's own object store (credentials, retries, and the
        // byte counters in `root.reads`), not a default one DataFusion would pick for the
        // URL scheme (it has one for file://, which delta-rs would then leave in place).
        let mut base = self.root.url.clone();
        base.set_path("/");
        self.ctx
            .runtime_env()
            .register_object_store(&base, self.root.store.clone());
        let mut sites = None;
        for (name, table) in tables {
            let provider = StoreTable::from_delta(name, &table, &self.root.child(name))?;
            self.versions.insert(name.to_string(), provider.version());
            if name == "sites" {
                self.tensor = provider
                    .schema()
                    .field_with_name(TENSOR)
                    .ok()
                    .and_then(udf::TensorSpec::from_field);
                sites = Some(provider.clone());
            }
            self.ctx
                .register_table(name, Arc::new(provider))
                .map_err(|e| Error::Register {
                    table: name.to_string(),
                    message: e.to_string(),
                })?;
        }
        if let Some(sites) = sites
            && self.tensor.is_none()
        {
            // Put the shape in the field metadata, where every node's functions find it.
            self.tensor = self.spec_from_rows().await?;
            if let Some(spec) = self.tensor {
                self.ctx.deregister_table("sites")?;
                self.ctx
                    .register_table("sites", Arc::new(sites.with_tensor_spec(TENSOR, spec)))?;
            }
        }
        self.channel_names = if self.versions.contains_key("plate_stats") {
            self.names_from_stats().await
        } else {
            Vec::new()
        };
        self.ctx
            .register_udtf("nearest", Arc::new(nearest::Nearest::default()));
        self.ctx
            .register_udtf("replicate_map", Arc::new(replicate_map::ReplicateMap));
        self.ctx.register_udwf(udf::center_scale_udwf());
        udf::register(
            &self.ctx,
            &udf::StoreTensor {
                spec: self.tensor,
                names: self.channel_names.clone(),
            },
        );
        self.create_views().await
    }

    async fn create_views(&mut self) -> Result<()> {
        self.skipped_views.clear();
        for stmt in split_statements(VIEWS_SQL) {
            let name = view_name(&stmt).unwrap_or_default();
            self.ctx.deregister_table(name.as_str())?;
            // A view over a table this store lacks is skipped, by name, before planning.
            let missing: Vec<String> = self
                .missing_tables(&stmt)?
                .into_iter()
                .filter(|t| *t != name)
                .collect();
            if !missing.is_empty() {
                let reason = format!("the store has no table {}", missing.join(", "));
                self.skipped_views.push((name, reason));
                continue;
            }
            if let Err(e) = self.ctx.sql(&stmt).await {
                return Err(Error::View {
                    name,
                    message: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Tables and views `sql` names that this session does not have.
    fn missing_tables(&self, sql: &str) -> Result<Vec<String>> {
        let state = self.ctx.state();
        let statement =
            state.sql_to_statement(sql, &state.config().options().sql_parser.dialect)?;
        let mut missing = Vec::new();
        for table in state.resolve_table_references(&statement)? {
            if !self.ctx.table_exist(table.clone())? {
                missing.push(table.to_string());
            }
        }
        Ok(missing)
    }

    /// Run one statement or meta command (`\d`, `\d NAME`, `\df`, `\version N`,
    /// `\timestamp T`, `\latest`) and collect its batches.
    ///
    /// A session is read-only unless [`Session::allow_writes`] was called: statements other
    /// than queries are refused ([`guard`]).
    pub async fn run(&mut self, statement: &str) -> Result<Vec<RecordBatch>> {
        let s = statement.trim();
        match s.strip_prefix('\\') {
            Some(meta) => self.meta(meta).await,
            None if self.writes => query(&self.ctx, s).await,
            None => {
                guard::check(s).map_err(Error::Usage)?;
                let df = self.ctx.sql_with_options(s, guard::options()).await?;
                Ok(df.collect().await?)
            }
        }
    }

    /// [`Session::run`], answered with [`Error::Timeout`] after `timeout` when one is
    /// given. The statement runs as a task of its own, so the caller gets the answer on
    /// time; its plan is dropped then, but one that does not yield keeps its thread until it
    /// does, so a caller that must get the CPU back runs it in a process of its own (the
    /// viewer's query workers) or exits.
    pub async fn run_within(
        &mut self,
        statement: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<Vec<RecordBatch>> {
        let s = statement.trim();
        let Some(t) = timeout.filter(|_| !s.starts_with('\\')) else {
            return self.run(statement).await;
        };
        if !self.writes {
            guard::check(s).map_err(Error::Usage)?;
        }
        let (ctx, s, writes) = (self.ctx.clone(), s.to_string(), self.writes);
        let task = tokio::spawn(async move {
            if writes {
                query(&ctx, &s).await
            } else {
                let df = ctx.sql_with_options(&s, guard::options()).await?;
                Ok(df.collect().await?)
            }
        });
        let abort = task.abort_handle();
        // The alarm is a thread of its own: the runtime's timers only advance when one of
        // its threads gets free, which a plan that does not yield may hold up.
        let (ring, alarm) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(t);
            let _ = ring.send(());
        });
        tokio::select! {
            joined = task => match joined {
                Ok(r) => r,
                Err(e) => Err(Error::Query(datafusion::error::DataFusionError::Internal(
                    format!("the query task failed: {e}"),
                ))),
            },
            _ = alarm => {
                abort.abort();
                Err(Error::Timeout(t))
            }
        }
    }

    /// Let [`Session::run`] run statements that write or reach outside the store
    /// (`CREATE EXTERNAL TABLE`, `COPY`, DDL, DML, `SET`).
    pub fn allow_writes(&mut self, allow: bool) {
        self.writes = allow;
    }
}

/// `CREATE [OR REPLACE] VIEW name ...` -> `name`.
fn view_name(stmt: &str) -> Option<String> {
    let words: Vec<&str> = stmt.split_whitespace().take(6).collect();
    let i = words.iter().position(|w| w.eq_ignore_ascii_case("view"))?;
    words.get(i + 1).map(|w| w.to_string())
}

/// Split SQL text into statements at `;` outside quotes and comments; meta commands
/// (lines starting with a backslash) are statements of their own.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    let mut line_start = true;
    while let Some(c) = chars.next() {
        if quote.is_none() && line_start && c == '\\' && cur.trim().is_empty() {
            let mut line = String::from(c);
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
                line.push(c);
            }
            out.push(line.trim().to_string());
            cur.clear();
            line_start = true;
            continue;
        }
        line_start = c == '\n';
        match (quote, c) {
            (None, '-') if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                cur.push('\n');
                line_start = true;
            }
            (None, ';') => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Run one statement and collect its batches.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}
