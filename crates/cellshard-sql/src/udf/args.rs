//! Argument arrays of the tensor functions, read as plain Rust values.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{Result, exec_err};

/// Whether `t` is one of Arrow's binary types.
pub(super) fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

/// Binary values of any binary array type.
pub(super) fn binaries(a: &ArrayRef) -> Result<Vec<Option<&[u8]>>> {
    Ok(match a.data_type() {
        DataType::Binary => a.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => a.as_binary::<i64>().iter().collect(),
        DataType::BinaryView => a.as_binary_view().iter().collect(),
        DataType::Null => vec![None; a.len()],
        other => return exec_err!("expected a binary tensor, got {other}"),
    })
}

/// Integer arguments (channel, size), cast to i64.
pub(super) fn ints(a: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let a = arrow::compute::cast(a, &DataType::Int64)?;
    Ok(a.as_primitive::<Int64Type>().iter().collect())
}

/// Float arguments (percentile), cast to f64.
pub(super) fn floats(a: &ArrayRef) -> Result<Vec<Option<f64>>> {
    let a = arrow::compute::cast(a, &DataType::Float64)?;
    Ok(a.as_primitive::<Float64Type>().iter().collect())
}
