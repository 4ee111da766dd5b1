//! The per-site statistics a plate heatmap can show, by the names `--stat` and the viewer
//! take.

use crate::{Error, Result};

/// A per-site statistic that a plate heatmap can show, averaged over a well's sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// A numeric or flag column of `site_qc` (flags show the fraction of sites flagged).
    Qc(&'static str),
    /// `sites.raw_channel_mean`: the raw crop's mean, before normalization.
    RawMean,
    /// Stored sites per well.
    Sites,
    /// Rejected sites per well (the plate's current build and discovery).
    Rejected,
}

/// How many of [`STATS`] are `site_qc` columns.
const QC_STATS: usize = 12;

/// The statistics `--stat` accepts; the first [`QC_STATS`] are columns of `site_qc`.
pub const STATS: [&str; 15] = [
    "mean",
    "std",
    "z_mean",
    "blank",
    "low_contrast",
    "outlier",
    "saturated",
    "focus",
    "saturation",
    "foreground",
    "nuclei",
    "qc_fail",
    "raw_mean",
    "sites",
    "rejected",
];

impl Stat {
    /// Parse a `--stat` name.
    pub fn parse(name: &str) -> Result<Stat> {
        Ok(match name {
            "raw_mean" => Stat::RawMean,
            "sites" => Stat::Sites,
            "rejected" => Stat::Rejected,
            n => match STATS[..QC_STATS].iter().find(|s| **s == n) {
                Some(s) => Stat::Qc(s),
                None => {
                    return Err(Error::Usage(format!(
                        "unknown statistic {name:?}: one of {}",
                        STATS.join(", ")
                    )));
                }
            },
        })
    }

    /// The name, as given to `--stat`.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Qc(s) => s,
            Stat::RawMean => "raw_mean",
            Stat::Sites => "sites",
            Stat::Rejected => "rejected",
        }
    }

    /// Whether the statistic is per channel.
    pub fn per_channel(self) -> bool {
        matches!(self, Stat::Qc(_) | Stat::RawMean)
            && !matches!(self, Stat::Qc("nuclei" | "qc_fail"))
    }

    /// The `site_qc` expression of a [`Stat::Qc`] statistic.
    pub fn column(self) -> &'static str {
        match self {
            Stat::Qc("nuclei") => "nuclei_count",
            Stat::Qc("qc_fail") => "(NOT qc_pass)",
            Stat::Qc(c) => c,
            _ => "",
        }
    }

    /// A title for pictures: `mean of w2 ConA (stored values)`, `ch` the channel's label.
    pub fn title(self, ch: &str) -> String {
        match self {
            Stat::Qc("mean") => format!("mean of {ch} (normalized)"),
            Stat::Qc("std") => format!("std of {ch} (normalized)"),
            Stat::Qc("z_mean") => format!("z of the mean of {ch} within the plate"),
            Stat::Qc("focus") => format!("focus of {ch} (PowerLogLogSlope; lower is blurrier)"),
            Stat::Qc("saturation") => format!("fraction of saturated pixels in {ch} (raw)"),
            Stat::Qc("foreground") => format!("foreground fraction of {ch} (Otsu)"),
            Stat::Qc("nuclei") => "nuclei per site (estimate)".into(),
            Stat::Qc("qc_fail") => "fraction of sites failing QC".into(),
            Stat::Qc(flag) => format!("fraction of sites flagged {flag} in {ch}"),
            Stat::RawMean => format!("mean of {ch} (raw crop)"),
            Stat::Sites => "stored sites per well".into(),
            Stat::Rejected => "rejected sites per well".into(),
        }
    }
}
