//! Vector functions for profiles and embeddings: `cosine_similarity(a, b)` and
//! `l2_distance(a, b)` over lists of numbers (`List`, `LargeList` or `FixedSizeList` of
//! floats or integers), in f64. NULL when either argument is NULL; vectors of different
//! lengths or with NULL elements are errors.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Float64Builder};
use arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// The vector functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum VectorKind {
    /// Cosine similarity.
    Cosine,
    /// Euclidean distance.
    L2,
}

impl VectorKind {
    pub(super) const ALL: [VectorKind; 2] = [VectorKind::Cosine, VectorKind::L2];

    pub(super) fn name(self) -> &'static str {
        match self {
            VectorKind::Cosine => "cosine_similarity",
            VectorKind::L2 => "l2_distance",
        }
    }

    pub(super) fn usage(self) -> &'static str {
        match self {
            VectorKind::Cosine => "cosine_similarity(a, b) -> a.b / (|a| |b|) of two vectors",
            VectorKind::L2 => "l2_distance(a, b) -> |a - b| of two vectors",
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorUdf {
    kind: VectorKind,
    signature: Signature,
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) | DataType::Null
    )
}

/// Each row's vector as f64 values (`None` for a NULL row).
fn rows(a: &ArrayRef) -> Result<Vec<Option<Vec<f64>>>> {
    let list = arrow::compute::cast(
        a,
        &DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
    )?;
    let list = list.as_list::<i32>();
    let mut out = Vec::with_capacity(list.len());
    for v in list.iter() {
        out.push(match v {
            None => None,
            Some(v) => {
                let v: &Float64Array = v.as_primitive::<Float64Type>();
                if v.null_count() > 0 {
                    return exec_err!("a vector has NULL elements");
                }
                Some(v.values().to_vec())
            }
        });
    }
    Ok(out)
}

/// Cosine similarity of two vectors of equal length; NaN when either is all zeros.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Euclidean distance of two vectors of equal length.
pub fn l2(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

impl ScalarUDFImpl for VectorUdf {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.len() != 2 || !arg_types.iter().all(is_list) {
            return plan_err!(
                "{}: expected two vectors (lists of numbers)",
                self.kind.usage()
            );
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (a, b) = (rows(&arrays[0])?, rows(&arrays[1])?);
        let mut out = Float64Builder::with_capacity(a.len());
        for (a, b) in a.iter().zip(&b) {
            match (a, b) {
                (Some(a), Some(b)) if a.len() != b.len() => {
                    return exec_err!(
                        "{}: vectors of {} and {} elements",
                        self.kind.name(),
                        a.len(),
                        b.len()
                    );
                }
                (Some(a), Some(b)) => out.append_value(match self.kind {
                    VectorKind::Cosine => cosine(a, b),
                    VectorKind::L2 => l2(a, b),
                }),
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The vector function of `kind`.
pub(super) fn vector_udf(kind: VectorKind) -> ScalarUDF {
    ScalarUDF::from(VectorUdf {
        kind,
        signature: Signature::new(TypeSignature::Any(2), Volatility::Immutable),
    })
}

/// Whether `udf` is a vector function.
pub(super) fn is_vector(udf: &ScalarUDF) -> bool {
    udf.inner().downcast_ref::<VectorUdf>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_l2_on_hand_vectors() {
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), 0.0);
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-15);
        assert!(cosine(&[0.0, 0.0], &[1.0, 0.0]).is_nan());
        assert_eq!(l2(&[1.0, 2.0, 3.0], &[4.0, 6.0, 3.0]), 5.0);
    }
}
