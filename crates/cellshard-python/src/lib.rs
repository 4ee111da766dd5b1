//! Python bindings of the cellshard training feed (`cellshard._cellshard`); the public
//! API is the `cellshard` package around it (`python/cellshard`).
//!
//! Every read runs on the feed's own Rust threads with the GIL released; a batch's tensors
//! are handed to numpy without a copy (the Rust buffer becomes the array's memory), and
//! tables (SQL results, a batch's metadata) leave through the Arrow PyCapsule interface.

use std::collections::BTreeMap;
use std::sync::Arc;

use cellshard_core::ErrorClass;
use cellshard_feed::{BatchStream, Cursor, Feed, FeedOptions, SplitSpec, Tail};
use numpy::ndarray::{Array1, ArrayView4};
use numpy::{PyArray, PyArray4};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

mod arrow;
mod embeddings;

/// mimalloc for the package's Rust memory, as the `cellshard` binary uses: the feed's
/// fetched pages and batch buffers are reused instead of mapped and faulted in afresh.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use arrow::ArrowData;

/// The Python exception of a failure of `class` (`cellshard.errors`), saying `message`.
pub(crate) fn raise(class: ErrorClass, message: String) -> PyErr {
    let name = match class {
        ErrorClass::BadInput => "InvalidInput",
        ErrorClass::NotFound => "NotFound",
        ErrorClass::External => "StoreError",
        ErrorClass::Internal => "InternalError",
    };
    Python::attach(|py| {
        match py
            .import("cellshard.errors")
            .and_then(|m| m.getattr(name))
            .and_then(|t| t.cast_into::<pyo3::types::PyType>().map_err(PyErr::from))
        {
            Ok(t) => PyErr::from_type(t, message),
            Err(e) => e,
        }
    })
}

/// A feed error as its exception.
fn feed_error(e: cellshard_feed::Error) -> PyErr {
    raise(e.class(), e.to_string())
}

/// A bug as `cellshard.InternalError`.
fn internal(message: impl std::fmt::Display) -> PyErr {
    raise(ErrorClass::Internal, message.to_string())
}

/// A runtime for I/O, owned by the process that started it. A forked child has none of
/// the parent's threads, so it neither uses nor shuts down a runtime it inherited.
struct Runtime {
    rt: Option<tokio::runtime::Runtime>,
    pid: u32,
}

impl Runtime {
    fn new() -> PyResult<Runtime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("cellshard-io")
            .build()
            .map_err(|e| internal(format!("cannot start the I/O thread: {e}")))?;
        Ok(Runtime {
            rt: Some(rt),
            pid: std::process::id(),
        })
    }

    fn get(&self) -> PyResult<&tokio::runtime::Runtime> {
        match &self.rt {
            Some(rt) if self.pid == std::process::id() => Ok(rt),
            _ => Err(raise(
                ErrorClass::BadInput,
                "this feed was opened in another process (cellshard.Dataset reopens it after a \
                 fork or when unpickled)"
                    .into(),
            )),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            if self.pid == std::process::id() {
                rt.shutdown_background();
            } else {
                std::mem::forget(rt);
            }
        }
    }
}

/// A feed and the runtime its reads run on.
struct Shared {
    // Dropped first: the feed's streams live on the runtime.
    feed: Arc<Feed>,
    runtime: Runtime,
}

/// The options of a feed, from the keyword arguments of `Feed(...)`.
#[allow(clippy::too_many_arguments)]
fn options(
    store: String,
    predicate: Option<String>,
    columns: Option<Vec<String>>,
    version: Option<i64>,
    seed: u64,
    batch_size: u64,
    rank: u64,
    world_size: u64,
    tail: &str,
    clump: u64,
    split: Option<String>,
    take: Option<String>,
    threads: usize,
    read_budget: u64,
    memory_budget: u64,
    store_options: Option<BTreeMap<String, String>>,
) -> PyResult<FeedOptions> {
    let tail = Tail::parse(tail).ok_or_else(|| {
        raise(
            ErrorClass::BadInput,
            format!("tail {tail:?}: expected pad_masked, drop or repeat"),
        )
    })?;
    let split = match split {
        Some(s) => {
            Some(SplitSpec::parse(&s, take.as_deref().unwrap_or("train")).map_err(feed_error)?)
        }
        None => None,
    };
    Ok(FeedOptions {
        options: store_options.unwrap_or_default(),
        predicate,
        columns: columns.unwrap_or_default(),
        version,
        seed,
        global_batch: batch_size,
        world_size,
        rank,
        tail,
        clump,
        split,
        threads,
        read_budget,
        memory_budget,
        ..FeedOptions::new(store)
    })
}

/// One rank's feed over a store (the engine of `cellshard.Dataset`).
#[pyclass(module = "cellshard._cellshard", name = "Feed")]
struct PyFeed {
    shared: Arc<Shared>,
}

#[pymethods]
impl PyFeed {
    /// Open the store at a pinned version and select rows; with `state` (bytes of a
    /// cursor), resume that cursor's selection, version, seed, clump and tail.
    #[new]
    #[pyo3(signature = (store, r#where=None, columns=None, version=None, seed=0, batch_size=256,
                        rank=0, world_size=1, tail="pad_masked", clump=1, split=None, take=None,
                        threads=0, read_budget=cellshard_feed::READ_BUDGET,
                        memory_budget=cellshard_feed::MEMORY_BUDGET, store_options=None,
                        state=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        store: String,
        r#where: Option<String>,
        columns: Option<Vec<String>>,
        version: Option<i64>,
        seed: u64,
        batch_size: u64,
        rank: u64,
        world_size: u64,
        tail: &str,
        clump: u64,
        split: Option<String>,
        take: Option<String>,
        threads: usize,
        read_budget: u64,
        memory_budget: u64,
        store_options: Option<BTreeMap<String, String>>,
        state: Option<&[u8]>,
    ) -> PyResult<Self> {
        let opts = options(
            store,
            r#where,
            columns,
            version,
            seed,
            batch_size,
            rank,
            world_size,
            tail,
            clump,
            split,
            take,
            threads,
            read_budget,
            memory_budget,
            store_options,
        )?;
        let cursor = state
            .map(Cursor::from_bytes)
            .transpose()
            .map_err(feed_error)?;
        let runtime = Runtime::new()?;
        let rt = runtime.get()?;
        let feed = py
            .detach(|| match &cursor {
                Some(c) => rt.block_on(Feed::from_cursor(opts, c)),
                None => rt.block_on(Feed::open(opts)),
            })
            .map_err(feed_error)?;
        Ok(PyFeed {
            shared: Arc::new(Shared {
                feed: Arc::new(feed),
                runtime,
            }),
        })
    }

    /// Rows selected at the pinned version.
    #[getter]
    fn rows(&self) -> u64 {
        self.shared.feed.len()
    }

    /// The pinned `sites` version.
    #[getter]
    fn version(&self) -> i64 {
        self.shared.feed.version()
    }

    /// The global batch size.
    #[getter]
    fn global_batch(&self) -> u64 {
        self.shared.feed.global_batch()
    }

    /// Slots in each of this rank's batches.
    #[getter]
    fn rank_batch(&self) -> u64 {
        self.shared.feed.rank_batch()
    }

    /// Channel names in stacking order (`w1`.. for stores that name none).
    #[getter]
    fn channel_names(&self) -> Vec<String> {
        self.shared.feed.channel_names().to_vec()
    }

    /// Compressed tensor bytes of an epoch (all ranks).
    #[getter]
    fn bytes_to_read(&self) -> u64 {
        self.shared.feed.bytes_to_read()
    }

    /// Steps from global position `start` to the end of an epoch (the same on every rank).
    fn steps(&self, start: u64) -> u64 {
        self.shared.feed.steps(start)
    }

    /// The cursor after the steps before global position `position` of `epoch`.
    fn cursor<'py>(&self, py: Python<'py>, epoch: u64, position: u64) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.shared.feed.cursor(epoch, position).to_bytes())
    }

    /// (distinct plates per global batch, bits of index-distance entropy) of `epoch`.
    fn shuffle_quality(&self, epoch: u64) -> (f64, f64) {
        let q = self.shared.feed.shuffle_quality(epoch);
        (q.plates_per_batch, q.diff_entropy_bits)
    }

    /// This rank's batches of `epoch` at the global positions `starts`, read ahead.
    fn stream(&self, epoch: u64, starts: Vec<u64>) -> PyResult<Stream> {
        let rt = self.shared.runtime.get()?;
        let _entered = rt.enter();
        Ok(Stream {
            shared: self.shared.clone(),
            stream: Some(self.shared.feed.stream(epoch, starts)),
        })
    }
}

/// Batches read ahead on the feed's threads.
#[pyclass(module = "cellshard._cellshard")]
struct Stream {
    shared: Arc<Shared>,
    stream: Option<BatchStream>,
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Batch>> {
        let rt = self.shared.runtime.get()?;
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        let next = py.detach(|| rt.block_on(stream.next()));
        let batch = match next {
            None => {
                self.stream = None;
                return Ok(None);
            }
            Some(b) => b.map_err(feed_error)?,
        };
        let [c, h, w] = self.shared.feed.tensor_dims();
        let b = batch.valid.len();
        let owner = Bound::new(
            py,
            TensorMemory {
                buf: batch.tensors,
                feed: self.shared.feed.clone(),
            },
        )?;
        let view = ArrayView4::from_shape((b, c, h, w), &owner.get().buf[..]).map_err(internal)?;
        // SAFETY: the array's base object is `owner`, which owns the buffer, never resizes
        // it, and hands it back to the feed only when it is itself dropped, after the array.
        #[allow(unsafe_code)] // The one unsafe call of the package: a borrowed array, see above.
        let tensors = unsafe { PyArray4::<u8>::borrow_from_array(&view, owner.clone().into_any()) };
        Ok(Some(Batch {
            tensors: tensors.into_any().unbind(),
            valid: PyArray::from_owned_array(py, Array1::from_vec(batch.valid))
                .into_any()
                .unbind(),
            site_ids: batch.site_ids,
            samples: batch.samples,
            start: batch.start,
            meta: ArrowData::new(batch.meta.schema(), vec![batch.meta]),
        }))
    }
}

/// The memory of a batch's tensors, the base object of its numpy array: when the array
/// (and every view of it) is gone, the buffer goes back to the feed for a later batch, so
/// reading does not fault in fresh pages for every batch.
#[pyclass(module = "cellshard._cellshard", frozen)]
struct TensorMemory {
    buf: Vec<u8>,
    feed: Arc<Feed>,
}

impl Drop for TensorMemory {
    fn drop(&mut self) {
        self.feed.recycle(std::mem::take(&mut self.buf));
    }
}

/// One rank's batch: `tensors` (numpy uint8, B x C x H x W), `valid` (numpy bool, B),
/// `site_ids` and `samples` (indices into the selection; None for padded slots), `start`
/// (the step's first global position) and `metadata` (Arrow, one row per slot).
#[pyclass(module = "cellshard._cellshard")]
struct Batch {
    #[pyo3(get, set)]
    tensors: Py<PyAny>,
    #[pyo3(get)]
    valid: Py<PyAny>,
    #[pyo3(get)]
    site_ids: Vec<Option<String>>,
    #[pyo3(get)]
    samples: Vec<Option<u64>>,
    #[pyo3(get)]
    start: u64,
    meta: ArrowData,
}

#[pymethods]
impl Batch {
    /// The metadata columns asked for, one row per slot (null rows for padded slots), as
    /// Arrow: `pyarrow.table(batch.metadata)`, `polars.DataFrame(batch.metadata)`.
    #[getter]
    fn metadata(&self) -> ArrowData {
        self.meta.clone()
    }
}

/// The fields of a cursor (bytes of `Dataset.state_dict()`), as a dict.
#[pyfunction]
fn read_state<'py>(py: Python<'py>, state: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let c = Cursor::from_bytes(state).map_err(feed_error)?;
    let d = PyDict::new(py);
    d.set_item("version", c.version)?;
    d.set_item("seed", c.seed)?;
    d.set_item("epoch", c.epoch)?;
    d.set_item("position", c.position)?;
    d.set_item("batch_size", c.global_batch)?;
    d.set_item("clump", c.clump)?;
    d.set_item("tail", c.tail.name())?;
    Ok(d)
}

/// Run the `cellshard` command line (`argv`, the program name first) and return its exit
/// status: the console command of the package. The GIL is released while it runs.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| cellshard_cli::main(argv))
}

#[pymodule]
fn _cellshard(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFeed>()?;
    m.add_class::<Stream>()?;
    m.add_class::<Batch>()?;
    m.add_class::<ArrowData>()?;
    m.add_function(wrap_pyfunction!(read_state, m)?)?;
    m.add_function(wrap_pyfunction!(arrow::sql, m)?)?;
    m.add_function(wrap_pyfunction!(embeddings::write_embeddings, m)?)?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    Ok(())
}
