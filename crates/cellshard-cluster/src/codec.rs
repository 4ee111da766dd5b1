//! Plan codecs: Ballista's own, plus the store's tables and the tensor functions.
//!
//! A [`StoreTable`] travels as its pinned file list, so the scheduler plans exactly the
//! version the client registered without re-reading the Delta log. A tensor function
//! travels by name with its fallback tensor shape; `nearest` and `replicate_map` travel with
//! their arguments and the pinned tables they read.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use cellshard_sql::{StoreTable, udf};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

/// Marks a serialized [`StoreTable`] among the table providers Ballista's codec knows.
const STORE_TABLE: &[u8] = b"cellshard.store_table.v1:";

/// Marks a serialized table function (`nearest`, `replicate_map`) with its tables.
const FUNCTION_TABLE: &[u8] = b"cellshard.function_table.v1:";

/// A tensor function's bytes, or what `otherwise` (Ballista's codec) writes for others.
fn encode_udf(
    node: &ScalarUDF,
    buf: &mut Vec<u8>,
    otherwise: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    match udf::encode(node) {
        Some(bytes) => {
            buf.extend_from_slice(&bytes);
            Ok(())
        }
        None => otherwise(buf),
    }
}

/// A tensor function from its bytes, or what `otherwise` (Ballista's codec) decodes.
fn decode_udf(
    name: &str,
    buf: &[u8],
    otherwise: impl FnOnce() -> Result<Arc<ScalarUDF>>,
) -> Result<Arc<ScalarUDF>> {
    match udf::decode(name, buf) {
        Some(f) => Ok(Arc::new(f?)),
        None => otherwise(),
    }
}

/// Ballista's logical codec with the store's tables and tensor functions.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if let Some(f) = buf.strip_prefix(FUNCTION_TABLE) {
            return cellshard_sql::travel::decode(f);
        }
        match buf.strip_prefix(STORE_TABLE) {
            Some(table) => Ok(Arc::new(StoreTable::decode(table, schema)?)),
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(f) = cellshard_sql::travel::encode(node.as_ref()) {
            buf.extend_from_slice(FUNCTION_TABLE);
            buf.extend_from_slice(&f?);
            return Ok(());
        }
        match node.downcast_ref::<StoreTable>() {
            Some(table) => {
                buf.extend_from_slice(STORE_TABLE);
                buf.extend_from_slice(&table.encode()?);
                Ok(())
            }
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf, || self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf, |buf| self.inner.try_encode_udf(node, buf))
    }
}

/// Ballista's physical codec with the tensor functions (the scans are stock Parquet
/// scans, which DataFusion's codec already carries).
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf, || self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf, |buf| self.inner.try_encode_udf(node, buf))
    }
}
