//! Query workers: the SQL a visitor types runs in a child process, which the viewer kills
//! when the query runs past the timeout or past its memory. A query can spend minutes in
//! one call that never yields (a cross join's match, a regex over a huge string, a giant
//! `repeat`); a task abort only lands at a yield, and no thread can be stopped from
//! outside, so only a process gives back its CPU and memory at once.
//!
//! A worker is the same program started with [`WorkerSpec::command`]. It reads frames on
//! stdin and writes frames on stdout, each a little-endian `u32` length and a body:
//!
//! 1. the first frame is the session to open (store, options, state, memory), as JSON;
//! 2. each further frame is a request (`sql`, `limit`, `skip`, `take`), as JSON;
//! 3. each answer is a tag byte and a body: `0`, the row count (`u64`) and the page's rows
//!    as an Arrow IPC stream; or `1` and a JSON error (`class`, `message`).
//!
//! Idle workers wait in a pool (one is started with the viewer), so a query pays for the
//! session only after a worker was killed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::Stdio;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use cellshard_core::ErrorClass;
use cellshard_sql::{AsOf, guard};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{Error, Result};

/// How the viewer starts its query workers, and the session they open.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Program and arguments that run [`worker_main`] (e.g. `cellshard query-worker`).
    pub command: Vec<OsString>,
    /// Store URL.
    pub store: String,
    /// Object store options (sent on stdin, never on the command line).
    pub options: BTreeMap<String, String>,
    /// The state of the store to read: the viewer's own, so every query sees the tables
    /// the pages see.
    pub as_of: AsOf,
    /// Bytes of operator state a query may hold (DataFusion's pool); the whole process is
    /// also killed past its idle size plus this (and [`RSS_SLACK`]). `None`: unbounded.
    pub memory: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct Init {
    store: String,
    options: BTreeMap<String, String>,
    version: Option<i64>,
    timestamp: Option<String>,
    memory: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct Request {
    sql: String,
    limit: usize,
    skip: usize,
    take: usize,
}

#[derive(Serialize, Deserialize)]
struct Failure {
    class: String,
    message: String,
}

/// Resident bytes a worker may hold beyond its idle size and the query memory before it is
/// killed: room for what DataFusion's pool does not count (batches in flight, decoded
/// pages, a function's output). The pool stops most queries first, with its own message.
pub const RSS_SLACK: u64 = 256 << 20;

/// Largest frame read (a page of tensors is far below it).
const MAX_FRAME: usize = 1 << 30;

async fn write_frame(w: &mut (impl AsyncWrite + Unpin), body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("a frame over 4 GiB"))?;
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("a frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

fn class_name(c: ErrorClass) -> &'static str {
    match c {
        ErrorClass::BadInput => "bad_input",
        ErrorClass::NotFound => "not_found",
        ErrorClass::External => "external",
        ErrorClass::Internal => "internal",
    }
}

fn class_of(name: &str) -> ErrorClass {
    match name {
        "bad_input" => ErrorClass::BadInput,
        "not_found" => ErrorClass::NotFound,
        "external" => ErrorClass::External,
        _ => ErrorClass::Internal,
    }
}

/// The worker: open the session the first frame names, then answer requests until stdin
/// closes (the viewer ended or dropped this worker).
pub async fn worker_main() -> Result<()> {
    let (mut input, mut output) = (tokio::io::stdin(), tokio::io::stdout());
    let init: Init = serde_json::from_slice(&read_frame(&mut input).await?)
        .map_err(|e| Error::Usage(format!("query worker: a bad first frame: {e}")))?;
    let as_of = match (init.version, init.timestamp) {
        (Some(v), _) => AsOf::Version(v),
        (None, Some(t)) => AsOf::parse_timestamp(&t)?,
        (None, None) => AsOf::Latest,
    };
    let session =
        cellshard_sql::open_session_with(&init.store, &init.options, as_of, init.memory).await?;
    loop {
        let frame = match read_frame(&mut input).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let answer = match serde_json::from_slice::<Request>(&frame) {
            Ok(r) => answer(&session, r).await,
            Err(e) => Err(Error::Internal(format!("query worker: a bad request: {e}"))),
        };
        let body = match answer {
            Ok(b) => b,
            Err(e) => {
                let f = Failure {
                    class: class_name(e.class()).into(),
                    message: e.to_string(),
                };
                let mut b = vec![1u8];
                b.extend(serde_json::to_vec(&f).unwrap_or_default());
                b
            }
        };
        write_frame(&mut output, &body).await?;
    }
}

/// Run one request: rows `skip..skip+take` of the query's first `limit`, and how many rows
/// it has up to `limit`, as an answer frame.
async fn answer(session: &cellshard_sql::Session, r: Request) -> Result<Vec<u8>> {
    guard::check(&r.sql).map_err(Error::Usage)?;
    let (schema, out, rows) =
        super::query::page(&session.ctx, &r.sql, r.limit, r.skip, r.take).await?;
    let mut body = vec![0u8];
    body.extend(u64::try_from(rows).unwrap_or(u64::MAX).to_le_bytes());
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut body, &schema)?;
    for b in &out {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(body)
}

/// A running worker.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Resident bytes when idle, after its session opened.
    idle_rss: u64,
}

/// The viewer's workers: idle ones wait here.
pub(super) struct Pool {
    spec: WorkerSpec,
    idle: std::sync::Mutex<Vec<Worker>>,
}

impl Pool {
    pub(super) fn new(spec: WorkerSpec) -> Self {
        Pool {
            spec,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Start a worker and wait until its session is open (a no-op query answers).
    async fn start(&self) -> Result<Worker> {
        let (program, args) = self
            .spec
            .command
            .split_first()
            .ok_or_else(|| Error::Internal("no query worker command".into()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot start a query worker: {e}")))?;
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Internal("a query worker without pipes".into()));
        };
        let (version, timestamp) = match &self.spec.as_of {
            AsOf::Latest => (None, None),
            AsOf::Version(v) => (Some(*v), None),
            AsOf::Timestamp(t) => (None, Some(t.to_rfc3339())),
        };
        let init = Init {
            store: self.spec.store.clone(),
            options: self.spec.options.clone(),
            version,
            timestamp,
            memory: self.spec.memory,
        };
        let lost =
            |e: std::io::Error| Error::Internal(format!("a query worker failed to start: {e}"));
        write_frame(&mut stdin, &serde_json::to_vec(&init).unwrap_or_default())
            .await
            .map_err(lost)?;
        let ready = Request {
            sql: "SELECT 1".into(),
            limit: 1,
            skip: 0,
            take: 0,
        };
        write_frame(&mut stdin, &serde_json::to_vec(&ready).unwrap_or_default())
            .await
            .map_err(lost)?;
        decode(&read_frame(&mut stdout).await.map_err(lost)?)?;
        let idle_rss = child.id().and_then(rss).unwrap_or(0);
        Ok(Worker {
            child,
            stdin,
            stdout,
            idle_rss,
        })
    }

    /// Start one worker now, so the first query does not wait for a session.
    pub(super) async fn warm(&self) {
        match self.start().await {
            Ok(w) => self.give_back(w),
            Err(e) => eprintln!("cellshard serve: {e}"),
        }
    }

    /// An idle worker that is still running (one that died while idle is dropped).
    fn take(&self) -> Option<Worker> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut w) = idle.pop() {
            if matches!(w.child.try_wait(), Ok(None)) {
                return Some(w);
            }
        }
        None
    }

    fn give_back(&self, w: Worker) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(w);
        }
    }

    /// Run `sql` in a worker before `deadline`: rows `skip..skip+take` of its first
    /// `limit` and the row count up to `limit`. Past the deadline, or past the memory, the
    /// worker is killed.
    pub(super) async fn query(
        &self,
        sql: &str,
        limit: usize,
        skip: usize,
        take: usize,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, usize)> {
        let mut w = match self.take() {
            Some(w) => w,
            None => tokio::time::timeout_at(deadline.into(), self.start())
                .await
                .map_err(|_| Error::Timeout(timeout))??,
        };
        let request = Request {
            sql: sql.to_string(),
            limit,
            skip,
            take,
        };
        let pid = w.child.id();
        let memory = self.spec.memory.unwrap_or(usize::MAX);
        let limit_rss = w
            .idle_rss
            .saturating_add(u64::try_from(memory).unwrap_or(u64::MAX))
            .saturating_add(RSS_SLACK);
        let exchange = async {
            write_frame(
                &mut w.stdin,
                &serde_json::to_vec(&request).unwrap_or_default(),
            )
            .await?;
            read_frame(&mut w.stdout).await
        };
        let watch = async {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                if let Some(now) = pid.and_then(rss).filter(|&now| now > limit_rss) {
                    return now;
                }
            }
        };
        let outcome = tokio::select! {
            frame = exchange => Ok(frame),
            used = watch => Err(Error::Remote {
                class: ErrorClass::External,
                message: format!(
                    "resources exhausted: the query's process grew to {} MiB, past its idle size plus the viewer's --query-memory of {} MiB and {} MiB of slack; it was stopped",
                    used >> 20,
                    memory >> 20,
                    RSS_SLACK >> 20
                ),
            }),
            () = tokio::time::sleep_until(deadline.into()) => Err(Error::Timeout(timeout)),
        };
        match outcome {
            Ok(Ok(frame)) => {
                let answer = decode(&frame);
                self.give_back(w);
                answer
            }
            Ok(Err(e)) => {
                let _ = w.child.start_kill();
                Err(Error::Remote {
                    class: ErrorClass::External,
                    message: format!(
                        "the query's worker process ended ({e}); it may have run out of memory"
                    ),
                })
            }
            Err(e) => {
                // Killed now: the CPU and memory come back at once.
                let _ = w.child.start_kill();
                let _ = w.child.wait().await;
                Err(e)
            }
        }
    }
}

/// Run one read-only query in a worker process of its own, killed at `timeout` (or past its
/// memory): how a library caller stops a query whose plan does not yield.
pub async fn query_once(
    spec: WorkerSpec,
    sql: &str,
    timeout: Duration,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    guard::check(sql).map_err(Error::Usage)?;
    let deadline = Instant::now() + timeout;
    let pool = Pool::new(spec);
    let (schema, batches, _) = pool
        .query(sql, usize::MAX, 0, usize::MAX, deadline, timeout)
        .await?;
    Ok((schema, batches))
}

/// An answer frame's schema, rows and count, or its error.
fn decode(frame: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>, usize)> {
    let Some((&tag, body)) = frame.split_first() else {
        return Err(Error::Internal(
            "an empty answer from a query worker".into(),
        ));
    };
    if tag == 1 {
        let f: Failure = serde_json::from_slice(body)
            .map_err(|e| Error::Internal(format!("a bad error from a query worker: {e}")))?;
        return Err(Error::Remote {
            class: class_of(&f.class),
            message: f.message,
        });
    }
    if body.len() < 8 {
        return Err(Error::Internal("a short answer from a query worker".into()));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&body[..8]);
    let rows = usize::try_from(u64::from_le_bytes(n)).unwrap_or(usize::MAX);
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&body[8..]), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((schema, batches, rows))
}

/// Resident bytes of process `pid` (Linux; `None` elsewhere or when it is gone).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb << 10)
}
