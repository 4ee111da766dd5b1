//! Declarative pipelines: the TOML files under `pipelines/`.
//!
//! Pipeline semantics (layout, stages, output encoding) live in the file; runtime knobs
//! (threads, worker index, credentials) do not. Unknown keys are errors that name the key
//! and its line. Stages are a closed tagged enum and must come in the order
//! `decode`, `downsample`?, `center_crop`?, `normalize`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layout::RXRX1_LAYOUT;
use crate::{ByteSize, Error, LayoutTemplate, Result};

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
    /// The transform, in order.
    pub stages: Vec<Stage>,
    /// Where and how the store is written.
    pub sink: Sink,
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
    /// Channels per site.
    #[serde(default = "default_channels")]
    pub channels: u32,
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

/// The store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// Store root URL or local path; tables live in folders below it.
    pub url: String,
    /// ZSTD level of the tensor column.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Target uncompressed bytes per row group.
    #[serde(default = "default_row_group")]
    pub row_group_size: ByteSize,
    /// Target size of one Parquet file, in uncompressed tensor bytes like `row_group_size`:
    /// a plate's sites are cut, in order, into files of `target_file_size / tensor bytes`
    /// sites, which are written in parallel. The cut depends on the pipeline only.
    #[serde(default = "default_file_size")]
    pub target_file_size: ByteSize,
    /// Object store options for the sink.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// One transform stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stage {
    /// PNG to u16 pixels.
    Decode {
        /// Expected bit depth of every PNG (8 or 16); anything else is rejected.
        bit_depth: u8,
        /// Expected width; other sizes are rejected. `None` accepts any.
        #[serde(default)]
        width: Option<u32>,
        /// Expected height; other sizes are rejected. `None` accepts any.
        #[serde(default)]
        height: Option<u32>,
        /// Headers claiming more pixels than this are refused before allocating.
        #[serde(default = "default_max_pixels")]
        max_pixels: u64,
    },
    /// Each output pixel is the mean of a `factor` x `factor` block, rounded half to even.
    Downsample {
        /// Block size (2 for RxRx1).
        factor: u32,
    },
    /// Keep the centred `size` x `size` window.
    CenterCrop {
        /// Side of the window.
        size: u32,
    },
    /// Per-plate, per-channel normalization from exact histograms.
    Normalize {
        /// Method.
        #[serde(default)]
        method: NormalizeMethod,
        /// Lower percentile (percentile method).
        #[serde(default = "default_low")]
        low: f64,
        /// Upper percentile (percentile method).
        #[serde(default = "default_high")]
        high: f64,
        /// Which wells form the reference population.
        #[serde(default)]
        reference: Reference,
        /// Output element type.
        #[serde(default)]
        output: OutputDtype,
    },
}

/// Normalization method.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum NormalizeMethod {
    /// Clip to [p_low, p_high] and scale to the output range.
    #[default]
    Percentile,
    /// Subtract the mean, divide by the standard deviation.
    Zscore,
}

/// Reference population for plate statistics.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// Every stored site of the plate.
    #[default]
    All,
    /// Positive and negative control wells.
    Controls,
    /// Negative control wells only.
    NegativeControls,
}

impl Reference {
    /// Name as written in pipelines and `plate_stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reference::All => "all",
            Reference::Controls => "controls",
            Reference::NegativeControls => "negative_controls",
        }
    }

    /// Whether a well of this type belongs to the population.
    pub fn includes(self, well_type: &str) -> bool {
        match self {
            Reference::All => true,
            Reference::Controls => well_type.ends_with("control"),
            Reference::NegativeControls => well_type == "negative_control",
        }
    }
}

impl NormalizeMethod {
    /// Name as written in pipelines and `plate_stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            NormalizeMethod::Percentile => "percentile",
            NormalizeMethod::Zscore => "zscore",
        }
    }
}

/// Element type of the stored tensor.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputDtype {
    /// 8-bit unsigned, like the RxRx1 release.
    #[default]
    U8,
    /// 16-bit unsigned.
    U16,
    /// Half float (z-scores).
    F16,
    /// Single float (z-scores).
    F32,
}

impl OutputDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            OutputDtype::U8 => 1,
            OutputDtype::U16 | OutputDtype::F16 => 2,
            OutputDtype::F32 => 4,
        }
    }

    /// numpy-style name recorded in the tensor field metadata.
    pub fn numpy_name(self) -> &'static str {
        match self {
            OutputDtype::U8 => "uint8",
            OutputDtype::U16 => "uint16",
            OutputDtype::F16 => "float16",
            OutputDtype::F32 => "float32",
        }
    }
}

fn default_layout() -> String {
    RXRX1_LAYOUT.to_string()
}
fn default_channels() -> u32 {
    6
}
fn default_inflight() -> ByteSize {
    ByteSize::mib(512)
}
fn default_zstd_level() -> i32 {
    1
}
fn default_row_group() -> ByteSize {
    ByteSize::mib(32)
}
fn default_file_size() -> ByteSize {
    ByteSize::mib(256)
}
fn default_max_pixels() -> u64 {
    8192 * 8192
}
fn default_low() -> f64 {
    0.1
}
fn default_high() -> f64 {
    99.9
}

/// The resolved transform: what the stage list means, in one struct.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Expected input bit depth.
    pub bit_depth: u8,
    /// Expected input width, if fixed.
    pub width: Option<u32>,
    /// Expected input height, if fixed.
    pub height: Option<u32>,
    /// Header guard.
    pub max_pixels: u64,
    /// Downsample factor (1 = none).
    pub factor: u32,
    /// Crop side, if any.
    pub crop: Option<u32>,
    /// Normalization method.
    pub method: NormalizeMethod,
    /// Lower percentile.
    pub low: f64,
    /// Upper percentile.
    pub high: f64,
    /// Reference population.
    pub reference: Reference,
    /// Output type.
    pub output: OutputDtype,
}

impl Pipeline {
    /// Parse and validate a pipeline from TOML text; `path` names it in errors.
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

    /// The parsed layout template.
    pub fn layout(&self) -> Result<LayoutTemplate> {
        LayoutTemplate::parse(&self.source.layout)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        LayoutTemplate::parse(&self.source.layout).map_err(|e| e.to_string())?;
        if !(1..=64).contains(&self.source.channels) {
            return Err(format!(
                "source.channels = {} is out of range 1..=64",
                self.source.channels
            ));
        }
        if self.metadata.urls.is_empty() {
            return Err("metadata.urls must name at least one CSV file".into());
        }
        if !(1..=22).contains(&self.sink.zstd_level) {
            return Err(format!(
                "sink.zstd_level = {} is out of range 1..=22",
                self.sink.zstd_level
            ));
        }
        if self.source.max_inflight.bytes() < (1 << 20) {
            return Err("source.max_inflight must be at least 1MiB".into());
        }
        if self.sink.row_group_size.bytes() < 1024 {
            return Err("sink.row_group_size must be at least 1KiB".into());
        }
        let t = self.transform()?;
        if t.crop.is_none() && (t.width.is_none() || t.height.is_none()) {
            return Err("every stored tensor must have the same shape: set decode.width and decode.height, or add a center_crop stage".into());
        }
        if let (Some(w), Some(h)) = (t.width, t.height) {
            let (ow, oh) = t.output_dims(w, h)?;
            if ow == 0 || oh == 0 {
                return Err(format!("the stages turn {w}x{h} input into an empty image"));
            }
        }
        Ok(())
    }

    /// Resolve the stage list into a [`Transform`], checking order and values.
    pub fn transform(&self) -> std::result::Result<Transform, String> {
        let mut it = self.stages.iter().peekable();
        let Some(Stage::Decode {
            bit_depth,
            width,
            height,
            max_pixels,
        }) = it.next()
        else {
            return Err("the first stage must be kind = \"decode\"".into());
        };
        if !matches!(bit_depth, 8 | 16) {
            return Err(format!("decode.bit_depth = {bit_depth}: must be 8 or 16"));
        }
        let mut factor = 1;
        if let Some(Stage::Downsample { factor: f }) = it.peek() {
            if !(1..=16).contains(f) {
                return Err(format!("downsample.factor = {f}: must be 1..=16"));
            }
            factor = *f;
            it.next();
        }
        let mut crop = None;
        if let Some(Stage::CenterCrop { size }) = it.peek() {
            if *size == 0 {
                return Err("center_crop.size must be positive".into());
            }
            crop = Some(*size);
            it.next();
        }
        let Some(Stage::Normalize {
            method,
            low,
            high,
            reference,
            output,
        }) = it.next()
        else {
            return Err("stages must be decode, then optional downsample, then optional center_crop, then normalize".into());
        };
        if it.next().is_some() {
            return Err("normalize must be the last stage".into());
        }
        if *method == NormalizeMethod::Percentile && !(0.0 <= *low && low < high && *high <= 100.0)
        {
            return Err(format!(
                "normalize percentiles low = {low}, high = {high}: need 0 <= low < high <= 100"
            ));
        }
        if *method == NormalizeMethod::Zscore
            && !matches!(output, OutputDtype::F16 | OutputDtype::F32)
        {
            return Err("normalize method = \"zscore\" needs output = \"f16\" or \"f32\"".into());
        }
        Ok(Transform {
            bit_depth: *bit_depth,
            width: *width,
            height: *height,
            max_pixels: *max_pixels,
            factor,
            crop,
            method: *method,
            low: *low,
            high: *high,
            reference: *reference,
            output: *output,
        })
    }

    /// A short hash of everything that determines the stored tensors (layout, channels,
    /// stages, tensor encoding), not of where data is read from or written to.
    pub fn hash(&self) -> String {
        #[derive(Serialize)]
        struct Semantics<'a> {
            layout: &'a str,
            channels: u32,
            stages: &'a [Stage],
            zstd_level: i32,
        }
        let sem = Semantics {
            layout: &self.source.layout,
            channels: self.source.channels,
            stages: &self.stages,
            zstd_level: self.sink.zstd_level,
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

impl Transform {
    /// Output (height, width) of every tensor; validation guarantees it is fixed.
    pub fn output_shape(&self) -> (u32, u32) {
        match (self.crop, self.width, self.height) {
            (Some(c), _, _) => (c, c),
            (None, Some(w), Some(h)) => (h / self.factor, w / self.factor),
            _ => (0, 0),
        }
    }

    /// Output width and height for an input of `w` x `h`.
    pub fn output_dims(&self, w: u32, h: u32) -> std::result::Result<(u32, u32), String> {
        let (dw, dh) = (w / self.factor, h / self.factor);
        match self.crop {
            None => Ok((dw, dh)),
            Some(c) if c <= dw && c <= dh => Ok((c, c)),
            Some(c) => Err(format!(
                "center_crop.size = {c} is larger than the downsampled image {dw}x{dh}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
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
        let t = p.transform().unwrap();
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
    fn stage_order_and_values_are_checked() {
        let swapped = GOOD.replace(
            "kind = \"downsample\"\nfactor = 2",
            "kind = \"center_crop\"\nsize = 512",
        );
        assert!(Pipeline::from_toml("p.toml", &swapped).is_err());
        let big = GOOD.replace("size = 512", "size = 2000");
        let e = Pipeline::from_toml("p.toml", &big).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        let z = GOOD.replace(
            "kind = \"normalize\"",
            "kind = \"normalize\"\nmethod = \"zscore\"",
        );
        assert!(Pipeline::from_toml("p.toml", &z).is_err());
        let z = GOOD.replace(
            "kind = \"normalize\"",
            "kind = \"normalize\"\nmethod = \"zscore\"\noutput = \"f32\"",
        );
        assert!(Pipeline::from_toml("p.toml", &z).is_ok());
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
