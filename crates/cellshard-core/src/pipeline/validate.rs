//! Checking a pipeline: values in range, stages in order, and the stage list resolved into
//! one [`Transform`] once, when it is read.

use serde::{Deserialize, Serialize};

use super::{
    IllumSource, Illumination, ImageFormat, NormalizeMethod, OutputDtype, Pipeline, Reference,
    Stage,
};
use crate::LayoutTemplate;

/// The stage list and the [`Transform`] it resolves to. Every value has passed the order
/// and range checks: it is made only by [`Stages::new`] (which deserializing calls), so
/// its transform is never out of date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Stage>", into = "Vec<Stage>")]
pub struct Stages {
    list: Vec<Stage>,
    transform: Transform,
}

impl Stages {
    /// Check `list` (order: `decode`, `downsample`?, `center_crop`?, `normalize`; values in
    /// range) and resolve it; the message names the stage and key at fault.
    pub fn new(list: Vec<Stage>) -> std::result::Result<Self, String> {
        let transform = resolve(&list)?;
        Ok(Stages { list, transform })
    }

    /// The stages, in order.
    pub fn list(&self) -> &[Stage] {
        &self.list
    }

    /// What the stages do, resolved.
    pub fn transform(&self) -> Transform {
        self.transform
    }
}

impl TryFrom<Vec<Stage>> for Stages {
    type Error = String;
    fn try_from(list: Vec<Stage>) -> std::result::Result<Self, String> {
        Stages::new(list)
    }
}

impl From<Stages> for Vec<Stage> {
    fn from(s: Stages) -> Self {
        s.list
    }
}

/// The resolved transform: what the stage list means, in one struct.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Image format of the raw files.
    pub format: ImageFormat,
    /// Expected input bit depth.
    pub bit_depth: u8,
    /// Expected input width, if fixed.
    pub width: Option<u32>,
    /// Expected input height, if fixed.
    pub height: Option<u32>,
    /// Header guard.
    pub max_pixels: u64,
    /// Illumination correction, when the pipeline has it.
    pub illumination: Option<Illumination>,
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
    /// Check every value and the stage order; the message names the key.
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        LayoutTemplate::parse(&self.source.layout).map_err(|e| e.to_string())?;
        self.source.channels.check()?;
        if let Some(qc) = &self.qc {
            qc.check()?;
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
        let t = self.transform();
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

    /// The key template of the illumination functions, for `source = "files"`.
    pub fn illumination_files(&self) -> Option<&str> {
        self.stages.list().iter().find_map(|s| match s {
            Stage::Illumination { files, .. } => files.as_deref(),
            _ => None,
        })
    }

    /// What the stages do, resolved when the pipeline was read.
    pub fn transform(&self) -> Transform {
        self.stages.transform()
    }
}

/// Resolve a stage list into a [`Transform`], checking order and values.
fn resolve(stages: &[Stage]) -> std::result::Result<Transform, String> {
    let mut it = stages.iter().peekable();
    let Some(Stage::Decode {
        format,
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
    let mut illumination = None;
    if let Some(Stage::Illumination {
        source,
        files,
        block,
        filter_fraction,
        robust_min_percentile,
    }) = it.peek()
    {
        match (source, files) {
            (IllumSource::Files, None) => {
                return Err(
                    "illumination source = \"files\" needs files = \"<key template>\"".into(),
                );
            }
            (IllumSource::Compute, Some(_)) => {
                return Err("illumination.files is only for source = \"files\"".into());
            }
            _ => {}
        }
        if width.is_none() || height.is_none() {
            return Err("illumination needs decode.width and decode.height".into());
        }
        if !(1..=64).contains(block) {
            return Err(format!("illumination.block = {block}: must be 1..=64"));
        }
        if !(*filter_fraction > 0.0 && *filter_fraction <= 1.0) {
            return Err(format!(
                "illumination.filter_fraction = {filter_fraction}: must be in (0, 1]"
            ));
        }
        if !(0.0..100.0).contains(robust_min_percentile) {
            return Err(format!(
                "illumination.robust_min_percentile = {robust_min_percentile}: must be in [0, 100)"
            ));
        }
        illumination = Some(Illumination {
            source: *source,
            block: *block,
            filter_fraction: *filter_fraction,
            robust_min_percentile: *robust_min_percentile,
        });
        it.next();
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
        return Err("stages must be decode, then optional illumination, downsample and center_crop, then normalize".into());
    };
    if it.next().is_some() {
        return Err("normalize must be the last stage".into());
    }
    if *method == NormalizeMethod::Percentile && !(0.0 <= *low && low < high && *high <= 100.0) {
        return Err(format!(
            "normalize percentiles low = {low}, high = {high}: need 0 <= low < high <= 100"
        ));
    }
    if *method == NormalizeMethod::Zscore && !matches!(output, OutputDtype::F16 | OutputDtype::F32)
    {
        return Err("normalize method = \"zscore\" needs output = \"f16\" or \"f32\"".into());
    }
    Ok(Transform {
        format: *format,
        bit_depth: *bit_depth,
        width: *width,
        height: *height,
        max_pixels: *max_pixels,
        illumination,
        factor,
        crop,
        method: *method,
        low: *low,
        high: *high,
        reference: *reference,
        output: *output,
    })
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
    use crate::pipeline::tests::GOOD;

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
}
