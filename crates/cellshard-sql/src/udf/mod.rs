//! Tensor functions for SQL. A `tensor` value is a little-endian C x H x W array; its shape
//! and dtype come from the column's field metadata (`cellshard.shape`, `cellshard.dtype`),
//! else from the store's `sites` schema, which [`register`] is given.
//!
//! Channels are numbered from 1, as in `channel_mean[1]` and the source files' `w1`; where
//! the store names its channels (`plate_stats.channel_name`), `c` may also be a name
//! (`tensor_mean(tensor, 'DNA')`).
//!
//! | function | result |
//! |---|---|
//! | `tensor_shape(t)` | `[C, H, W]` |
//! | `tensor_dtype(t)` | numpy dtype name |
//! | `tensor_channel(t, c)` | channel `c` as H x W little-endian bytes |
//! | `tensor_mean(t, c)` / `tensor_std(t, c)` | mean / population standard deviation of channel `c` |
//! | `tensor_percentile(t, c, p)` | nearest-rank `p`th percentile (0..=100) of channel `c` |
//! | `tensor_thumbnail(t [, size])` | RGB PNG (default 128 px) in the channels' colours |

mod args;
mod center_scale;
mod channel;
mod tensor;
mod thumbnail;
mod vector;

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use args::{binaries, ints, is_binary};
pub use center_scale::{NAME as CENTER_SCALE, center_scale_udwf};
pub use tensor::{Dtype, TensorSpec};
pub use thumbnail::{
    auto_maxima, channel_intensity, channel_intensity_with, composite, composite_with, rgb_png,
};
pub use vector::{cosine, l2};

/// The tensor functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Shape,
    Dtype,
    Channel,
    Mean,
    Std,
    Percentile,
    Thumbnail,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Shape,
        Kind::Dtype,
        Kind::Channel,
        Kind::Mean,
        Kind::Std,
        Kind::Percentile,
        Kind::Thumbnail,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Shape => "tensor_shape",
            Kind::Dtype => "tensor_dtype",
            Kind::Channel => "tensor_channel",
            Kind::Mean => "tensor_mean",
            Kind::Std => "tensor_std",
            Kind::Percentile => "tensor_percentile",
            Kind::Thumbnail => "tensor_thumbnail",
        }
    }

    /// Accepted argument counts.
    fn arities(self) -> &'static [usize] {
        match self {
            Kind::Shape | Kind::Dtype => &[1],
            Kind::Channel | Kind::Mean | Kind::Std => &[2],
            Kind::Percentile => &[3],
            Kind::Thumbnail => &[1, 2],
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Kind::Shape => "tensor_shape(tensor) -> [C, H, W]",
            Kind::Dtype => "tensor_dtype(tensor) -> numpy dtype name",
            Kind::Channel => {
                "tensor_channel(tensor, c) -> channel c (1-based, or its name) as H*W LE bytes"
            }
            Kind::Mean => "tensor_mean(tensor, c) -> mean of channel c",
            Kind::Std => "tensor_std(tensor, c) -> population std of channel c",
            Kind::Percentile => {
                "tensor_percentile(tensor, c, p) -> nearest-rank p-th percentile of channel c"
            }
            Kind::Thumbnail => {
                "tensor_thumbnail(tensor [, size=128]) -> RGB PNG bytes in the channels' colours (size capped at H, W)"
            }
        }
    }

    fn return_type(self) -> DataType {
        match self {
            Kind::Shape => DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            Kind::Dtype => DataType::Utf8,
            Kind::Channel | Kind::Thumbnail => DataType::Binary,
            Kind::Mean | Kind::Std | Kind::Percentile => DataType::Float64,
        }
    }
}

/// What the functions know of the store's `sites.tensor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StoreTensor {
    /// Shape and dtype, for arguments that carry no field metadata.
    pub spec: Option<TensorSpec>,
    /// Channel names in stacking order (empty: the store names none).
    pub names: Vec<String>,
}

/// One tensor function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TensorUdf {
    kind: Kind,
    signature: Signature,
    store: StoreTensor,
}

impl ScalarUDFImpl for TensorUdf {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !self.kind.arities().contains(&arg_types.len()) {
            return plan_err!("wrong number of arguments: {}", self.kind.usage());
        }
        if !is_binary(&arg_types[0]) && arg_types[0] != DataType::Null {
            return plan_err!(
                "{}: the first argument must be a tensor (binary), got {}",
                self.kind.usage(),
                arg_types[0]
            );
        }
        let named = matches!(
            self.kind,
            Kind::Channel | Kind::Mean | Kind::Std | Kind::Percentile
        );
        if let Some(t) = arg_types[1..].iter().enumerate().find_map(|(i, t)| {
            let name = named
                && i == 0
                && matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
            (!t.is_numeric() && *t != DataType::Null && !name).then_some(t)
        }) {
            return plan_err!(
                "{}: expected numbers after the tensor, got {t}",
                self.kind.usage()
            );
        }
        Ok(self.kind.return_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let spec = args
            .arg_fields
            .first()
            .and_then(|f| TensorSpec::from_field(f))
            .or(self.store.spec);
        let Some(spec) = spec else {
            return exec_err!(
                "{}: the tensor's shape and dtype are unknown (no cellshard.shape/cellshard.dtype field metadata and no sites table)",
                self.kind.name()
            );
        };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let tensors = binaries(&arrays[0])?;
        let n = tensors.len();
        let a1 = match arrays.get(1) {
            Some(a)
                if matches!(
                    a.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                channel_numbers(
                    a,
                    &cellshard_core::palette::Palette::new(spec.channels, &self.store.names),
                )?
            }
            Some(a) => ints(a)?,
            None => vec![None; n],
        };
        let out: ArrayRef = match self.kind {
            Kind::Shape => tensor::shapes(&spec, &tensors)?,
            Kind::Dtype => tensor::dtypes(&spec, &tensors)?,
            Kind::Channel => channel::channels(&spec, &tensors, &a1)?,
            Kind::Mean | Kind::Std | Kind::Percentile => {
                channel::stats(self.kind, &spec, &tensors, &a1, arrays.get(2))?
            }
            Kind::Thumbnail => {
                thumbnail::thumbnails(&spec, &tensors, &a1, arrays.len() > 1, &self.store.names)?
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Usage lines of every function cellshard adds (for `\df`).
pub fn usage() -> Vec<&'static str> {
    Kind::ALL
        .iter()
        .map(|k| k.usage())
        .chain(vector::VectorKind::ALL.iter().map(|k| k.usage()))
        .collect()
}

/// Channel names of a string array as 1-based numbers (a number in text works too).
fn channel_numbers(
    a: &ArrayRef,
    palette: &cellshard_core::palette::Palette,
) -> Result<Vec<Option<i64>>> {
    let a = arrow::compute::cast(a, &DataType::Utf8)?;
    let mut out = Vec::with_capacity(a.len());
    for v in arrow::array::AsArray::as_string::<i32>(&a) {
        out.push(match v {
            None => None,
            Some(name) => match palette.resolve(name) {
                Ok(c) => Some(i64::try_from(c).unwrap_or(i64::MAX)),
                Err(why) => return exec_err!("{why}"),
            },
        });
    }
    Ok(out)
}

fn tensor_udf(kind: Kind, store: StoreTensor) -> ScalarUDF {
    // Any arity here: `return_type` checks it and answers with the usage line.
    ScalarUDF::from(TensorUdf {
        kind,
        signature: Signature::new(TypeSignature::VariadicAny, Volatility::Immutable),
        store,
    })
}

/// The tensor functions, knowing `store`'s tensor shape and channel names, and the vector
/// functions.
pub fn functions(store: &StoreTensor) -> Vec<ScalarUDF> {
    Kind::ALL
        .iter()
        .map(|k| tensor_udf(*k, store.clone()))
        .chain(
            vector::VectorKind::ALL
                .iter()
                .map(|k| vector::vector_udf(*k)),
        )
        .collect()
}

/// Register the tensor functions, knowing `store`'s tensor shape and channel names.
pub fn register(ctx: &SessionContext, store: &StoreTensor) {
    for f in functions(store) {
        ctx.register_udf(f);
    }
}

/// A tensor function as bytes for a plan sent to another node (the store's shape and
/// channel names go with it); `None` for other functions.
pub fn encode(udf: &ScalarUDF) -> Option<Vec<u8>> {
    if vector::is_vector(udf) {
        return Some(Vec::new());
    }
    let t = udf.inner().downcast_ref::<TensorUdf>()?;
    let spec = t
        .store
        .spec
        .map(|s| format!("{},{},{},{}", s.channels, s.height, s.width, s.dtype.name()));
    Some(
        serde_json::json!({ "spec": spec, "names": t.store.names })
            .to_string()
            .into_bytes(),
    )
}

/// The tensor function `name` from [`encode`]'s bytes; `None` when `name` is not one.
pub fn decode(name: &str, buf: &[u8]) -> Option<Result<ScalarUDF>> {
    if let Some(k) = vector::VectorKind::ALL.iter().find(|k| k.name() == name) {
        return Some(Ok(vector::vector_udf(*k)));
    }
    let kind = *Kind::ALL.iter().find(|k| k.name() == name)?;
    let bad = || {
        plan_err!(
            "{name}: bad tensor description {:?} in a serialized plan",
            String::from_utf8_lossy(buf)
        )
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(buf) else {
        return Some(bad());
    };
    let names: Vec<String> = v["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let spec = match v["spec"].as_str() {
        None => None,
        Some(text) => {
            let parts: Vec<&str> = text.split(',').collect();
            let parsed = match parts[..] {
                [c, h, w, d] => (|| {
                    Some(TensorSpec {
                        channels: c.parse().ok()?,
                        height: h.parse().ok()?,
                        width: w.parse().ok()?,
                        dtype: Dtype::parse(d)?,
                    })
                })(),
                _ => None,
            };
            match parsed {
                Some(s) => Some(s),
                None => return Some(bad()),
            }
        }
    };
    Some(Ok(tensor_udf(kind, StoreTensor { spec, names })))
}
