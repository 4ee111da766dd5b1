//! The bounded CPU pool: pixel work never runs on async runtime threads.

use std::panic::AssertUnwindSafe;

use tokio::sync::oneshot;

use crate::{Error, Result};

/// A fixed-size rayon pool with an async front door.
pub struct CpuPool {
    pool: rayon::ThreadPool,
    threads: usize,
}

/// CPU threads a run may start.
pub const MAX_THREADS: usize = 1024;

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

    /// Run `f` on the pool and await its result. `what` names the work (a site, a shard
    /// file) in the error if `f` panics: the panic is caught on the pool thread and becomes
    /// an internal error of this job, so the run fails cleanly instead of aborting. Dropping
    /// the future abandons the result (the job itself finishes; jobs are short).
    pub async fn run<T, F>(&self, what: impl FnOnce() -> String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.pool.spawn(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into())
            });
            // The receiver may be gone if the caller was cancelled; nothing to do then.
            let _ = tx.send(out);
        });
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => Err(Error::Internal(format!(
                "a CPU job for {} panicked: {message}",
                what()
            ))),
            Err(_) => Err(Error::Internal(format!(
                "a CPU job for {} ended without a result",
                what()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_fails_with_its_name_and_the_pool_goes_on() {
        let pool = CpuPool::new(2).unwrap();
        let err = pool
            .run(
                || "site HUVEC-01_1_B02_1".into(),
                || -> u32 { panic!("index out of bounds") },
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("site HUVEC-01_1_B02_1") && err.contains("index out of bounds"),
            "{err}"
        );
        let formatted = pool
            .run(|| "x".into(), || -> u32 { panic!("{} of {}", 3, 4) })
            .await
            .unwrap_err()
            .to_string();
        assert!(formatted.contains("3 of 4"), "{formatted}");
        assert_eq!(pool.run(|| "y".into(), || 7).await.unwrap(), 7);
    }
}
