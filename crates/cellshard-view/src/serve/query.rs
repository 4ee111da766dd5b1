//! Running queries: on the query runtime, guarded read-only, under the timeout and the
//! limit on queries at once, keeping only the page of rows shown.

use std::future::Future;

use arrow::array::RecordBatch;
use futures::StreamExt;

use cellshard_sql::guard;

use super::Viewer;
use crate::{Error, Result};

impl Viewer {
    /// Run `work` on the query runtime under the timeout, once fewer than `max_queries` run:
    /// it waits for a slot (a page's pictures arrive together) up to the timeout, and is
    /// answered busy past it. The slot is held by the task, so it frees when the work is
    /// dropped, not when the answer is sent.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let slot = self.slot().await?;
        let task = self.queries.spawn(async move {
            let _slot = slot;
            work.await
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(self.opts.timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(Error::Internal(format!("the query task failed: {e}"))),
            Err(_) => {
                abort.abort();
                Err(Error::Timeout(self.opts.timeout))
            }
        }
    }

    /// A slot among the `max_queries`, waited for up to the timeout.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let busy = || Error::Busy(self.opts.max_queries);
        tokio::time::timeout(self.opts.timeout, self.running.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())
    }

    /// A visitor's query: in a worker process when the viewer has them (killed at the
    /// timeout or past the memory), else as [`Self::query_page`].
    pub(super) async fn visitor_query(
        &self,
        sql: String,
        limit: usize,
        skip: usize,
        take: usize,
    ) -> Result<(Vec<RecordBatch>, usize)> {
        let Some(pool) = &self.workers else {
            return self.query_page(sql, limit, skip, take).await;
        };
        guard::check(&sql).map_err(Error::Usage)?;
        let deadline = std::time::Instant::now() + self.opts.timeout;
        let _slot = self.slot().await?;
        let (_, batches, rows) = pool
            .query(&sql, limit, skip, take, deadline, self.opts.timeout)
            .await?;
        Ok((batches, rows))
    }

    /// A guarded query, at most `limit` rows.
    pub(super) async fn query(&self, sql: String, limit: usize) -> Result<Vec<RecordBatch>> {
        Ok(self.query_page(sql, limit, 0, limit).await?.0)
    }

    /// A guarded query: rows `skip..skip+take` of its first `limit` rows, and how many rows
    /// it has up to `limit`. Rows come off the result stream, only the page's are kept (a
    /// tensor column can be large), and the rest is never computed. A LIMIT node would not
    /// do: EXPLAIN ANALYZE must be the plan's root.
    pub(super) async fn query_page(
        &self,
        sql: String,
        limit: usize,
        skip: usize,
        take: usize,
    ) -> Result<(Vec<RecordBatch>, usize)> {
        guard::check(&sql).map_err(Error::Usage)?;
        let s = self.session.clone();
        self.run(async move {
            let (_, out, rows) = page(&s.ctx, &sql, limit, skip, take).await?;
            Ok((out, rows))
        })
        .await
    }
}

/// Run a guarded `sql`: its schema, rows `skip..skip+take` of its first `limit` rows, and
/// how many rows it has up to `limit`. Rows come off the result stream, only the page's
/// are kept, and the rest is never computed.
pub(super) async fn page(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    limit: usize,
    skip: usize,
    take: usize,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>, usize)> {
    let df = ctx.sql_with_options(sql, guard::options()).await?;
    let mut stream = df.execute_stream().await?;
    let schema = stream.schema();
    let (mut out, mut rows) = (Vec::new(), 0usize);
    while rows < limit {
        let Some(b) = stream.next().await else { break };
        let b = b?;
        let n = b.num_rows().min(limit - rows);
        let lo = skip.max(rows);
        let hi = skip.saturating_add(take).min(rows + n);
        if lo < hi {
            out.push(b.slice(lo - rows, hi - lo));
        }
        rows += n;
    }
    Ok((schema, out, rows))
}
