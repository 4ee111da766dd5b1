//! `nearest(table, model, query, k [, where])`: the `k` sites whose vectors under `model`
//! are most similar (cosine) to `query`, a site id (itself left out) or a vector, by an
//! exact brute force over every vector of the model, on every core.
//!
//! `table` holds `site_id`, `model` and `vector` (the `embeddings` table); a table without a
//! `model` column takes the second argument as the name of its vector column
//! (`nearest('sites', 'channel_mean', ...)`). `where` is a predicate over `sites` that the
//! candidates' sites must meet (`well_type = 'negative_control'`). Columns: `rank` (1..k),
//! `site_id`, `similarity`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, AsArray, Float64Array, Int32Array, RecordBatch, RecordBatchOptions, StringArray,
};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session as DfSession, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err, plan_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ColumnarValue, ExecutionPlan};

use crate::carried::{Carried, Tables, args_from, args_to, capture, context};

/// The `nearest` table function. A session's tables are pinned to one version each, so the
/// unit vectors it reads are kept for the session's next searches (a model's `N x D`
/// float32, plus its ids).
#[derive(Debug, Default)]
pub struct Nearest {
    cache: Cache,
}

/// Loaded vectors by (table, model).
type Cache = Arc<Mutex<HashMap<(String, String), Arc<Vectors>>>>;

/// A model's unit vectors, row-major, and their site ids.
#[derive(Debug)]
pub(crate) struct Vectors {
    pub(crate) ids: Vec<String>,
    /// Row of each id.
    pub(crate) index: HashMap<String, usize>,
    pub(crate) flat: Vec<f32>,
    pub(crate) dim: usize,
}

/// What to search for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Query {
    Site(String),
    Vector(Vec<f32>),
}

/// `nearest`'s arguments.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Args {
    table: String,
    model: String,
    query: Query,
    k: usize,
    filter: Option<String>,
}

/// A call of `nearest`, with the tables it reads.
#[derive(Debug)]
pub(crate) struct NearestTable {
    cache: Cache,
    args: Args,
    tables: Tables,
}

impl NearestTable {
    /// From [`Carried`]'s arguments and tables.
    pub(crate) fn from_wire(
        args: serde_json::Value,
        tables: Tables,
    ) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(Self {
            cache: Cache::default(),
            args: args_from(args)?,
            tables,
        }))
    }
}

impl Carried for NearestTable {
    fn function(&self) -> &'static str {
        "nearest"
    }

    fn args(&self) -> Result<serde_json::Value> {
        args_to(&self.args)
    }

    fn tables(&self) -> &Tables {
        &self.tables
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("rank", DataType::Int32, false),
        Field::new("site_id", DataType::Utf8, false),
        Field::new("similarity", DataType::Float64, false),
    ]))
}

/// A constant argument's value.
pub(crate) fn constant(session: &dyn DfSession, e: &Expr) -> Result<ScalarValue> {
    let phys = session.create_physical_expr(e.clone(), &DFSchema::empty())?;
    let one = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    match phys.evaluate(&one)? {
        ColumnarValue::Scalar(s) => Ok(s),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
    }
}

/// A vector table function's 4 or 5 arguments as constants, and its first, the name of the
/// table it reads.
pub(crate) fn table_call(
    args: &TableFunctionArgs,
    usage: &str,
) -> Result<(Vec<ScalarValue>, String)> {
    let exprs = args.exprs();
    if !(4..=5).contains(&exprs.len()) {
        return plan_err!("{usage}: 4 or 5 arguments, got {}", exprs.len());
    }
    let v: Vec<ScalarValue> = exprs
        .iter()
        .map(|e| constant(args.session(), e))
        .collect::<Result<_>>()?;
    let table = text(&v[0], "table")?;
    if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return plan_err!("{usage}: table {table:?} is not a table name");
    }
    Ok((v, table))
}

pub(crate) fn text(v: &ScalarValue, what: &str) -> Result<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Ok(s.clone()),
        _ => plan_err!("nearest: {what} must be a string, got {v}"),
    }
}

impl TableFunctionImpl for Nearest {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let usage = "nearest(table, model, query_site_id | vector, k [, where])";
        let (v, table) = table_call(&args, usage)?;
        let model = text(&v[1], "model")?;
        let query = match &v[2] {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Query::Site(s.clone()),
            other => {
                let arr = other.to_array()?;
                let list = arrow::compute::cast(
                    &arr,
                    &DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
                )
                .map_err(|_| {
                    datafusion::error::DataFusionError::Plan(format!(
                        "{usage}: the query must be a site id or a vector, got {other}"
                    ))
                })?;
                let list = list.as_list::<i32>();
                if list.is_null(0) {
                    return plan_err!("{usage}: the query vector is NULL");
                }
                Query::Vector(
                    list.value(0)
                        .as_primitive::<Float32Type>()
                        .values()
                        .to_vec(),
                )
            }
        };
        let k = match &v[3] {
            ScalarValue::Int64(Some(k)) if (1..=100_000).contains(k) => {
                usize::try_from(*k).unwrap_or(1)
            }
            other => return plan_err!("{usage}: k must be an integer in 1..=100000, got {other}"),
        };
        let filter = match v.get(4) {
            Some(f) => Some(text(f, "where")?),
            None => None,
        };
        let mut reads = vec![table.as_str()];
        if filter.is_some() {
            reads.push("sites");
        }
        let tables = capture(args.session(), &reads)?;
        Ok(Arc::new(NearestTable {
            cache: self.cache.clone(),
            args: Args {
                table,
                model,
                query,
                k,
                filter,
            },
            tables,
        }))
    }
}

pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `k` rows of `flat` (unit rows of `dim`) most similar to `q` (a unit vector), among
/// those `keep` marks (all when None), best first: each core scans its share of the rows
/// with its own heap of `k`, and the shares' bests are merged.
fn most_similar(
    flat: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    keep: Option<&[bool]>,
) -> Vec<(usize, f32)> {
    let n = flat.len() / dim;
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n.max(1));
    let per = n.div_ceil(threads.max(1)).max(1);
    let mut best: Vec<(usize, f32)> = std::thread::scope(|s| {
        let handles: Vec<_> = flat
            .chunks(per * dim)
            .enumerate()
            .map(|(t, rows)| {
                let first = t * per;
                let keep = keep.map(|m| &m[first..(first + per).min(m.len())]);
                s.spawn(move || cellshard_stages::vector::best_dots(rows, dim, q, k, first, keep))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    best.truncate(k);
    best
}

/// The vectors of `model` in `table` (or of column `model`, for a table without a `model`
/// column), as unit vectors.
pub(crate) async fn load_vectors(
    ctx: &SessionContext,
    table: &str,
    model: &str,
) -> Result<Vectors> {
    let has_model = ctx
        .table(table)
        .await?
        .schema()
        .has_column_with_unqualified_name("model");
    let sql = if has_model {
        format!(
            "SELECT site_id, vector FROM {} WHERE model = {}",
            table,
            quote(model)
        )
    } else if model.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("SELECT site_id, {} AS vector FROM {}", model, table)
    } else {
        return exec_err!("nearest: {:?} is not a column of {}", model, table);
    };
    let vectors = ctx.sql(&sql).await?.collect().await?;
    let (mut ids, mut flat, mut dim) = (Vec::new(), Vec::<f32>::new(), None);
    let list_type = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
    for b in &vectors {
        let sid = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let vec = arrow::compute::cast(b.column(1), &list_type)?;
        let (sid, vec) = (sid.as_string::<i32>(), vec.as_list::<i32>());
        for i in 0..b.num_rows() {
            if sid.is_null(i) || vec.is_null(i) {
                continue;
            }
            let v = vec.value(i);
            let v = v.as_primitive::<Float32Type>().values();
            let d = *dim.get_or_insert(v.len());
            if v.len() != d {
                return exec_err!(
                    "nearest: model {:?} has vectors of {} and {d} values",
                    model,
                    v.len()
                );
            }
            ids.push(sid.value(i).to_string());
            flat.extend_from_slice(v);
        }
    }
    let Some(dim) = dim else {
        return exec_err!("nearest: {} has no vectors of model {:?}", table, model);
    };
    cellshard_stages::vector::normalize(&mut flat, dim);
    let index = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect();
    Ok(Vectors {
        ids,
        index,
        flat,
        dim,
    })
}

#[async_trait]
impl TableProvider for NearestTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A context only when something must be read: building one costs a millisecond.
        let a = &self.args;
        let key = (a.table.clone(), a.model.clone());
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        let vectors = match cached {
            Some(v) => v,
            None => {
                let ctx = context(state, &self.tables)?;
                let v = Arc::new(load_vectors(&ctx, &a.table, &a.model).await?);
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(key, v.clone());
                }
                v
            }
        };
        let (ids, flat, dim) = (&vectors.ids, &vectors.flat, vectors.dim);
        let (mut q, skip) = match &a.query {
            Query::Vector(v) => (v.clone(), None),
            Query::Site(s) => match vectors.index.get(s).copied() {
                Some(p) => (flat[p * dim..(p + 1) * dim].to_vec(), Some(p)),
                None => {
                    return exec_err!("nearest: site {s:?} has no vector of model {:?}", a.model);
                }
            },
        };
        if q.len() != dim {
            return exec_err!(
                "nearest: the query has {} values, model {:?} has {dim}",
                q.len(),
                a.model
            );
        }
        cellshard_stages::vector::normalize(&mut q, dim);
        // Candidates: not the query site, and meeting `where` over sites.
        let mut keep: Option<Vec<bool>> = None;
        if let Some(f) = &a.filter {
            let sql = format!("SELECT site_id FROM sites WHERE {f}");
            let mut mask = vec![false; ids.len()];
            let ctx = context(state, &self.tables)?;
            for b in ctx.sql(&sql).await?.collect().await? {
                let c = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
                for id in c.as_string::<i32>().iter().flatten() {
                    if let Some(&i) = vectors.index.get(id) {
                        mask[i] = true;
                    }
                }
            }
            keep = Some(mask);
        }
        if let Some(p) = skip {
            keep.get_or_insert_with(|| vec![true; ids.len()])[p] = false;
        }
        let best = most_similar(flat, dim, &q, a.k, keep.as_deref());
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int32Array::from_iter_values(
                    (1..=best.len()).map(|r| i32::try_from(r).unwrap_or(i32::MAX)),
                )),
                Arc::new(StringArray::from_iter_values(
                    best.iter().map(|(i, _)| ids[*i].as_str()),
                )),
                Arc::new(Float64Array::from_iter_values(
                    best.iter().map(|(_, s)| f64::from(*s)),
                )),
            ],
        )?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema(),
            projection.cloned(),
        )?)
    }
}
