//! `cellshard.write_embeddings`: a trained model's vectors into the store's `embeddings`
//! table, one model replaced in one commit.

use std::collections::BTreeMap;

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Write `vectors` (float32, N x D, C-contiguous) for `site_ids` as model `model`.
#[pyfunction]
#[pyo3(signature = (store, model, site_ids, vectors, store_options=None))]
pub(crate) fn write_embeddings<'py>(
    py: Python<'py>,
    store: String,
    model: String,
    site_ids: Vec<String>,
    vectors: PyReadonlyArray2<'py, f32>,
    store_options: Option<BTreeMap<String, String>>,
) -> PyResult<Bound<'py, PyDict>> {
    let dim = vectors.shape()[1];
    let values = vectors
        .as_slice()
        .map_err(|e| crate::raise(cellshard_core::ErrorClass::BadInput, e.to_string()))?;
    let options = store_options.unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| crate::internal(format!("cannot start the I/O thread: {e}")))?;
    let out = py.detach(|| {
        rt.block_on(async {
            let root = cellshard_store::Location::parse(&store, &options)?;
            root.create_local_dir()?;
            cellshard_store::embeddings::write_embeddings(&root, &model, &site_ids, dim, values)
                .await
        })
    });
    rt.shutdown_background();
    let w = out.map_err(|e| crate::raise(e.class(), e.to_string()))?;
    let d = PyDict::new(py);
    d.set_item("model", w.model)?;
    d.set_item("rows", w.rows)?;
    d.set_item("dim", w.dim)?;
    d.set_item("version", w.version)?;
    Ok(d)
}
