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

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float64Builder, Int32Builder, ListBuilder,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// Element types a tensor can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// uint8
    U8,
    /// uint16
    U16,
    /// float16
    F16,
    /// float32
    F32,
}

impl Dtype {
    /// From a numpy dtype name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "uint8" => Some(Self::U8),
            "uint16" => Some(Self::U16),
            "float16" => Some(Self::F16),
            "float32" => Some(Self::F32),
            _ => None,
        }
    }

    /// The numpy dtype name.
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::U16 => "uint16",
            Self::F16 => "float16",
            Self::F32 => "float32",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U16 | Self::F16 => 2,
            Self::F32 => 4,
        }
    }
}

/// Shape and element type of the tensors in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TensorSpec {
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Element type.
    pub dtype: Dtype,
}

impl TensorSpec {
    /// From a field's `cellshard.shape` (`[C,H,W]`) and `cellshard.dtype` metadata.
    pub fn from_field(field: &Field) -> Option<Self> {
        let m = field.metadata();
        let shape: Vec<usize> = m
            .get("cellshard.shape")?
            .trim_matches(['[', ']'])
            .split(',')
            .map(|s| s.trim().parse().ok())
            .collect::<Option<_>>()?;
        let dtype = Dtype::parse(m.get("cellshard.dtype")?)?;
        match shape[..] {
            [channels, height, width] => Some(Self {
                channels,
                height,
                width,
                dtype,
            }),
            _ => None,
        }
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    fn bytes(&self) -> usize {
        self.channels * self.plane() * self.dtype.size()
    }

    fn check(&self, t: &[u8]) -> Result<()> {
        if t.len() != self.bytes() {
            return exec_err!(
                "tensor of {} bytes does not match shape [{},{},{}] {} ({} bytes)",
                t.len(),
                self.channels,
                self.height,
                self.width,
                self.dtype.name(),
                self.bytes()
            );
        }
        Ok(())
    }

    /// Channel `c` (1-based) of `t` as raw bytes.
    fn channel_bytes<'a>(&self, t: &'a [u8], c: i64) -> Result<&'a [u8]> {
        self.check(t)?;
        if c < 1 || c as usize > self.channels {
            return exec_err!("channel {c} is out of range 1..={}", self.channels);
        }
        let n = self.plane() * self.dtype.size();
        let start = (c as usize - 1) * n;
        Ok(&t[start..start + n])
    }

    /// Channel `c` (1-based) of `t` as f64 values.
    fn channel_values(&self, t: &[u8], c: i64) -> Result<Vec<f64>> {
        let b = self.channel_bytes(t, c)?;
        Ok(values(b, self.dtype))
    }
}

fn values(b: &[u8], dtype: Dtype) -> Vec<f64> {
    match dtype {
        Dtype::U8 => b.iter().map(|&v| f64::from(v)).collect(),
        Dtype::U16 => b
            .chunks_exact(2)
            .map(|v| f64::from(u16::from_le_bytes([v[0], v[1]])))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|v| half::f16::from_le_bytes([v[0], v[1]]).to_f64())
            .collect(),
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|v| f64::from(f32::from_le_bytes([v[0], v[1], v[2], v[3]])))
            .collect(),
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Nearest-rank percentile: the value at rank ceil(p/100 * n), ranks from 1.
fn percentile(mut v: Vec<f64>, p: f64) -> Result<f64> {
    if !(0.0..=100.0).contains(&p) {
        return exec_err!("percentile {p} is outside 0..=100");
    }
    if v.is_empty() {
        return Ok(f64::NAN);
    }
    let n = v.len();
    let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
    let (_, x, _) = v.select_nth_unstable_by(rank - 1, f64::total_cmp);
    Ok(*x)
}

/// RxRx1 viewer colours (rxrx1-utils) per channel, and display maxima on a 0..255 scale.
const RGB: [[f64; 3]; 6] = [
    [19.0, 0.0, 249.0],
    [42.0, 255.0, 31.0],
    [255.0, 0.0, 25.0],
    [45.0, 255.0, 252.0],
    [250.0, 0.0, 253.0],
    [254.0, 255.0, 40.0],
];
const DISPLAY_MAX: [f64; 6] = [51.0, 107.0, 64.0, 191.0, 89.0, 191.0];

/// Values on the 0..255 display scale: uint8 as is, uint16 / 257, floats (z-scores) mapped
/// from -3..3 onto 0..255.
fn display_scale(v: f64, dtype: Dtype) -> f64 {
    match dtype {
        Dtype::U8 => v,
        Dtype::U16 => v / 257.0,
        Dtype::F16 | Dtype::F32 => ((v + 3.0) / 6.0).clamp(0.0, 1.0) * 255.0,
    }
}

/// A `size` x `size` RGB PNG: box-averaged channels, x = min(1, v / max), rgb = clip(sum x * colour).
fn thumbnail(spec: &TensorSpec, t: &[u8], size: i64) -> Result<Vec<u8>> {
    let limit = spec.height.min(spec.width) as i64;
    if size < 1 || size > limit {
        return exec_err!("thumbnail size {size} is outside 1..={limit}");
    }
    let size = size as usize;
    let mut rgb = vec![0f64; size * size * 3];
    for c in 0..spec.channels.min(6) {
        let v = spec.channel_values(t, c as i64 + 1)?;
        for oy in 0..size {
            let (y0, y1) = (oy * spec.height / size, (oy + 1) * spec.height / size);
            for ox in 0..size {
                let (x0, x1) = (ox * spec.width / size, (ox + 1) * spec.width / size);
                let mut sum = 0.0;
                for y in y0..y1 {
                    sum += v[y * spec.width + x0..y * spec.width + x1]
                        .iter()
                        .sum::<f64>();
                }
                let mean = sum / ((y1 - y0) * (x1 - x0)) as f64;
                let x = (display_scale(mean, spec.dtype) / DISPLAY_MAX[c]).min(1.0);
                let px = &mut rgb[(oy * size + ox) * 3..][..3];
                for k in 0..3 {
                    px[k] += x * RGB[c][k];
                }
            }
        }
    }
    let bytes: Vec<u8> = rgb
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size as u32, size as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc
            .write_header()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        w.write_image_data(&bytes)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
    }
    Ok(out)
}

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

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

/// Binary values of any binary array type.
fn binaries(a: &ArrayRef) -> Result<Vec<Option<&[u8]>>> {
    Ok(match a.data_type() {
        DataType::Binary => a.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => a.as_binary::<i64>().iter().collect(),
        DataType::BinaryView => a.as_binary_view().iter().collect(),
        DataType::Null => vec![None; a.len()],
        other => return exec_err!("expected a binary tensor, got {other}"),
    })
}

fn ints(a: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let a = arrow::compute::cast(a, &DataType::Int64)?;
    Ok(a.as_primitive::<Int64Type>().iter().collect())
}

fn floats(a: &ArrayRef) -> Result<Vec<Option<f64>>> {
    let a = arrow::compute::cast(a, &DataType::Float64)?;
    Ok(a.as_primitive::<Float64Type>().iter().collect())
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
            Kind::Shape => {
                let mut b = ListBuilder::new(Int32Builder::new());
                for t in &tensors {
                    match t {
                        Some(t) => {
                            spec.check(t)?;
                            for d in [spec.channels, spec.height, spec.width] {
                                b.values().append_value(d as i32);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Dtype => {
                let mut b = StringBuilder::new();
                for t in &tensors {
                    match t {
                        Some(t) => {
                            spec.check(t)?;
                            b.append_value(spec.dtype.name());
                        }
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Channel => {
                let mut b = BinaryBuilder::new();
                for (t, c) in tensors.iter().zip(&a1) {
                    match (t, c) {
                        (Some(t), Some(c)) => b.append_value(spec.channel_bytes(t, *c)?),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Mean | Kind::Std | Kind::Percentile => {
                let p = match arrays.get(2) {
                    Some(a) => floats(a)?,
                    None => vec![None; n],
                };
                let mut b = Float64Builder::with_capacity(n);
                for i in 0..n {
                    let (Some(t), Some(c)) = (tensors[i], a1[i]) else {
                        b.append_null();
                        continue;
                    };
                    let v = spec.channel_values(t, c)?;
                    match self.kind {
                        Kind::Mean => b.append_value(mean_std(&v).0),
                        Kind::Std => b.append_value(mean_std(&v).1),
                        _ => match p[i] {
                            Some(p) => b.append_value(percentile(v, p)?),
                            None => b.append_null(),
                        },
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Thumbnail => {
                let mut b = BinaryBuilder::new();
                for (i, t) in tensors.iter().enumerate() {
                    match t {
                        Some(t) => {
                            let size = if arrays.len() > 1 {
                                a1[i]
                            } else {
                                Some(128.min(spec.height.min(spec.width)) as i64)
                            };
                            match size {
                                Some(s) => b.append_value(thumbnail(&spec, t, s)?),
                                None => b.append_null(),
                            }
                        }
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Usage lines of every tensor function (for `\df`).
pub fn usage() -> Vec<&'static str> {
    Kind::ALL.iter().map(|k| k.usage()).collect()
}

/// Register the tensor functions; `fallback` is the shape and dtype of `sites.tensor`.
pub fn register(ctx: &SessionContext, fallback: Option<TensorSpec>) {
    for kind in Kind::ALL {
        // Any arity here: `return_type` checks it and answers with the usage line.
        ctx.register_udf(ScalarUDF::from(TensorUdf {
            kind,
            signature: Signature::new(TypeSignature::VariadicAny, Volatility::Immutable),
            fallback,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dtype: Dtype) -> TensorSpec {
        TensorSpec {
            channels: 2,
            height: 2,
            width: 3,
            dtype,
        }
    }

    #[test]
    fn channel_stats_and_percentiles() {
        let s = spec(Dtype::U16);
        let t: Vec<u8> = (0u16..12).flat_map(|v| (v * 100).to_le_bytes()).collect();
        let c2 = s.channel_values(&t, 2).unwrap();
        assert_eq!(c2, vec![600.0, 700.0, 800.0, 900.0, 1000.0, 1100.0]);
        let (m, sd) = mean_std(&c2);
        assert_eq!(m, 850.0);
        assert!((sd - (175000.0f64 / 6.0).sqrt()).abs() < 1e-9);
        assert_eq!(percentile(c2.clone(), 50.0).unwrap(), 800.0);
        assert_eq!(percentile(c2.clone(), 0.0).unwrap(), 600.0);
        assert_eq!(percentile(c2.clone(), 100.0).unwrap(), 1100.0);
        assert!(percentile(c2, 101.0).is_err());
        assert!(s.channel_values(&t, 3).is_err());
        assert!(s.channel_values(&t, 0).is_err());
        let err = s.channel_values(&t[..10], 1).unwrap_err().to_string();
        assert!(
            err.contains("10 bytes") && err.contains("[2,2,3] uint16"),
            "{err}"
        );
    }

    #[test]
    fn spec_from_field_metadata() {
        let f = Field::new("tensor", DataType::Binary, false).with_metadata(
            [
                ("cellshard.shape".to_string(), "[6,512,512]".to_string()),
                ("cellshard.dtype".to_string(), "float16".to_string()),
            ]
            .into(),
        );
        let s = TensorSpec::from_field(&f).unwrap();
        assert_eq!(
            (s.channels, s.height, s.width, s.dtype),
            (6, 512, 512, Dtype::F16)
        );
        assert_eq!(
            TensorSpec::from_field(&Field::new("x", DataType::Binary, false)),
            None
        );
    }

    #[test]
    fn thumbnail_uses_rxrx1_colours() {
        // One pixel, six channels, each at its display maximum except channel 1 at zero.
        let s = TensorSpec {
            channels: 6,
            height: 1,
            width: 1,
            dtype: Dtype::U8,
        };
        let t = vec![0u8, 0, 0, 0, 0, 0];
        let png_bytes = thumbnail(&s, &t, 1).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..3], &[0, 0, 0]);
        // Channel 1 alone at half its maximum: half of [19, 0, 249].
        let t = vec![25u8, 0, 0, 0, 0, 0];
        let png_bytes = thumbnail(&s, &t, 1).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        r.next_frame(&mut buf).unwrap();
        let x: f64 = 25.0 / 51.0;
        assert_eq!(
            &buf[..3],
            &[(19.0 * x).round() as u8, 0, (249.0 * x).round() as u8]
        );
        // Saturation clips at 255.
        let t = vec![255u8; 6];
        let png_bytes = thumbnail(&s, &t, 1).unwrap();
        let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        r.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..3], &[255, 255, 255]);
        assert!(thumbnail(&s, &t, 2).is_err());
    }
}
