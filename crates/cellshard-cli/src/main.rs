//! The `cellshard` binary: the command line of [`cellshard_cli::main`].

use std::process::ExitCode;

/// mimalloc instead of the system allocator: with glibc's per-thread arenas, the per-site
/// buffers (PNG bytes, planes, spill records, tensors) allocated on one thread and freed on
/// another fragmented the heap so that peak RSS grew by ~100 MB with every plate of a run
/// (325 MiB for one plate, 705 MiB for four, measured with `cellshard-bench ingest`); mimalloc
/// returns the memory and keeps RSS flat across plates.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(cellshard_cli::main(std::env::args_os()))
}
