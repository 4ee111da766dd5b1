//! Object stores for the scheduler and executors: created on first use from the URL a
//! plan names, with cellshard's settings (credentials from each cloud's environment
//! variables, `--store-option` values, retries), as `cellshard run` and `cellshard sql` do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use cellshard_store::Location;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use url::Url;

/// Stores by scheme and authority (`file://`, `s3://bucket`).
#[derive(Debug, Default)]
pub struct StoreRegistry {
    options: BTreeMap<String, String>,
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    /// A registry whose stores get `options` (object store settings, KEY=VALUE).
    pub fn new(options: BTreeMap<String, String>) -> Self {
        Self {
            options,
            stores: RwLock::default(),
        }
    }
}

fn key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores.insert(key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores
            .remove(&key(url))
            .ok_or_else(|| DataFusionError::Execution(format!("no object store for {url}")))
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let k = key(url);
        if let Some(s) = self
            .stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&k)
        {
            return Ok(s.clone());
        }
        let mut root = url.clone();
        root.set_path("/");
        let loc = Location::from_url(root, &self.options)
            .map_err(|e| DataFusionError::Configuration(format!("object store for {k}: {e}")))?;
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        Ok(stores.entry(k).or_insert(loc.store).clone())
    }
}
