//! Error classes of the query stack: which failures are the caller's, which are missing
//! things, which are outages and which are bugs.

use cellshard_core::ErrorClass;
use datafusion::error::DataFusionError;

use crate::Error;

/// The class of a DataFusion failure. Parse, plan, schema and execution errors are the
/// query's (execution errors are what functions raise for bad arguments); I/O and object
/// store failures keep their class; resource limits are external; DataFusion's own
/// internal errors and failed joins are bugs.
pub fn datafusion_class(e: &DataFusionError) -> ErrorClass {
    use DataFusionError as D;
    match e {
        D::SQL(..)
        | D::Plan(_)
        | D::SchemaError(..)
        | D::Configuration(_)
        | D::NotImplemented(_)
        | D::Execution(_) => ErrorClass::BadInput,
        D::ObjectStore(e) => cellshard_store::object_store_class(e),
        D::IoError(e) => io_class(e),
        D::ResourcesExhausted(_) => ErrorClass::External,
        D::Context(_, e) | D::Diagnostic(_, e) => datafusion_class(e),
        D::Shared(e) => datafusion_class(e),
        D::Collection(es) => es.first().map_or(ErrorClass::Internal, datafusion_class),
        D::External(e) => class_of(e.as_ref()).unwrap_or(ErrorClass::External),
        D::ArrowError(..) | D::ParquetError(_) => ErrorClass::External,
        _ => ErrorClass::Internal,
    }
}

/// The class of an I/O failure: a missing file is not found, anything else external.
pub fn io_class(e: &std::io::Error) -> ErrorClass {
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorClass::NotFound,
        std::io::ErrorKind::InvalidInput => ErrorClass::BadInput,
        _ => ErrorClass::External,
    }
}

/// The class of the first error in `e`'s chain that cellshard's query stack knows.
pub fn class_of(e: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(c) = class_one(e) {
            return Some(c);
        }
        next = e.source();
    }
    None
}

/// The class of `e` itself (not its sources) when it is one the query stack knows: this
/// crate's, the store's, the core's, DataFusion's, object_store's, or I/O.
pub fn class_one(e: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    if let Some(e) = e.downcast_ref::<Error>() {
        return Some(e.class());
    }
    if let Some(e) = e.downcast_ref::<cellshard_store::Error>() {
        return Some(e.class());
    }
    if let Some(e) = e.downcast_ref::<cellshard_core::Error>() {
        return Some(e.class());
    }
    if let Some(e) = e.downcast_ref::<DataFusionError>() {
        return Some(datafusion_class(e));
    }
    if let Some(e) = e.downcast_ref::<object_store::Error>() {
        return Some(cellshard_store::object_store_class(e));
    }
    e.downcast_ref::<std::io::Error>().map(io_class)
}
