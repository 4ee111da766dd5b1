//! Python bindings of the cellshard training feed: `cellshard.Dataset`.
//!
//! Every read runs on the feed's own Rust threads with the GIL released; a batch's tensors
//! are handed to numpy without a copy (the Rust buffer becomes the array's memory).

use std::sync::Arc;

use cellshard_feed::{Cursor, Feed, FeedOptions, SplitSpec, Tail};
use numpy::PyArray;
use numpy::ndarray::{Array1, Array4};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A feed and the runtime its reads run on.
struct Shared {
    feed: Feed,
    runtime: tokio::runtime::Runtime,
}

fn runtime(threads: usize) -> PyResult<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    b.enable_all()
        .thread_name("cellshard-feed")
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the reader threads: {e}")))
}

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
) -> PyResult<FeedOptions> {
    let tail = Tail::parse(tail).ok_or_else(|| {
        value_error(format!(
            "tail {tail:?}: expected pad_masked, drop or repeat"
        ))
    })?;
    let split = match (split, take) {
        (Some(s), Some(t)) => Some(SplitSpec::parse(&s, &t).map_err(value_error)?),
        (Some(s), None) => Some(SplitSpec::parse(&s, "train").map_err(value_error)?),
        (None, _) => None,
    };
    Ok(FeedOptions {
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
        ..FeedOptions::new(store)
    })
}

/// A rank's view of a store for training: see `cellshard.Dataset.__doc__`.
#[pyclass(module = "cellshard")]
struct Dataset {
    shared: Arc<Shared>,
    epoch: u64,
    position: u64,
}

#[pymethods]
impl Dataset {
    /// Open the store at a pinned version and select rows with a SQL predicate over the
    /// metadata columns; `batch_size` is the global batch (all ranks together).
    #[new]
    #[pyo3(signature = (store, r#where=None, columns=None, version=None, seed=0, batch_size=256,
                        rank=0, world_size=1, tail="pad_masked", clump=1, split=None, take=None,
                        threads=0))]
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
    ) -> PyResult<Self> {
        let opts = options(
            store, r#where, columns, version, seed, batch_size, rank, world_size, tail, clump,
            split, take,
        )?;
        let rt = runtime(threads)?;
        let feed = py
            .detach(|| rt.block_on(Feed::open(opts)))
            .map_err(value_error)?;
        Ok(Dataset {
            shared: Arc::new(Shared { feed, runtime: rt }),
            epoch: 0,
            position: 0,
        })
    }

    /// Resume from `state` (bytes of `state_dict()`), on any world size and rank.
    #[staticmethod]
    #[pyo3(signature = (state, store, r#where=None, columns=None, batch_size=256, rank=0,
                        world_size=1, split=None, take=None, threads=0))]
    #[allow(clippy::too_many_arguments)]
    fn from_state(
        py: Python<'_>,
        state: &[u8],
        store: String,
        r#where: Option<String>,
        columns: Option<Vec<String>>,
        batch_size: u64,
        rank: u64,
        world_size: u64,
        split: Option<String>,
        take: Option<String>,
        threads: usize,
    ) -> PyResult<Self> {
        let cursor = Cursor::from_bytes(state).map_err(value_error)?;
        let opts = options(
            store,
            r#where,
            columns,
            Some(cursor.version),
            cursor.seed,
            batch_size,
            rank,
            world_size,
            "pad_masked",
            1,
            split,
            take,
        )?;
        let rt = runtime(threads)?;
        let feed = py
            .detach(|| rt.block_on(Feed::from_cursor(opts, &cursor)))
            .map_err(value_error)?;
        Ok(Dataset {
            shared: Arc::new(Shared { feed, runtime: rt }),
            epoch: cursor.epoch,
            position: cursor.position,
        })
    }

    /// Steps in a whole epoch (the same on every rank).
    fn __len__(&self) -> usize {
        self.shared.feed.steps(0) as usize
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

    /// The batches of epoch `epoch` for this rank, from where the dataset stands in it.
    fn epoch(slf: Bound<'_, Self>, epoch: u64) -> PyResult<EpochIter> {
        let mut me = slf.borrow_mut();
        if me.epoch != epoch {
            me.epoch = epoch;
            me.position = 0;
        }
        drop(me);
        Ok(EpochIter {
            dataset: slf.unbind(),
            epoch,
        })
    }

    /// The position after the last batch handed out: about 50 bytes, the same on every
    /// rank.
    fn state_dict<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let c = self.shared.feed.cursor(self.epoch, self.position);
        PyBytes::new(py, &c.to_bytes())
    }
}

/// The batches of one epoch.
#[pyclass(module = "cellshard")]
struct EpochIter {
    dataset: Py<Dataset>,
    epoch: u64,
}

#[pymethods]
impl EpochIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Batch>> {
        let (shared, position, global) = {
            let d = self.dataset.borrow(py);
            if d.epoch != self.epoch {
                return Err(PyRuntimeError::new_err(
                    "the dataset moved to another epoch while this one was iterated",
                ));
            }
            let g = d.shared.feed.cursor(0, 0).global_batch as u64;
            (d.shared.clone(), d.position, g)
        };
        if position >= shared.feed.len() || shared.feed.steps(position) == 0 {
            return Ok(None);
        }
        let epoch = self.epoch;
        let batch = py
            .detach(|| shared.runtime.block_on(shared.feed.read(epoch, position)))
            .map_err(value_error)?;
        self.dataset.borrow_mut(py).position = position + global;
        let [c, h, w] = shared.feed.tensor_dims();
        let b = batch.valid.len();
        let tensors = Array4::from_shape_vec((b, c, h, w), batch.tensors)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(Some(Batch {
            tensors: PyArray::from_owned_array(py, tensors).into_any().unbind(),
            valid: PyArray::from_owned_array(py, Array1::from_vec(batch.valid))
                .into_any()
                .unbind(),
            site_ids: batch.site_ids,
            samples: batch.samples,
        }))
    }
}

/// One rank's batch: `tensors` (numpy uint8, B x C x H x W), `valid` (numpy bool, B),
/// `site_ids` and `samples` (indices into the selection; None for padded slots).
#[pyclass(module = "cellshard")]
struct Batch {
    #[pyo3(get)]
    tensors: Py<PyAny>,
    #[pyo3(get)]
    valid: Py<PyAny>,
    #[pyo3(get)]
    site_ids: Vec<Option<String>>,
    #[pyo3(get)]
    samples: Vec<Option<u64>>,
}

#[pymodule]
fn _cellshard(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Dataset>()?;
    m.add_class::<EpochIter>()?;
    m.add_class::<Batch>()?;
    Ok(())
}
