//! How to run a pipeline: the options `run` and `plan` take.

use std::path::PathBuf;

use cellshard_core::Pipeline;

use crate::select::{PlateSelection, WorkerShare};

/// How to run a pipeline: the file's semantics plus runtime knobs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Override of `source.url`.
    pub source: Option<String>,
    /// Override of `metadata.urls`.
    pub metadata: Vec<String>,
    /// Override of `sink.url`.
    pub sink: Option<String>,
    /// This worker's share of the plates.
    pub worker: WorkerShare,
    /// The plates to take (all by default).
    pub selection: PlateSelection,
    /// Skip plates whose committed fingerprint equals their current one.
    pub incremental: bool,
    /// Remove plates from the store whose source objects are all gone.
    pub prune: bool,
    /// CPU threads (0 = one per core).
    pub threads: usize,
    /// Sites in flight per plate (0 = twice the threads).
    pub inflight: usize,
    /// Scratch directory for plate spills (default: the system temp dir).
    pub scratch: Option<PathBuf>,
    /// Discover and check only; write nothing.
    pub dry_run: bool,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

impl RunOptions {
    /// Run `pipeline` as its file says: one worker, every core, no progress bar.
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            source: None,
            metadata: Vec::new(),
            sink: None,
            worker: WorkerShare::ALL,
            selection: PlateSelection::default(),
            incremental: false,
            prune: false,
            threads: 0,
            inflight: 0,
            scratch: None,
            dry_run: false,
            progress: false,
        }
    }
}
