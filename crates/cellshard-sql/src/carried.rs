//! Table functions computed from store tables when they are scanned (`nearest`,
//! `replicate_map`). Each takes the tables it reads with it, resolved when it is called, and
//! runs its queries in a private context over exactly those tables. So a plan carries it
//! whole (`crate::travel`), and a scheduler computes it over the versions the client
//! pinned.

use std::future::Future;
use std::sync::Arc;

use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::execution::context::{SessionContext, SessionState};
use serde::{Deserialize, Serialize};

/// Tables a function reads, by name.
pub(crate) type Tables = Vec<(String, Arc<dyn TableProvider>)>;

/// A table function's result that [`encode`] can carry.
pub(crate) trait Carried {
    /// The function's name.
    fn function(&self) -> &'static str;
    /// Its arguments.
    fn args(&self) -> Result<serde_json::Value>;
    /// The tables it reads.
    fn tables(&self) -> &Tables;
}

/// The registered tables `names` of the calling session (each once).
pub(crate) fn capture(session: &dyn DfSession, names: &[&str]) -> Result<Tables> {
    let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
        return plan_err!("not a DataFusion session");
    };
    let mut out: Tables = Vec::new();
    for name in names {
        if out.iter().any(|(n, _)| n == name) {
            continue;
        }
        let schema = state.schema_for_ref(*name)?;
        // Registered tables resolve without waiting; one that would wait is not ours.
        let mut lookup = std::pin::pin!(schema.table(name));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let found = match lookup.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r?,
            std::task::Poll::Pending => None,
        };
        match found {
            Some(t) => out.push(((*name).to_string(), t)),
            None => return plan_err!("no table {name:?} in this store"),
        }
    }
    Ok(out)
}

/// A context over `tables` alone, with `state`'s settings and object stores.
pub(crate) fn context(state: &dyn DfSession, tables: &Tables) -> Result<SessionContext> {
    // A scheduler's settings may leave the default catalog out; this context needs it.
    let config = state
        .config()
        .clone()
        .with_create_default_catalog_and_schema(true);
    let ctx = SessionContext::new_with_config_rt(config, state.runtime_env().clone());
    for (name, t) in tables {
        ctx.register_table(name.as_str(), t.clone())?;
    }
    Ok(ctx)
}

/// An error of another library as DataFusion's.
pub(crate) fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Arguments from their JSON.
pub(crate) fn args_from<T: for<'de> Deserialize<'de>>(v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(external)
}

/// Arguments to JSON.
pub(crate) fn args_to<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(external)
}
