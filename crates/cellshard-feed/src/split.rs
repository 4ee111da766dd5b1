//! Well-level splits: a site goes to a split by a hash of its (experiment, plate, well), so
//! the sites of one well never straddle train and validation.

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// `train:0.9,val:0.1`, and the part to take.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSpec {
    /// Parts and their shares (normalized to sum to 1).
    pub parts: Vec<(String, f64)>,
    /// The part this feed reads.
    pub take: String,
}

impl SplitSpec {
    /// From `NAME:SHARE,...` and the part to take.
    pub fn parse(spec: &str, take: &str) -> Result<Self> {
        let bad = |m: String| Error::Usage(format!("split {spec:?}: {m}"));
        let mut parts = Vec::new();
        for p in spec.split(',') {
            let (name, share) = p
                .split_once(':')
                .ok_or_else(|| bad(format!("{p:?} is not NAME:SHARE")))?;
            let share: f64 = share
                .trim()
                .parse()
                .map_err(|_| bad(format!("{share:?} is not a number")))?;
            if !(share > 0.0 && share.is_finite()) {
                return Err(bad(format!("share {share} must be positive")));
            }
            parts.push((name.trim().to_string(), share));
        }
        let total: f64 = parts.iter().map(|p| p.1).sum();
        parts.iter_mut().for_each(|p| p.1 /= total);
        if !parts.iter().any(|p| p.0 == take) {
            return Err(bad(format!("no part named {take:?}")));
        }
        Ok(SplitSpec {
            parts,
            take: take.to_string(),
        })
    }

    /// The part a well falls in.
    pub fn part_of(&self, experiment: &str, plate: i64, well: &str) -> &str {
        let mut h = Sha256::new();
        h.update(experiment.as_bytes());
        h.update([0]);
        h.update(plate.to_le_bytes());
        h.update([0]);
        h.update(well.as_bytes());
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        let u = (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        for (name, share) in &self.parts {
            acc += share;
            if u < acc {
                return name;
            }
        }
        &self.parts[self.parts.len() - 1].0
    }

    /// Whether a well is in the part this feed reads.
    pub fn takes(&self, experiment: &str, plate: i64, well: &str) -> bool {
        self.part_of(experiment, plate, well) == self.take
    }

    /// Text that identifies the split (for cursors).
    pub fn key(&self) -> String {
        let parts: Vec<String> = self.parts.iter().map(|(n, s)| format!("{n}:{s}")).collect();
        format!("{}|{}", parts.join(","), self.take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wells_fall_in_one_part_with_about_the_asked_shares() {
        let s = SplitSpec::parse("train:0.9,val:0.1", "val").unwrap();
        let mut val = 0;
        for plate in 1..=4 {
            for row in 'B'..='O' {
                for col in 2..=23 {
                    let well = format!("{row}{col:02}");
                    let a = s.part_of("HUVEC-01", plate, &well);
                    assert_eq!(a, s.part_of("HUVEC-01", plate, &well));
                    val += usize::from(a == "val");
                }
            }
        }
        let share = val as f64 / (4.0 * 14.0 * 22.0);
        assert!((0.07..0.13).contains(&share), "{share}");
        assert!(SplitSpec::parse("train:0.9,val:0.1", "test").is_err());
        assert!(SplitSpec::parse("train=0.9", "train").is_err());
    }
}
