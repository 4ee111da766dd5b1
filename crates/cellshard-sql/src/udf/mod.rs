//! Tensor functions for SQL. A `tensor` value is a little-endian C x H x W array; its shape
//! and dtype come from the column's field metadata (`cellshard.shape`, `cellshard.dtype`),
//! else from the store's `sites` schema, which [`register`] is given.
//!
//! Channels are numbered from 1, as in `channel_mean[1]` and the source files' `w1`.
//!
//! | function | result |
//! |---|---|
//! | `tensor_shape(t)` | `[C, H, W]` |
//! | `tensor_dtype(t)` | numpy dtype name |
//! | `tensor_channel(t, c)` | channel `c` as H x W little-endian bytes |
//! | `tensor_mean(t, c)` / `tensor_std(t, c)` | mean / population standard deviation of channel `c` |
//! | `tensor_percentile(t, c, p)` | nearest-rank `p`th percentile (0..=100) of channel `c` |
//! | `tensor_thumbnail(t [, size])` | RGB PNG (default 128 px) in the RxRx1 channel colours |

mod args;
mod channel;
mod tensor;
mod thumbnail;

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
pub use tensor::{Dtype, TensorSpec};
pub use thumbnail::{
    auto_maxima, channel_intensity, channel_intensity_with, composite, composite_with, rgb_png,
};

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
            Kind::Channel => "tensor_channel(tensor, c) -> channel c (1-based) as H*W LE bytes",
            Kind::Mean => "tensor_mean(tensor, c) -> mean of channel c",
            Kind::Std => "tensor_std(tensor, c) -> population std of channel c",
            Kind::Percentile => {
                "tensor_percentile(tensor, c, p) -> nearest-rank p-th percentile of channel c"
            }
            Kind::Thumbnail => {
                "tensor_thumbnail(tensor [, size=128]) -> RGB PNG bytes in RxRx1 colours (size capped at H, W)"
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

/// One tensor function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TensorUdf {
    kind: Kind,
    signature: Signature,
    /// Shape and dtype of `sites.tensor`, for arguments that carry no field metadata.
    fallback: Option<TensorSpec>,
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
        if let Some(t) = arg_types[1..]
            .iter()
            .find(|t| !t.is_numeric() && **t != DataType::Null)
        {
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
            .or(self.fallback);
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
            Kind::Thumbnail => thumbnail::thumbnails(&spec, &tensors, &a1, arrays.len() > 1)?,
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Usage lines of every tensor function (for `\df`).
pub fn usage() -> Vec<&'static str> {
    Kind::ALL.iter().map(|k| k.usage()).collect()
}

fn tensor_udf(kind: Kind, fallback: Option<TensorSpec>) -> ScalarUDF {
    // Any arity here: `return_type` checks it and answers with the usage line.
    ScalarUDF::from(TensorUdf {
        kind,
        signature: Signature::new(TypeSignature::VariadicAny, Volatility::Immutable),
        fallback,
    })
}

/// The tensor functions, with `fallback` as the shape and dtype of `sites.tensor`.
pub fn functions(fallback: Option<TensorSpec>) -> Vec<ScalarUDF> {
    Kind::ALL.iter().map(|k| tensor_udf(*k, fallback)).collect()
}

/// Register the tensor functions; `fallback` is the shape and dtype of `sites.tensor`.
pub fn register(ctx: &SessionContext, fallback: Option<TensorSpec>) {
    for f in functions(fallback) {
        ctx.register_udf(f);
    }
}

/// A tensor function as bytes for a plan sent to another node (its fallback shape goes
/// with it); `None` for other functions.
pub fn encode(udf: &ScalarUDF) -> Option<Vec<u8>> {
    let t = udf.inner().downcast_ref::<TensorUdf>()?;
    Some(
        match t.fallback {
            Some(s) => format!("{},{},{},{}", s.channels, s.height, s.width, s.dtype.name()),
            None => String::new(),
        }
        .into_bytes(),
    )
}

/// The tensor function `name` from [`encode`]'s bytes; `None` when `name` is not one.
pub fn decode(name: &str, buf: &[u8]) -> Option<Result<ScalarUDF>> {
    let kind = *Kind::ALL.iter().find(|k| k.name() == name)?;
    let text = String::from_utf8_lossy(buf);
    if text.is_empty() {
        return Some(Ok(tensor_udf(kind, None)));
    }
    let parts: Vec<&str> = text.split(',').collect();
    let spec = match parts[..] {
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
    Some(match spec {
        Some(spec) => Ok(tensor_udf(kind, Some(spec))),
        None => plan_err!("{name}: bad tensor shape {text:?} in a serialized plan"),
    })
}
