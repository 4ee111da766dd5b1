//! Declarative pipelines: the TOML files under `pipelines/`.
//!
//! Pipeline semantics (layout, stages, output encoding) live in the file; runtime knobs
//! (threads, worker index, credentials) do not. Unknown keys are errors that name the key
//! and its line. Stages are a closed tagged enum and must come in the order
//! `decode`, `downsample`?, `center_crop`?, `normalize`.

mod qc;
mod sink;
mod stage;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layout::RXRX1_LAYOUT;
use crate::{ByteSize, Error, LayoutTemplate, Result};

pub use qc::QcConfig;
pub use sink::{Sink, TensorCodec};
pub use stage::{
    IllumSource, Illumination, ImageFormat, NormalizeMethod, OutputDtype, Reference, Stage,
};
pub use validate::{Stages, Transform};

/// A parsed and validated pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Name, stored with every site.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Where the raw images are.
    pub source: Source,
    /// Where the metadata CSV files are.
    pub metadata: Metadata,
    /// The transform, in order, checked and resolved when read.
    pub stages: Stages,
    /// Where and how the store is written.
    pub sink: Sink,
    /// QC thresholds (`qc_pass`, `qc_flags`); the defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qc: Option<QcConfig>,
}

/// The image source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Object store URL or local path of the prefix to list.
    pub url: String,
    /// Key layout below `url`.
    #[serde(default = "default_layout")]
    pub layout: String,
    /// Channels per site: a count (`6`, named `w1`..`w6`) or the names in order
    /// (`["DNA", "ER", "RNA", "AGP", "Mito"]`).
    #[serde(default)]
    pub channels: Channels,
    /// Object store options (endpoint, region, ...); credentials belong in the environment.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Budget of source bytes fetched but not yet decoded; a slow consumer slows the reads.
    #[serde(default = "default_inflight")]
    pub max_inflight: ByteSize,
}

/// Metadata files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// One or more CSV URLs or paths (RxRx1 `metadata.csv`, or Kaggle `train.csv` + `*_controls.csv`).
    pub urls: Vec<String>,
}

fn default_layout() -> String {
    RXRX1_LAYOUT.to_string()
}
/// A site's channels: how many, and their names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Channels {
    /// `n` channels named `w1`..`wn` (RxRx1's file suffixes).
    Count(u32),
    /// Named channels, in the order they are stacked.
    Names(Vec<String>),
}

impl Default for Channels {
    fn default() -> Self {
        Channels::Count(6)
    }
}

impl Channels {
    /// How many channels a site has.
    pub fn count(&self) -> u32 {
        match self {
            Channels::Count(n) => *n,
            Channels::Names(v) => u32::try_from(v.len()).unwrap_or(u32::MAX),
        }
    }

    /// The channel names in stacking order (`w1`.. when only counted).
    pub fn names(&self) -> Vec<String> {
        match self {
            Channels::Count(n) => (1..=*n).map(|c| format!("w{c}")).collect(),
            Channels::Names(v) => v.clone(),
        }
    }

    /// Whether the pipeline names its channels.
    pub fn named(&self) -> bool {
        matches!(self, Channels::Names(_))
    }

    pub(super) fn check(&self) -> std::result::Result<(), String> {
        if !(1..=64).contains(&self.count()) {
            return Err(format!(
                "source.channels has {} channels, must be 1..=64",
                self.count()
            ));
        }
        if let Channels::Names(v) = self {
            for (i, n) in v.iter().enumerate() {
                if n.is_empty()
                    || n.len() > 64
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(format!(
                        "source.channels name {n:?} must be 1..64 letters, digits, '_' or '-'"
                    ));
                }
                if v[..i].contains(n) {
                    return Err(format!("source.channels names {n:?} twice"));
                }
                if n.parse::<u32>().is_ok() {
                    return Err(format!(
                        "source.channels name {n:?} is a number; names must not look like channel numbers"
                    ));
                }
            }
        }
        Ok(())
    }
}
fn default_inflight() -> ByteSize {
    ByteSize::mib(512)
}

impl Pipeline {
    /// Parse and validate a pipeline from TOML text; `path` names it in errors. The stages
    /// are resolved once, here: [`Pipeline::transform`] cannot fail.
    ///
    /// ```
    /// use cellshard_core::Pipeline;
    ///
    /// let text = r#"
    /// name = "rxrx1"
    /// [source]
    /// url = "s3://bucket/rxrx1/images"
    /// [metadata]
    /// urls = ["s3://bucket/rxrx1/metadata.csv"]
    /// [[stages]]
    /// kind = "decode"
    /// bit_depth = 16
    /// width = 2048
    /// height = 2048
    /// [[stages]]
    /// kind = "downsample"
    /// factor = 2
    /// [[stages]]
    /// kind = "center_crop"
    /// size = 512
    /// [[stages]]
    /// kind = "normalize"
    /// [sink]
    /// url = "s3://bucket/store"
    /// "#;
    /// let p = Pipeline::from_toml("rxrx1.toml", text).unwrap();
    /// assert_eq!(p.transform().output_shape(), (512, 512));
    ///
    /// // A misspelt key is named with its line.
    /// let e = Pipeline::from_toml("rxrx1.toml", &text.replace("factor", "factr"));
    /// assert!(e.unwrap_err().to_string().contains("unknown key `factr` at line 14"));
    /// ```
    pub fn from_toml(path: &str, text: &str) -> Result<Self> {
        let pipeline: Pipeline = toml::from_str(text).map_err(|e| Error::Pipeline {
            path: path.to_string(),
            message: locate_unknown_key(text, &e),
        })?;
        pipeline.validate().map_err(|message| Error::Pipeline {
            path: path.to_string(),
            message,
        })?;
        Ok(pipeline)
    }

    /// The QC thresholds in force: the `[qc]` section's, else the defaults.
    pub fn qc(&self) -> QcConfig {
        self.qc.unwrap_or_default()
    }

    /// The parsed layout template.
    pub fn layout(&self) -> Result<LayoutTemplate> {
        LayoutTemplate::parse(&self.source.layout)
    }

    /// A short hash of everything that determines the stored tensors (layout, channels,
    /// stages, tensor encoding), not of where data is read from or written to.
    pub fn hash(&self) -> String {
        #[derive(Serialize)]
        struct Semantics<'a> {
            layout: &'a str,
            channels: &'a Channels,
            stages: &'a [Stage],
            zstd_level: i32,
            // Absent from pipelines that keep the default codec, so their hash is unchanged.
            #[serde(skip_serializing_if = "TensorCodec::is_default")]
            tensor_codec: TensorCodec,
            // Absent from pipelines without a [qc] section, so their hash is unchanged.
            #[serde(skip_serializing_if = "Option::is_none")]
            qc: Option<&'a QcConfig>,
        }
        let sem = Semantics {
            layout: &self.source.layout,
            channels: &self.source.channels,
            stages: self.stages.list(),
            zstd_level: self.sink.zstd_level,
            tensor_codec: self.sink.tensor_codec,
            qc: self.qc.as_ref(),
        };
        // Serialising plain structs of owned data cannot fail.
        let json = serde_json::to_vec(&sem).unwrap_or_default();
        hex::encode(&Sha256::digest(&json)[..8])
    }
}

/// Stage tables are parsed through a tagged enum, which reports unknown keys at the start
/// of the stage list; point at the key's own line as well.
fn locate_unknown_key(text: &str, e: &toml::de::Error) -> String {
    let message = e.to_string();
    let Some(key) = e
        .message()
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    else {
        return message;
    };
    let from = e.span().map_or(0, |s| {
        text[..s.start.min(text.len())]
            .lines()
            .count()
            .saturating_sub(1)
    });
    let found = text.lines().enumerate().skip(from).find(|(_, l)| {
        let l = l.trim_start();
        l.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    match found {
        Some((i, _)) => format!("unknown key `{key}` at line {}\n{message}", i + 1),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid pipeline: 2048 px 16-bit input, downsample, crop to 512, normalize.
    pub(super) const GOOD: &str = r#"
name = "t"
[source]
url = "raw"
[metadata]
urls = ["raw/metadata.csv"]
[[stages]]
kind = "decode"
bit_depth = 16
width = 2048
height = 2048
[[stages]]
kind = "downsample"
factor = 2
[[stages]]
kind = "center_crop"
size = 512
[[stages]]
kind = "normalize"
[sink]
url = "store"
"#;

    #[test]
    fn parses_defaults() {
        let p = Pipeline::from_toml("p.toml", GOOD).unwrap();
        let t = p.transform();
        assert_eq!(
            (t.factor, t.crop, t.output),
            (2, Some(512), OutputDtype::U8)
        );
        assert_eq!((t.low, t.high, t.reference), (0.1, 99.9, Reference::All));
        assert_eq!(t.output_dims(2048, 2048).unwrap(), (512, 512));
        assert_eq!(p.sink.row_group_size, ByteSize::mib(32));
        assert_eq!(p.hash().len(), 16);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = GOOD.replace("factor = 2", "factor = 2\nfactr = 3");
        let e = Pipeline::from_toml("p.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("factr"), "{e}");
        assert!(e.contains("unknown key `factr` at line 15"), "{e}");
        let text = GOOD.replace("url = \"store\"", "url = \"store\"\nzstd = 3");
        let e = Pipeline::from_toml("p.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("zstd") && e.contains("line"), "{e}");
    }

    #[test]
    fn hash_ignores_locations_but_not_semantics() {
        let a = Pipeline::from_toml("p.toml", GOOD).unwrap();
        let b = Pipeline::from_toml(
            "p.toml",
            &GOOD.replace("url = \"store\"", "url = \"elsewhere\""),
        )
        .unwrap();
        let c = Pipeline::from_toml("p.toml", &GOOD.replace("factor = 2", "factor = 4")).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
    }
}
