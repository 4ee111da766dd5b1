//! `replicate_map(table, model, group_by, control [, null_size])`: how well each
//! perturbation's replicates retrieve each other against the controls, as copairs'
//! "phenotypic activity" recipe computes it.
//!
//! Every site not matching `control` (a predicate over `sites`) with a non-NULL `group_by`
//! (an expression over `sites`, e.g. `sirna_id`) in a group of at least two is a query: the
//! other sites of its group are its positives, the control sites its negatives, ranked by
//! cosine similarity of their vectors under `model`. Its average precision is the mean of
//! the precision at each positive's rank (ties: positives first, as copairs orders them); a
//! group's mean average precision (mAP) is the mean over its sites. The p-value compares the
//! mAP with `null_size` (default 10,000) null mAPs, each the mean of as many draws as the
//! group has sites from a pool of `null_size` APs of positives at uniformly random ranks
//! (one pool per count of positives and total, as copairs keeps one null per
//! configuration): `(1 + null mAPs >= mAP) / (1 + null_size)`, seeded by the group's name
//! so it is reproducible; `corrected_p_value` is Benjamini-Hochberg over the groups. Columns: `group`, `sites`, `controls`, `mean_average_precision`, `p_value`,
//! `corrected_p_value`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session as DfSession, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::carried::{Carried, Tables, args_from, args_to, capture, context};
use crate::nearest::{load_vectors, table_call, text};

/// The `replicate_map` table function.
#[derive(Debug, Default)]
pub struct ReplicateMap;

/// `replicate_map`'s arguments.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Args {
    table: String,
    model: String,
    group_by: String,
    control: String,
    null_size: usize,
}

/// A call of `replicate_map`, with the tables it reads.
#[derive(Debug)]
pub(crate) struct ReplicateMapTable {
    args: Args,
    tables: Tables,
}

impl ReplicateMapTable {
    /// From [`Carried`]'s arguments and tables.
    pub(crate) fn from_wire(
        args: serde_json::Value,
        tables: Tables,
    ) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(Self {
            args: args_from(args)?,
            tables,
        }))
    }
}

impl Carried for ReplicateMapTable {
    fn function(&self) -> &'static str {
        "replicate_map"
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
        Field::new("group", DataType::Utf8, false),
        Field::new("sites", DataType::Int64, false),
        Field::new("controls", DataType::Int64, false),
        Field::new("mean_average_precision", DataType::Float64, false),
        Field::new("p_value", DataType::Float64, false),
        Field::new("corrected_p_value", DataType::Float64, false),
    ]))
}

impl TableFunctionImpl for ReplicateMap {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let usage = "replicate_map(table, model, group_by, control [, null_size])";
        let (v, table) = table_call(&args, usage)?;
        let null_size = match v.get(4) {
            None => 10_000,
            Some(ScalarValue::Int64(Some(n))) if (1..=1_000_000).contains(n) => {
                usize::try_from(*n).unwrap_or(10_000)
            }
            Some(other) => {
                return plan_err!("{usage}: null_size must be in 1..=1000000, got {other}");
            }
        };
        let tables = capture(args.session(), &[table.as_str(), "sites"])?;
        Ok(Arc::new(ReplicateMapTable {
            args: Args {
                table,
                model: text(&v[1], "model")?,
                group_by: text(&v[2], "group_by")?,
                control: text(&v[3], "control")?,
                null_size,
            },
            tables,
        }))
    }
}

/// Benjamini-Hochberg adjusted p-values, in the input order.
fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
    let mut out = vec![0.0; n];
    let mut running = 1.0f64;
    for (i, &ix) in order.iter().enumerate() {
        let rank = (n - i) as f64;
        running = running.min(p[ix] * n as f64 / rank);
        out[ix] = running.min(1.0);
    }
    out
}

#[async_trait]
impl TableProvider for ReplicateMapTable {
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
        let ctx = context(state, &self.tables)?;
        let a = &self.args;
        let v = load_vectors(&ctx, &a.table, &a.model).await?;
        let meta = ctx
            .sql(&format!(
                "SELECT site_id, CAST(({}) AS VARCHAR), coalesce(({}), false) FROM sites",
                a.group_by, a.control
            ))
            .await?
            .collect()
            .await?;
        let mut site_meta: HashMap<String, (Option<String>, bool)> = HashMap::new();
        for b in &meta {
            let ids = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
            let groups = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
            let controls = arrow::compute::cast(b.column(2), &DataType::Boolean)?;
            let (ids, groups) = (ids.as_string::<i32>(), groups.as_string::<i32>());
            let controls = controls.as_boolean();
            for i in 0..b.num_rows() {
                let g = (!groups.is_null(i)).then(|| groups.value(i).to_string());
                site_meta.insert(ids.value(i).to_string(), (g, controls.value(i)));
            }
        }
        let mut controls = Vec::new();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, id) in v.ids.iter().enumerate() {
            match site_meta.get(id) {
                Some((_, true)) => controls.push(i),
                Some((Some(g), false)) => groups.entry(g.clone()).or_default().push(i),
                _ => {}
            }
        }
        if controls.is_empty() {
            return exec_err!(
                "replicate_map: no site with a vector of {:?} matches the control predicate {:?}",
                a.model,
                a.control
            );
        }
        // Groups are scored on every core; each draw is seeded by its group or
        // configuration, so the result does not depend on the split.
        let scored: Vec<(&String, &Vec<usize>)> =
            groups.iter().filter(|g| g.1.len() >= 2).collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(scored.len().max(1));
        let per = scored.len().div_ceil(threads).max(1);
        let results: Vec<(f64, f64)> = std::thread::scope(|s| {
            let handles: Vec<_> = scored
                .chunks(per)
                .map(|chunk| {
                    let (v, controls) = (&v, &controls);
                    s.spawn(move || {
                        cellshard_stages::map::score_groups(
                            chunk,
                            &v.flat,
                            v.dim,
                            controls,
                            a.null_size,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let names: Vec<String> = scored.iter().map(|g| g.0.clone()).collect();
        let sizes: Vec<i64> = scored
            .iter()
            .map(|g| i64::try_from(g.1.len()).unwrap_or(i64::MAX))
            .collect();
        let maps: Vec<f64> = results.iter().map(|r| r.0).collect();
        let pvals: Vec<f64> = results.iter().map(|r| r.1).collect();
        let corrected = benjamini_hochberg(&pvals);
        let n_controls = i64::try_from(controls.len()).unwrap_or(i64::MAX);
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(Int64Array::from(sizes.clone())),
                Arc::new(Int64Array::from(vec![n_controls; sizes.len()])),
                Arc::new(Float64Array::from(maps)),
                Arc::new(Float64Array::from(pvals)),
                Arc::new(Float64Array::from(corrected)),
            ],
        )?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bh_matches_hand_values() {
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
        assert!((q[0] - 0.04).abs() < 1e-12, "{q:?}");
        assert!((q[1] - 0.16 / 3.0).abs() < 1e-12, "{q:?}");
        assert!((q[2] - 0.16 / 3.0).abs() < 1e-12, "{q:?}");
        assert!((q[3] - 0.2).abs() < 1e-12, "{q:?}");
    }
}
