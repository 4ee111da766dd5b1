//! Stack normalized channels into one channel-major (C x H x W) little-endian tensor.

use cellshard_core::OutputDtype;

use crate::{Plane, PlateNorm};

/// A site's stored tensor and its per-channel output statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteTensor {
    /// C x H x W values, little-endian.
    pub bytes: Vec<u8>,
    /// Mean of each output channel (in output units).
    pub channel_mean: Vec<f64>,
    /// Population standard deviation of each output channel.
    pub channel_std: Vec<f64>,
    /// Mean of each channel's input (the cropped raw samples, before normalization).
    pub raw_mean: Vec<f64>,
}

/// Normalize and stack `planes` (one per channel, all the same size).
pub fn stack(planes: &[Plane], norm: &PlateNorm) -> SiteTensor {
    let per_channel: usize = planes.first().map_or(0, |p| p.data.len()) * norm.output.size();
    let mut bytes = Vec::with_capacity(per_channel * planes.len());
    let mut channel_mean = Vec::with_capacity(planes.len());
    let mut channel_std = Vec::with_capacity(planes.len());
    let mut raw_mean = Vec::with_capacity(planes.len());
    for (c, plane) in planes.iter().enumerate() {
        let sum: u64 = plane.data.iter().map(|&v| u64::from(v)).sum();
        raw_mean.push(sum as f64 / plane.data.len().max(1) as f64);
        let start = bytes.len();
        norm.apply(c, &plane.data, &mut bytes);
        let (m, s) = moments(&bytes[start..], norm.output);
        channel_mean.push(m);
        channel_std.push(s);
    }
    SiteTensor {
        bytes,
        channel_mean,
        channel_std,
        raw_mean,
    }
}

/// Mean and population standard deviation of little-endian values of `dtype`.
pub fn moments(bytes: &[u8], dtype: OutputDtype) -> (f64, f64) {
    let (mut n, mut s, mut ss) = (0f64, 0f64, 0f64);
    let mut push = |v: f64| {
        n += 1.0;
        s += v;
        ss += v * v;
    };
    match dtype {
        OutputDtype::U8 => {
            // A histogram keeps the sum exact and fast for 8-bit data. Four of them, merged
            // at the end, so runs of one value (background) do not serialize on one counter.
            let mut hs = [[0u64; 256]; 4];
            let mut quads = bytes.chunks_exact(4);
            for q in &mut quads {
                for (h, &b) in hs.iter_mut().zip(q) {
                    h[usize::from(b)] += 1;
                }
            }
            quads
                .remainder()
                .iter()
                .for_each(|&b| hs[0][usize::from(b)] += 1);
            let h: Vec<u64> = (0..256).map(|v| hs.iter().map(|h| h[v]).sum()).collect();
            for (v, &c) in h.iter().enumerate() {
                let (v, c) = (v as f64, c as f64);
                n += c;
                s += v * c;
                ss += v * v * c;
            }
        }
        OutputDtype::U16 => bytes
            .chunks_exact(2)
            .for_each(|b| push(f64::from(u16::from_le_bytes([b[0], b[1]])))),
        OutputDtype::F16 => bytes
            .chunks_exact(2)
            .for_each(|b| push(half::f16::from_le_bytes([b[0], b[1]]).to_f64())),
        OutputDtype::F32 => bytes
            .chunks_exact(4)
            .for_each(|b| push(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))),
    }
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let mean = s / n;
    (mean, (ss / n - mean * mean).max(0.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelNorm;

    #[test]
    fn channel_major_layout() {
        let norm = PlateNorm::new(
            vec![
                ChannelNorm::Percentile { lo: 0, hi: 255 },
                ChannelNorm::Percentile { lo: 0, hi: 510 },
            ],
            OutputDtype::U8,
        );
        let a = Plane::new(2, 1, vec![10, 20]);
        let b = Plane::new(2, 1, vec![100, 510]);
        let t = stack(&[a, b], &norm);
        assert_eq!(t.bytes, vec![10, 20, 50, 255]);
        assert_eq!(t.channel_mean, vec![15.0, 152.5]);
        assert_eq!(t.channel_std[0], 5.0);
        assert_eq!(t.raw_mean, vec![15.0, 305.0]);
    }

    /// The 8-bit histogram path agrees with summing every value, whatever the length.
    #[test]
    fn u8_moments_match_a_plain_sum() {
        for len in [0usize, 1, 3, 4, 5, 1023] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| u8::try_from(i * i % 251).unwrap())
                .collect();
            let (n, s, ss) = bytes.iter().fold((0f64, 0f64, 0f64), |(n, s, ss), &b| {
                let v = f64::from(b);
                (n + 1.0, s + v, ss + v * v)
            });
            let (mean, std) = moments(&bytes, OutputDtype::U8);
            let want_mean = if n == 0.0 { 0.0 } else { s / n };
            let want_std = if n == 0.0 {
                0.0
            } else {
                (ss / n - want_mean * want_mean).max(0.0).sqrt()
            };
            assert!((mean - want_mean).abs() < 1e-9, "{len}: {mean} {want_mean}");
            assert!((std - want_std).abs() < 1e-9, "{len}: {std} {want_std}");
        }
    }
}
