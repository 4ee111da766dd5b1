//! The bounded CPU pool: pixel work never runs on async runtime threads.

use tokio::sync::oneshot;

use crate::{Error, Result};

/// A fixed-size rayon pool with an async front door.
pub struct CpuPool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl CpuPool {
    /// A pool of `threads` threads (0 = one per core).
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cellshard-cpu-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the CPU pool: {e}")))?;
        Ok(Self { pool, threads })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f` on the pool and await its result. Dropping the future abandons the result
    /// (the job itself finishes; jobs are short).
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.pool.spawn(move || {
            // The receiver may be gone if the caller was cancelled; nothing to do then.
            let _ = tx.send(f());
        });
        rx.await
            .map_err(|_| Error::Internal("a CPU job panicked".into()))
    }
}
