//! A rank's batches read ahead on the runtime: [`Feed::stream`].

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::feed::Feed;
use crate::read::Batch;
use crate::{Error, Result};

impl Feed {
    /// Batches read ahead by one runtime task: decoded batches in flight are bounded by
    /// the memory budget (at least one ahead).
    fn ahead(&self) -> usize {
        let batch = (self.tensor_bytes() as u64)
            .saturating_mul(self.rank_batch())
            .max(1);
        (self.opts.memory_budget / batch).clamp(1, 64) as usize
    }

    /// This rank's batches of `epoch` at the global positions `starts`, in that order, read
    /// ahead within the budgets by a task on the current tokio runtime. Dropping the
    /// stream stops the reads.
    pub fn stream(self: &Arc<Self>, epoch: u64, starts: Vec<u64>) -> BatchStream {
        let ahead = self.ahead();
        let (tx, rx) = mpsc::channel(1);
        let feed = self.clone();
        let task = tokio::spawn(async move {
            // The channel holds one batch; the rest of `ahead` are being read, each by its
            // own task, so a read waiting its turn keeps going while this one waits for
            // the consumer (turns held by unpolled reads would stall every other reader).
            let mut reads = futures::stream::iter(starts)
                .map(|s| {
                    let feed = feed.clone();
                    ReadTask(tokio::spawn(async move { feed.read(epoch, s).await }))
                })
                .buffered(ahead.saturating_sub(1).max(1));
            while let Some(b) = reads.next().await {
                let b =
                    b.unwrap_or_else(|e| Err(Error::Internal(format!("a read task failed: {e}"))));
                let failed = b.is_err();
                if tx.send(b).await.is_err() || failed {
                    break;
                }
            }
        });
        BatchStream { rx, task }
    }
}

/// One batch's read on its own runtime task, stopped when dropped.
struct ReadTask(tokio::task::JoinHandle<Result<Batch>>);

impl std::future::Future for ReadTask {
    type Output = std::result::Result<Result<Batch>, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for ReadTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A rank's batches read ahead; see [`Feed::stream`].
#[derive(Debug)]
pub struct BatchStream {
    rx: mpsc::Receiver<Result<Batch>>,
    task: tokio::task::JoinHandle<()>,
}

impl BatchStream {
    /// The next batch, or `None` after the last.
    pub async fn next(&mut self) -> Option<Result<Batch>> {
        self.rx.recv().await
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
