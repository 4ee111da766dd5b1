//! The transform stages: a closed tagged enum, and the value types of `normalize`.

use serde::{Deserialize, Serialize};

/// One transform stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stage {
    /// PNG or TIFF to u16 pixels.
    Decode {
        /// The image format: `png` (the default), `tiff`, or `auto` (by the object's
        /// extension, `.png` or `.tif`/`.tiff`, else by its first bytes).
        #[serde(default, skip_serializing_if = "ImageFormat::is_png")]
        format: ImageFormat,
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
    /// Divide each raw image by its plate's illumination function, channel by channel,
    /// before anything else touches the pixels.
    Illumination {
        /// `compute` (from the plate's own images) or `files` (the dataset's `.npy`).
        #[serde(default)]
        source: IllumSource,
        /// For `files`: the function's key below the source URL, with `{experiment}`,
        /// `{plate}`, `{channel}` (number) and `{channel_name}`, e.g.
        /// `illum/{experiment}/{experiment}_Illum{channel_name}.npy`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        files: Option<String>,
        /// `compute`: the plate's mean image is block-averaged by this factor first.
        #[serde(default = "default_illum_block")]
        block: u32,
        /// `compute`: median filter side as a fraction of the image's longer side.
        #[serde(default = "default_filter_fraction")]
        filter_fraction: f64,
        /// `compute`: the robust minimum's percentile; the function is divided by it.
        #[serde(default = "default_robust_min")]
        robust_min_percentile: f64,
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

/// Where an illumination function comes from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IllumSource {
    /// Computed from every image of the plate (CellProfiler's Cell Painting recipe).
    #[default]
    Compute,
    /// Read from one `.npy` file per plate and channel.
    Files,
}

/// The resolved illumination stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Illumination {
    /// Where the function comes from.
    pub source: IllumSource,
    /// Block-average factor (compute).
    pub block: u32,
    /// Median filter fraction (compute).
    pub filter_fraction: f64,
    /// Robust minimum percentile (compute).
    pub robust_min_percentile: f64,
}

/// The format of the raw images.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// PNG.
    #[default]
    Png,
    /// TIFF.
    Tiff,
    /// By extension, else by signature.
    Auto,
}

impl ImageFormat {
    /// Whether this is the default, PNG (left out of the pipeline hash, so pipelines
    /// written before the field existed keep their hash).
    pub fn is_png(&self) -> bool {
        *self == ImageFormat::Png
    }
}

fn default_illum_block() -> u32 {
    4
}
fn default_filter_fraction() -> f64 {
    0.075
}
fn default_robust_min() -> f64 {
    2.0
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
