//! Tables to Python through the Arrow PyCapsule interface (`__arrow_c_stream__`), so
//! pyarrow, polars and DuckDB take them without a copy and without a hard dependency; and
//! `cellshard.sql`, the CLI's SQL session from Python.

use std::collections::BTreeMap;

use arrow::array::{RecordBatch, RecordBatchIterator};
use arrow::datatypes::SchemaRef;
use arrow::ffi_stream::FFI_ArrowArrayStream;
use cellshard_sql::AsOf;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// An Arrow table held in Rust: `pyarrow.table(data)`, `polars.DataFrame(data)`,
/// `duckdb.arrow(data)`, or `data.to_pyarrow()`.
#[pyclass(module = "cellshard._cellshard", frozen)]
#[derive(Clone)]
pub(crate) struct ArrowData {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl ArrowData {
    pub(crate) fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> ArrowData {
        ArrowData { schema, batches }
    }
}

#[pymethods]
impl ArrowData {
    /// The Arrow C stream of the table, in a capsule named `arrow_array_stream`. A
    /// `requested_schema` is not applied: the table has one schema.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RecordBatchIterator::new(
            self.batches.clone().into_iter().map(Ok),
            self.schema.clone(),
        );
        // The consumer moves the stream out of the capsule; dropping what is left releases
        // it only if it was never taken.
        PyCapsule::new_with_value(
            py,
            FFI_ArrowArrayStream::new(Box::new(reader)),
            c"arrow_array_stream",
        )
    }

    /// Rows in the table.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Column names.
    #[getter]
    fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn __len__(&self) -> usize {
        self.num_rows()
    }

    /// The table as a `pyarrow.Table` (needs pyarrow).
    fn to_pyarrow<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py().import("pyarrow")?.call_method1("table", (slf,))
    }

    fn __repr__(&self) -> String {
        format!(
            "cellshard.ArrowData({} rows: {})",
            self.num_rows(),
            self.column_names().join(", ")
        )
    }
}

/// Run one SQL statement over a store, in the session `cellshard sql` opens (its tables,
/// views and tensor functions); `version` pins `sites` as `--version` does. Returns Arrow.
/// With `timeout` (seconds) the query runs in a worker process of its own, killed then.
#[pyfunction]
#[pyo3(signature = (store, query, version=None, store_options=None, allow_writes=false, query_memory=None, timeout=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sql(
    py: Python<'_>,
    store: String,
    query: String,
    version: Option<i64>,
    store_options: Option<BTreeMap<String, String>>,
    allow_writes: bool,
    query_memory: Option<usize>,
    timeout: Option<f64>,
) -> PyResult<ArrowData> {
    let as_of = version.map_or(AsOf::Latest, AsOf::Version);
    let options = store_options.unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::internal(format!("cannot start the query threads: {e}")))?;
    if let Some(t) = timeout {
        let invalid = |m: &str| crate::raise(cellshard_core::ErrorClass::BadInput, m.to_string());
        let t = std::time::Duration::try_from_secs_f64(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| invalid("timeout must be a positive number of seconds"))?;
        if allow_writes {
            return Err(invalid(
                "timeout runs read-only queries (in a worker process); it cannot be given with allow_writes=True",
            ));
        }
        let python: std::ffi::OsString = py
            .import("sys")?
            .getattr("executable")?
            .extract::<String>()?
            .into();
        let spec = cellshard_view::serve::WorkerSpec {
            command: vec![
                python,
                "-m".into(),
                "cellshard".into(),
                "query-worker".into(),
            ],
            store,
            options,
            as_of,
            memory: query_memory,
        };
        let out = py.detach(|| rt.block_on(cellshard_view::serve::query_once(spec, &query, t)));
        rt.shutdown_background();
        let (schema, batches) = out.map_err(|e| crate::raise(e.class(), e.to_string()))?;
        return Ok(ArrowData::new(schema, batches));
    }
    let batches = py.detach(|| {
        rt.block_on(async {
            let mut session =
                cellshard_sql::open_session_with(&store, &options, as_of, query_memory).await?;
            session.allow_writes(allow_writes);
            let batches = session.run(&query).await?;
            // The schema of an empty result comes from the plan (none for a statement).
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => match session
                    .ctx
                    .sql_with_options(&query, cellshard_sql::guard::options())
                    .await
                {
                    Ok(df) => df.schema().inner().clone(),
                    Err(_) => std::sync::Arc::new(arrow::datatypes::Schema::empty()),
                },
            };
            Ok::<_, cellshard_sql::Error>((schema, batches))
        })
    });
    rt.shutdown_background();
    let (schema, batches) = batches.map_err(|e| crate::raise(e.class(), e.to_string()))?;
    Ok(ArrowData::new(schema, batches))
}
