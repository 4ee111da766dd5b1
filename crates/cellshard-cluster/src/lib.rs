//! cellshard SQL on an Apache DataFusion Ballista cluster.
//!
//! - [`connect`]: a client session whose queries run on the cluster, over the same tables
//!   (pinned Delta versions), views and tensor functions as a local session.
//! - [`run_scheduler`] and [`run_executor`]: Ballista's scheduler and executor with
//!   cellshard's plan codecs, tensor functions and object stores registered, so a cluster
//!   starts from the `cellshard` binary.
//! - [`LocalCluster`]: a scheduler and executors in this process, on loopback ports (tests,
//!   benchmarks).

mod codec;
mod stores;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use cellshard_sql::{AsOf, Session, udf};
use datafusion::execution::SessionState;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::task::JoinHandle;

pub use codec::{LogicalCodec, PhysicalCodec};
pub use stores::StoreRegistry;

/// The scheduler's default port (Ballista's).
pub const DEFAULT_PORT: u16 = 50050;

/// How long [`connect`] waits for the scheduler to accept a connection, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Cluster failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cluster address that is not `df://HOST[:PORT]`.
    #[error("cluster address {0:?}: expected df://HOST[:PORT] (the Ballista scheduler)")]
    Address(String),
    /// The scheduler did not accept a connection.
    #[error("cannot reach the Ballista scheduler at {url} ({addr}): {reason}")]
    Unreachable {
        /// The address as given.
        url: String,
        /// What it resolved to, or the host and port.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Opening the store's tables failed.
    #[error(transparent)]
    Sql(#[from] cellshard_sql::Error),
    /// DataFusion or Ballista refused the configuration.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The scheduler or an executor failed.
    #[error("{0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    /// A socket could not be bound.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Result with the cluster [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whose fault the failure is (see [`cellshard_core::ErrorClass`]): a malformed address
    /// is the caller's; an unreachable scheduler or a failing executor is external.
    pub fn class(&self) -> cellshard_core::ErrorClass {
        use cellshard_core::ErrorClass as C;
        match self {
            Error::Address(_) => C::BadInput,
            Error::Unreachable { .. } | Error::Ballista(_) => C::External,
            Error::Sql(e) => e.class(),
            Error::DataFusion(e) => cellshard_sql::datafusion_class(e),
            Error::Io(e) => cellshard_sql::io_class(e),
        }
    }
}

/// A scheduler's address, `df://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ClusterUrl {
    /// Parse `df://HOST[:PORT]` (the port defaults to 50050).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::Address(text.to_string());
        let url = url::Url::parse(text.trim()).map_err(|_| bad())?;
        if url.scheme() != "df" || !matches!(url.path(), "" | "/") {
            return Err(bad());
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        Ok(Self {
            host: host.trim_matches(['[', ']']).to_string(),
            port: url.port().unwrap_or(DEFAULT_PORT),
        })
    }

    fn grpc(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "df://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "df://{}:{}", self.host, self.port)
        }
    }
}

/// Wait up to `timeout` for the scheduler to accept a TCP connection.
async fn reachable(url: &ClusterUrl, timeout: Duration) -> Result<()> {
    let unreachable = |addr: String, reason: String| Error::Unreachable {
        url: url.to_string(),
        addr,
        reason,
    };
    let target = format!("{}:{}", url.host, url.port);
    let attempt = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| unreachable(target.clone(), format!("cannot resolve the host: {e}")))?
            .collect();
        let mut last = None;
        for a in &addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(unreachable(a.to_string(), e.to_string())),
            }
        }
        Err(last.unwrap_or_else(|| unreachable(target.clone(), "no address".into())))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(unreachable(
            target.clone(),
            format!("no answer within {} s", timeout.as_secs_f64()),
        )),
    }
}

/// A client context whose queries run on the scheduler at `url`, with cellshard's codecs.
pub async fn context(url: &ClusterUrl, timeout: Duration) -> Result<SessionContext> {
    reachable(url, timeout).await?;
    // Ballista's adaptive planner does not rerun the stages of a lost executor to the
    // end (the job stalls); the static planner does.
    let config = Session::config()
        .upgrade_for_ballista()
        .with_ballista_adaptive_query_planner(false)
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()));
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build()
        .upgrade_for_ballista(url.grpc())?;
    Ok(SessionContext::new_with_state(state))
}

/// A session over the store at `store` whose queries run on the cluster at `url`: the
/// store's tables at `as_of`, the views and the tensor functions, as a local session has.
pub async fn connect(
    url: &ClusterUrl,
    timeout: Duration,
    store: &str,
    options: &BTreeMap<String, String>,
    as_of: AsOf,
) -> Result<Session> {
    let ctx = context(url, timeout).await?;
    let root =
        cellshard_store::Location::parse(store, options).map_err(cellshard_sql::Error::from)?;
    root.require_local_dir()
        .map_err(cellshard_sql::Error::from)?;
    Ok(Session::open_in(ctx, root, as_of).await?)
}

fn runtime(stores: &Arc<StoreRegistry>) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    RuntimeEnvBuilder::new()
        .with_object_store_registry(stores.clone())
        .build_arc()
}

/// Ballista's session state for the scheduler and executors, with the tensor functions and
/// cellshard's object stores.
fn server_state(
    config: SessionConfig,
    stores: &Arc<StoreRegistry>,
) -> datafusion::error::Result<SessionState> {
    let state = default_session_builder(config)?;
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime(stores)?)
        .build();
    for f in udf::functions(&udf::StoreTensor::default()) {
        state.register_udf(Arc::new(f))?;
    }
    state.register_udwf(Arc::new(udf::center_scale_udwf()))?;
    Ok(state)
}

/// `cellshard scheduler` settings.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on.
    pub bind: String,
    /// Port to listen on.
    pub port: u16,
    /// Host name executors and clients use for this scheduler.
    pub external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor is taken as lost and its
    /// tasks are run elsewhere.
    pub executor_timeout_s: u64,
    /// Object store options (KEY=VALUE) for reading stores while planning.
    pub store_options: BTreeMap<String, String>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            external_host: None,
            executor_timeout_s: 60,
            store_options: BTreeMap::new(),
        }
    }
}

fn scheduler_config(o: &SchedulerOptions, port: u16) -> SchedulerConfig {
    let stores = Arc::new(StoreRegistry::new(o.store_options.clone()));
    let timeout = o.executor_timeout_s.max(2);
    SchedulerConfig {
        bind_host: o.bind.clone(),
        bind_port: port,
        external_host: o.external_host.clone().unwrap_or_else(|| o.bind.clone()),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 4).clamp(1, 15),
        no_executors_grace_period_seconds: timeout,
        // Executors ask for work when they have a free slot: with tasks pushed instead, a
        // task reset after a lost executor could wait for a slot the scheduler still
        // counted as busy, and the query never finished.
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        override_session_builder: Some(Arc::new(move |config| server_state(config, &stores))),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..SchedulerConfig::default()
    }
}

/// Serve a scheduler on `listener` until it fails.
async fn serve_scheduler(listener: tokio::net::TcpListener, config: SchedulerConfig) -> Result<()> {
    let cluster = BallistaCluster::new_from_config(&config).await?;
    let server =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config)).await?;
    start_grpc_service_with_listener(listener, server).await?;
    Ok(())
}

/// Run a scheduler until it fails or the process is stopped.
pub async fn run_scheduler(o: SchedulerOptions) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((o.bind.as_str(), o.port)).await?;
    let port = listener.local_addr()?.port();
    tracing::info!(
        "Ballista scheduler for cellshard listening on {}:{port}",
        o.bind
    );
    serve_scheduler(listener, scheduler_config(&o, port)).await
}

/// `cellshard executor` settings.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler to register with.
    pub scheduler: ClusterUrl,
    /// Address to listen on.
    pub bind: String,
    /// Host name the scheduler and other executors use for this executor.
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle data).
    pub port: u16,
    /// gRPC port (tasks pushed by the scheduler).
    pub grpc_port: u16,
    /// Tasks run at once (0: one per core).
    pub concurrency: usize,
    /// Directory for shuffle files (default: a temporary directory).
    pub work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_s: u64,
    /// Object store options (KEY=VALUE) for reading stores.
    pub store_options: BTreeMap<String, String>,
}

impl ExecutorOptions {
    /// Defaults for an executor of the scheduler at `scheduler`.
    pub fn new(scheduler: ClusterUrl) -> Self {
        Self {
            scheduler,
            bind: "127.0.0.1".into(),
            external_host: None,
            port: 50051,
            grpc_port: 50052,
            concurrency: 0,
            work_dir: None,
            heartbeat_s: 10,
            store_options: BTreeMap::new(),
        }
    }
}

fn executor_config(o: &ExecutorOptions) -> Result<ExecutorProcessConfig> {
    let stores = Arc::new(StoreRegistry::new(o.store_options.clone()));
    let functions = server_state(SessionConfig::new_with_ballista(), &stores)?;
    let concurrency = match o.concurrency {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    Ok(ExecutorProcessConfig {
        bind_host: o.bind.clone(),
        external_host: Some(o.external_host.clone().unwrap_or_else(|| o.bind.clone())),
        port: o.port,
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler.host.clone(),
        scheduler_port: o.scheduler.port,
        scheduler_connect_timeout_seconds: 30,
        vcores: concurrency,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: o.work_dir.clone(),
        print_thread_info: false,
        executor_heartbeat_interval_seconds: o.heartbeat_s.max(1),
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&functions))),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| runtime(&stores))),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    })
}

/// Run an executor until it fails or the process is stopped. It waits for its scheduler
/// (which may start later); a work directory it cannot create fails it at once.
pub async fn run_executor(o: ExecutorOptions) -> Result<()> {
    if let Some(dir) = &o.work_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot create the work directory {dir}: {e}"),
            )
        })?;
    }
    start_executor_process(Arc::new(executor_config(&o)?)).await?;
    Ok(())
}

/// A scheduler and executors in this process, on loopback ports.
pub struct LocalCluster {
    /// The scheduler's address.
    pub url: ClusterUrl,
    tasks: Vec<JoinHandle<()>>,
}

/// A free loopback port (bound, then released for the executor to take).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl LocalCluster {
    /// Start a scheduler and `executors` executors of `concurrency` tasks each.
    pub async fn start(executors: usize, concurrency: usize) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let config = scheduler_config(
            &SchedulerOptions {
                port,
                executor_timeout_s: 10,
                ..SchedulerOptions::default()
            },
            port,
        );
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = serve_scheduler(listener, config).await {
                tracing::error!("scheduler stopped: {e}");
            }
        })];
        let url = ClusterUrl {
            host: "127.0.0.1".into(),
            port,
        };
        for _ in 0..executors {
            let o = ExecutorOptions {
                port: free_port()?,
                grpc_port: free_port()?,
                concurrency,
                heartbeat_s: 2,
                ..ExecutorOptions::new(url.clone())
            };
            let config = Arc::new(executor_config(&o)?);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = start_executor_process(config).await {
                    tracing::error!("executor stopped: {e}");
                }
            }));
        }
        reachable(&url, DEFAULT_CONNECT_TIMEOUT).await?;
        Ok(Self { url, tasks })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
