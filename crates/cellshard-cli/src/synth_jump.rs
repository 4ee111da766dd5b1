//! `synth --dataset jump`: one JUMP-shaped plate of TIFFs with its load_data.csv.

use anyhow::Result;
use cellshard_store::Location;

use crate::SynthArgs;

/// `synth --dataset jump`.
pub(crate) async fn synth_jump(a: SynthArgs) -> Result<()> {
    if !(0.0..1.0).contains(&a.vignetting) {
        return Err(cellshard_synth::Error::Config(format!(
            "--vignetting {} must be in [0, 1)",
            a.vignetting
        ))
        .into());
    }
    let cfg = cellshard_synth::jump::JumpConfig {
        wells: a.wells.unwrap_or(16),
        sites: a.sites,
        size: a.size.unwrap_or(1080),
        seed: a.seed,
        vignetting: a.vignetting,
    };
    let out = Location::parse(&a.out, &a.store_options.into_iter().collect())?;
    out.create_local_dir()?;
    let report = cellshard_synth::jump::write_jump(out.store.clone(), &out.prefix, &cfg).await?;
    println!(
        "{}",
        serde_json::json!({
            "out": out.url.to_string(),
            "sites": report.sites,
            "objects": report.objects,
            "bytes": report.bytes,
            "seconds": report.seconds,
            "metadata": format!("{}load_data.csv", out.url),
        })
    );
    Ok(())
}
