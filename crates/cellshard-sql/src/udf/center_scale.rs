//! `center_scale(vector, is_reference [, method]) OVER (PARTITION BY ...)`: each vector of a
//! window partition (a plate, say) centred and scaled, feature by feature, by the vectors
//! whose `is_reference` is true (the plate's controls; every vector when none is), as
//! pycytominer's `normalize` and EFAAR's control centering do. `method` is `standardize`
//! (mean and standard deviation, the default) or `robust` (median and 1.4826 x MAD). A NULL
//! vector stays NULL; vectors of different lengths in one partition are an error.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Builder, ListBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, Float32Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

use cellshard_stages::vector::{Scaling, center_scale};

/// The function's name.
pub const NAME: &str = "center_scale";

fn list_f32() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
}

/// The `center_scale` window function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CenterScale {
    signature: Signature,
}

impl Default for CenterScale {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The function, ready to register.
pub fn center_scale_udwf() -> WindowUDF {
    WindowUDF::from(CenterScale::default())
}

impl WindowUDFImpl for CenterScale {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let usage = "center_scale(vector, is_reference [, 'standardize' | 'robust'])";
        if !(2..=3).contains(&arg_types.len()) {
            return plan_err!("{usage}: 2 or 3 arguments, got {}", arg_types.len());
        }
        match &arg_types[0] {
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Null => {}
            other => return plan_err!("{usage}: the vector must be a list, got {other}"),
        }
        let mut out = vec![list_f32(), DataType::Boolean];
        if arg_types.len() == 3 {
            out.push(DataType::Utf8);
        }
        Ok(out)
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(Evaluator))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(field_args.name(), list_f32(), true)))
    }
}

#[derive(Debug)]
struct Evaluator;

impl PartitionEvaluator for Evaluator {
    fn uses_window_frame(&self) -> bool {
        false
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let vectors = arrow::compute::cast(&values[0], &list_f32())?;
        let vectors = vectors.as_list::<i32>();
        let reference = arrow::compute::cast(&values[1], &DataType::Boolean)?;
        let reference = reference.as_boolean();
        let how = match values.get(2) {
            None => Scaling::Standardize,
            Some(m) => {
                let m = arrow::compute::cast(m, &DataType::Utf8)?;
                let m = m.as_string::<i32>();
                let name = if m.is_empty() || m.is_null(0) {
                    ""
                } else {
                    m.value(0)
                };
                match Scaling::parse(name) {
                    Some(s) => s,
                    None => {
                        return exec_err!(
                            "center_scale: method {name:?} is not 'standardize' or 'robust'"
                        );
                    }
                }
            }
        };
        let (mut flat, mut rows, mut refs, mut dim) = (Vec::new(), Vec::new(), Vec::new(), None);
        for i in 0..num_rows {
            if vectors.is_null(i) {
                continue;
            }
            let v = vectors.value(i);
            let v = v.as_primitive::<Float32Type>();
            let d = *dim.get_or_insert(v.len());
            if v.len() != d {
                return exec_err!(
                    "center_scale: vectors of {} and {d} values in one partition",
                    v.len()
                );
            }
            flat.extend(v.iter().map(|x| x.unwrap_or(f32::NAN)));
            rows.push(i);
            refs.push(reference.is_valid(i) && reference.value(i));
        }
        let dim = dim.unwrap_or(0);
        if dim > 0 {
            center_scale(&mut flat, dim, &refs, how);
        }
        let mut out = ListBuilder::new(Float32Builder::with_capacity(flat.len()));
        let mut next = rows.iter().zip(flat.chunks(dim.max(1))).peekable();
        for i in 0..num_rows {
            match next.peek() {
                Some((r, v)) if **r == i => {
                    out.values().append_slice(v);
                    out.append(true);
                    next.next();
                }
                _ => out.append(false),
            }
        }
        Ok(Arc::new(out.finish()))
    }
}
