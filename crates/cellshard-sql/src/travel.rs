//! How `nearest` and `replicate_map` travel in a plan: their arguments and the pinned store
//! tables they read ([`encode`] and [`decode`], called by the cluster codec).

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::{Result, exec_err, plan_err};
use serde::{Deserialize, Serialize};

use crate::StoreTable;
use crate::carried::{Carried, Tables, external};

#[derive(Serialize, Deserialize)]
struct WireTable {
    name: String,
    /// The schema as an Arrow IPC message, hex.
    schema: String,
    table: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    function: String,
    args: serde_json::Value,
    tables: Vec<WireTable>,
}

fn schema_bytes(schema: &Schema) -> String {
    let data = arrow_ipc::writer::IpcDataGenerator::default()
        .schema_to_bytes_with_dictionary_tracker(
            schema,
            &mut arrow_ipc::writer::DictionaryTracker::new(false),
            &arrow_ipc::writer::IpcWriteOptions::default(),
        );
    data.ipc_message
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn schema_from(hex: &str) -> Result<SchemaRef> {
    let bytes = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(external)?;
    Ok(Arc::new(
        arrow_ipc::convert::try_schema_from_flatbuffer_bytes(&bytes)?,
    ))
}

/// The function table of `provider` as bytes, or None when it is not one. A function that
/// reads a table other than a store table (a view) cannot travel: an error says so.
pub fn encode(provider: &dyn TableProvider) -> Option<Result<Vec<u8>>> {
    let carried: &dyn Carried = match provider.downcast_ref::<crate::nearest::NearestTable>() {
        Some(n) => n,
        None => provider.downcast_ref::<crate::replicate_map::ReplicateMapTable>()?,
    };
    Some(encode_carried(carried))
}

fn encode_carried(c: &dyn Carried) -> Result<Vec<u8>> {
    let mut tables = Vec::new();
    for (name, t) in c.tables() {
        let Some(store) = t.downcast_ref::<StoreTable>() else {
            return plan_err!(
                "{}: {name:?} is not a store table, so the function cannot run on a cluster (name a table, not a view)",
                c.function()
            );
        };
        tables.push(WireTable {
            name: name.clone(),
            schema: schema_bytes(&store.schema()),
            table: serde_json::from_slice(&store.encode()?).map_err(external)?,
        });
    }
    serde_json::to_vec(&Wire {
        function: c.function().to_string(),
        args: c.args()?,
        tables,
    })
    .map_err(external)
}

/// A function table from [`encode`]'s bytes.
pub fn decode(buf: &[u8]) -> Result<Arc<dyn TableProvider>> {
    let w: Wire = serde_json::from_slice(buf).map_err(external)?;
    let mut tables: Tables = Vec::new();
    for t in w.tables {
        let schema = schema_from(&t.schema)?;
        let bytes = serde_json::to_vec(&t.table).map_err(external)?;
        tables.push((t.name, Arc::new(StoreTable::decode(&bytes, schema)?)));
    }
    match w.function.as_str() {
        "nearest" => crate::nearest::NearestTable::from_wire(w.args, tables),
        "replicate_map" => crate::replicate_map::ReplicateMapTable::from_wire(w.args, tables),
        other => exec_err!("no table function {other:?} to decode"),
    }
}
