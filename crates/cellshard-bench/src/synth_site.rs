//! `cellshard-bench synth-site`: how long one synthetic raw site takes to make, channel by
//! channel (render, then PNG encode), on one thread.

use std::time::Instant;

use anyhow::Result;
use cellshard_core::SiteMetadata;
use cellshard_synth::{SynthCompression, SynthConfig, encode_png, render_channel};

/// Options of `cellshard-bench synth-site`.
#[derive(clap::Args)]
pub struct SynthSiteArgs {
    /// Image side in pixels (raw RxRx1: 2048).
    #[arg(long, default_value_t = 2048)]
    pub size: u32,
    /// Sites to make; the figures are per site, the best of these.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

/// Render and encode the six channels of one site, and print each step's time.
pub fn synth_site(a: &SynthSiteArgs) -> Result<()> {
    let cfg = SynthConfig {
        size: a.size,
        bit_depth: 16,
        compression: SynthCompression::Default,
        ..SynthConfig::default()
    };
    let site = SiteMetadata {
        cell_type: "HUVEC".into(),
        dataset: Some("train".into()),
        experiment: "HUVEC-01".into(),
        plate: 1,
        well: "B03".into(),
        site: Some(1),
        well_type: "treatment".into(),
        sirna_id: Some(1),
        extra: vec![],
    };
    let mut best = f64::MAX;
    for round in 0..a.repeat.max(1) {
        let t0 = Instant::now();
        let mut bytes = 0;
        for channel in 1..=6 {
            let t = Instant::now();
            let img = render_channel(&cfg, &site, channel);
            let render = t.elapsed();
            let png = encode_png(&cfg, &img)?;
            if round == 0 {
                println!(
                    "channel {channel}: render {:.0} ms, encode {:.0} ms, {} bytes",
                    render.as_secs_f64() * 1e3,
                    (t.elapsed() - render).as_secs_f64() * 1e3,
                    png.len()
                );
            }
            bytes += png.len();
        }
        let secs = t0.elapsed().as_secs_f64();
        best = best.min(secs);
        if round == 0 {
            println!("site: {bytes} bytes of PNG");
        }
    }
    println!(
        "one {size}x{size} 16-bit site on one thread: {best:.2} s (best of {})",
        a.repeat.max(1),
        size = a.size
    );
    Ok(())
}
