//! What a tensor value is: its element type and shape ([`TensorSpec`]), the checks on its
//! bytes, and the functions that report them (`tensor_shape`, `tensor_dtype`).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, ListBuilder, StringBuilder};
use arrow::datatypes::Field;
use datafusion::common::{Result, exec_err};

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

    pub(super) fn plane(&self) -> usize {
        self.height * self.width
    }

    pub(super) fn bytes(&self) -> usize {
        self.channels * self.plane() * self.dtype.size()
    }

    pub(super) fn check(&self, t: &[u8]) -> Result<()> {
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

    /// Channel `c` (0-based) of `t`, whose length [`Self::check`] has accepted, as values in
    /// `[0, 1]` for integer types (divided by the type's maximum) and as stored for floats.
    pub fn unit_channel(&self, t: &[u8], c: usize) -> Vec<f32> {
        let n = self.plane() * self.dtype.size();
        let b = &t[c * n..(c + 1) * n];
        match self.dtype {
            Dtype::U8 => b.iter().map(|&v| f32::from(v) / 255.0).collect(),
            Dtype::U16 => b
                .chunks_exact(2)
                .map(|v| f32::from(u16::from_le_bytes([v[0], v[1]])) / 65535.0)
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|v| half::f16::from_le_bytes([v[0], v[1]]).to_f32())
                .collect(),
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
                .collect(),
        }
    }

    /// Channel `c` (1-based) of `t` as raw bytes.
    pub(super) fn channel_bytes<'a>(&self, t: &'a [u8], c: i64) -> Result<&'a [u8]> {
        self.check(t)?;
        let Some(c) = usize::try_from(c)
            .ok()
            .filter(|c| (1..=self.channels).contains(c))
        else {
            return exec_err!("channel {c} is out of range 1..={}", self.channels);
        };
        let n = self.plane() * self.dtype.size();
        let start = (c - 1) * n;
        Ok(&t[start..start + n])
    }

    /// Channel `c` (1-based) of `t` as f64 values.
    pub(super) fn channel_values(&self, t: &[u8], c: i64) -> Result<Vec<f64>> {
        let b = self.channel_bytes(t, c)?;
        Ok(values(b, self.dtype))
    }
}

/// Little-endian elements of `dtype` as f64.
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

/// `tensor_shape`: `[C, H, W]` of each tensor, after checking its length.
pub(super) fn shapes(spec: &TensorSpec, tensors: &[Option<&[u8]>]) -> Result<ArrayRef> {
    let mut b = ListBuilder::new(Int32Builder::new());
    for t in tensors {
        match t {
            Some(t) => {
                spec.check(t)?;
                for d in [spec.channels, spec.height, spec.width] {
                    let Ok(d) = i32::try_from(d) else {
                        return exec_err!("dimension {d} does not fit an Int32");
                    };
                    b.values().append_value(d);
                }
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `tensor_dtype`: the numpy dtype name of each tensor, after checking its length.
pub(super) fn dtypes(spec: &TensorSpec, tensors: &[Option<&[u8]>]) -> Result<ArrayRef> {
    let mut b = StringBuilder::new();
    for t in tensors {
        match t {
            Some(t) => {
                spec.check(t)?;
                b.append_value(spec.dtype.name());
            }
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

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
}
