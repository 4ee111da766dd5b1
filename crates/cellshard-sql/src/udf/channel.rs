//! Channel functions: `tensor_channel` (one channel's bytes) and the channel statistics
//! `tensor_mean`, `tensor_std` and `tensor_percentile`.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, Float64Builder};
use datafusion::common::{Result, exec_err};

use super::Kind;
use super::args::floats;
use super::tensor::TensorSpec;

/// `tensor_channel`: channel `c` (1-based) of each tensor as raw bytes.
pub(super) fn channels(
    spec: &TensorSpec,
    tensors: &[Option<&[u8]>],
    c: &[Option<i64>],
) -> Result<ArrayRef> {
    let mut b = BinaryBuilder::new();
    for (t, c) in tensors.iter().zip(c) {
        match (t, c) {
            (Some(t), Some(c)) => b.append_value(spec.channel_bytes(t, *c)?),
            _ => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `tensor_mean`, `tensor_std` or `tensor_percentile` (by `kind`) of channel `c` of each
/// tensor; `p` is the percentile argument.
pub(super) fn stats(
    kind: Kind,
    spec: &TensorSpec,
    tensors: &[Option<&[u8]>],
    c: &[Option<i64>],
    p: Option<&ArrayRef>,
) -> Result<ArrayRef> {
    let n = tensors.len();
    let p = match p {
        Some(a) => floats(a)?,
        None => vec![None; n],
    };
    let mut b = Float64Builder::with_capacity(n);
    for i in 0..n {
        let (Some(t), Some(c)) = (tensors[i], c[i]) else {
            b.append_null();
            continue;
        };
        let v = spec.channel_values(t, c)?;
        match kind {
            Kind::Mean => b.append_value(mean_std(&v).0),
            Kind::Std => b.append_value(mean_std(&v).1),
            _ => match p[i] {
                Some(p) => b.append_value(percentile(v, p)?),
                None => b.append_null(),
            },
        }
    }
    Ok(Arc::new(b.finish()))
}

/// Mean and population standard deviation; NaN for no values.
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
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "p is checked to be in 0..=100, so the rank is in 0..=n"
    )]
    let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
    let (_, x, _) = v.select_nth_unstable_by(rank - 1, f64::total_cmp);
    Ok(*x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::Dtype;

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
}
