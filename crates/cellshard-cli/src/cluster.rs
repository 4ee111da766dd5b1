//! `cellshard scheduler` and `cellshard executor`: a Ballista cluster that runs cellshard's
//! SQL (tables, views, tensor functions) from this binary.

use anyhow::Result;
use cellshard_cluster::{ClusterUrl, ExecutorOptions, SchedulerOptions};

use crate::sql::parse_kv;

/// `cellshard scheduler`.
#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on (0.0.0.0 to serve other machines).
    #[arg(long, default_value = "127.0.0.1", env = "CELLSHARD_SCHEDULER_BIND")]
    bind: String,
    /// Port to listen on; clients use df://HOST:PORT.
    #[arg(long, default_value_t = cellshard_cluster::DEFAULT_PORT)]
    port: u16,
    /// Host name executors and clients reach this scheduler by (default: --bind).
    #[arg(long, env = "CELLSHARD_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Seconds without a heartbeat before an executor is taken as lost and its tasks rerun.
    #[arg(long, default_value_t = 60)]
    executor_timeout: u64,
    /// Object store option for stores, KEY=VALUE (repeatable); credentials come from each
    /// cloud's environment variables.
    #[arg(long = "store-option", value_parser = parse_kv)]
    store_options: Vec<(String, String)>,
}

/// `cellshard executor`.
#[derive(clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler, df://HOST[:PORT].
    #[arg(long, env = "CELLSHARD_SCHEDULER")]
    scheduler: String,
    /// Address to listen on (0.0.0.0 to serve other machines).
    #[arg(long, default_value = "127.0.0.1", env = "CELLSHARD_EXECUTOR_BIND")]
    bind: String,
    /// Host name the scheduler and other executors reach this one by (default: --bind).
    #[arg(long, env = "CELLSHARD_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Arrow Flight port, for shuffle data.
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// gRPC port, for tasks the scheduler sends.
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks run at once (0: one per core).
    #[arg(long, default_value_t = 0)]
    concurrency: usize,
    /// Directory for shuffle files (default: a new temporary directory).
    #[arg(long)]
    work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, default_value_t = 10)]
    heartbeat_interval: u64,
    /// Object store option for stores, KEY=VALUE (repeatable); credentials come from each
    /// cloud's environment variables.
    #[arg(long = "store-option", value_parser = parse_kv)]
    store_options: Vec<(String, String)>,
}

/// Run `cellshard scheduler`.
pub async fn scheduler(a: SchedulerArgs) -> Result<()> {
    eprintln!(
        "cellshard scheduler on {}:{} (clients: cellshard sql --cluster df://{}:{})",
        a.bind,
        a.port,
        a.external_host.as_deref().unwrap_or(&a.bind),
        a.port
    );
    cellshard_cluster::run_scheduler(SchedulerOptions {
        bind: a.bind,
        port: a.port,
        external_host: a.external_host,
        executor_timeout_s: a.executor_timeout,
        store_options: a.store_options.into_iter().collect(),
    })
    .await?;
    Ok(())
}

/// Run `cellshard executor`.
pub async fn executor(a: ExecutorArgs) -> Result<()> {
    let scheduler = ClusterUrl::parse(&a.scheduler)?;
    eprintln!(
        "cellshard executor on {}:{} (gRPC {}), scheduler {scheduler}",
        a.bind, a.port, a.grpc_port
    );
    cellshard_cluster::run_executor(ExecutorOptions {
        bind: a.bind,
        external_host: a.external_host,
        port: a.port,
        grpc_port: a.grpc_port,
        concurrency: a.concurrency,
        work_dir: a.work_dir,
        heartbeat_s: a.heartbeat_interval,
        store_options: a.store_options.into_iter().collect(),
        ..ExecutorOptions::new(scheduler)
    })
    .await?;
    Ok(())
}
