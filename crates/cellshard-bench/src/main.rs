//! `cellshard-bench`: cellshard's measurement lab, kept out of the shipped binary.
//!
//! - `ingest`: the end-to-end ingest benchmark (decode ceilings, the full pipeline on one
//!   core and on all, peak RSS) on synthetic raw RxRx1 plates.
//! - `pushdown`: bytes a metadata query fetches against a full scan, on one full plate of
//!   release-form sites.
//! - `cluster`: SQL on an in-process Ballista cluster against the local session, and the
//!   store's table provider against delta-rs'.
//! - `s3`: ingest from local disk against S3 over loopback, on the same raw sites.
//! - `synth-site`: the time to render and encode one synthetic site at full size.
//! - `vectors`: `nearest` queries per second and `replicate_map`'s time over the whole
//!   RxRx1 design's sites, against numpy.
//!
//! `cargo run --release -p cellshard-bench -- ingest` gives the README's ingest figures.
//! The pipeline runs are `cellshard run` in a child process of this binary (its hidden
//! first argument `cellshard` hands the rest to [`cellshard_cli::main`]), so what is
//! measured is the shipped command's code, built with the same profile and allocator.

mod cluster;
mod ingest;
mod pushdown;
mod s3;
mod synth_site;
mod vectors;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The first argument under which this binary is the `cellshard` command line.
pub(crate) const AS_CELLSHARD: &str = "cellshard";

#[derive(Parser)]
#[command(name = "cellshard-bench", version, about = "cellshard's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// End-to-end ingest: decode ceilings, then `cellshard run` on one core and on all.
    Ingest(ingest::BenchArgs),
    /// Bytes fetched by metadata queries against a full scan, on one full plate.
    Pushdown(pushdown::PushdownArgs),
    /// A Ballista cluster against the local session, and the table provider against delta-rs'.
    Cluster(cluster::ClusterArgs),
    /// Ingest from local disk against S3 over loopback, on the same raw sites.
    S3(s3::S3Args),
    /// Render and encode one synthetic site, channel by channel, on one thread.
    SynthSite(synth_site::SynthSiteArgs),
    /// nearest and replicate_map over one vector per site of the RxRx1 design, and numpy.
    Vectors(vectors::VectorArgs),
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == AS_CELLSHARD) {
        return ExitCode::from(cellshard_cli::main(args.into_iter().skip(1)));
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Ingest(a) => ingest::bench(a).await,
            Command::Pushdown(a) => pushdown::pushdown(a).await,
            Command::Cluster(a) => cluster::cluster(a).await,
            Command::S3(a) => s3::s3(a).await,
            Command::SynthSite(a) => synth_site::synth_site(&a),
            Command::Vectors(a) => vectors::vectors(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cellshard_cli::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
