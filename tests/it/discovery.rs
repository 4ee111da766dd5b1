//! Discovery edge cases over an in-memory bucket: every object is stored, rejected with a
//! reason, or ignored, and the run says which.

use std::collections::BTreeMap;

use crate::*;

fn png16(seed: u16) -> bytes::Bytes {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, 16, 16);
        e.set_color(png::ColorType::Grayscale);
        e.set_depth(png::BitDepth::Sixteen);
        let px: Vec<u8> = (0..256u16)
            .flat_map(|i| (i.wrapping_mul(seed) % 4000 + 100).to_be_bytes())
            .collect();
        e.write_header().unwrap().write_image_data(&px).unwrap();
    }
    bytes::Bytes::from(out)
}

const PIPELINE: &str = r#"
name = "edge"
[source]
url = "memory://edge/raw"
[metadata]
urls = ["memory://edge/raw/metadata.csv"]
[[stages]]
kind = "decode"
bit_depth = 16
width = 16
height = 16
[[stages]]
kind = "normalize"
[sink]
url = "memory://edge/store"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_is_stored_rejected_or_ignored() {
    let raw = cellshard_store::Location::parse("memory://edge/raw", &BTreeMap::new()).unwrap();
    let mut keys: Vec<String> = Vec::new();
    for well in ["B02", "B03"] {
        for ch in 1..=6 {
            keys.push(format!("train/EXP-1/Plate1/{well}_s1_w{ch}.png"));
        }
    }
    // Incomplete site: channels 1-4 only.
    for ch in 1..=4 {
        keys.push(format!("train/EXP-1/Plate1/B04_s1_w{ch}.png"));
    }
    // Duplicate: the same site and channel under two datasets.
    for ch in 1..=6 {
        keys.push(format!("train/EXP-1/Plate1/B05_s1_w{ch}.png"));
    }
    keys.push("test/EXP-1/Plate1/B05_s1_w3.png".into());
    // A complete site plus a seventh channel.
    for ch in 1..=7 {
        keys.push(format!("train/EXP-1/Plate1/B06_s1_w{ch}.png"));
    }
    // A complete site with no metadata row.
    for ch in 1..=6 {
        keys.push(format!("train/EXP-1/Plate1/Z99_s1_w{ch}.png"));
    }
    // A value out of range, and keys outside the layout.
    keys.push("train/EXP-1/Plate1234567890/B02_s1_w1.png".into());
    keys.push("train/EXP-1/Plate1/notes.txt".into());
    keys.push("README".into());
    for (i, k) in keys.iter().enumerate() {
        raw.put(k, png16(u16::try_from(i).unwrap() + 3))
            .await
            .unwrap();
    }
    let md = "experiment,plate,well,site,well_type,cell_type\n\
              EXP-1,1,B02,1,negative_control,HEPG2\nEXP-1,1,B03,1,treatment,HEPG2\nEXP-1,1,B04,1,treatment,HEPG2\n\
              EXP-1,1,B05,1,treatment,HEPG2\nEXP-1,1,B06,1,treatment,HEPG2\n";
    raw.put("metadata.csv", bytes::Bytes::from(md))
        .await
        .unwrap();

    let p = Pipeline::from_toml("edge.toml", PIPELINE).unwrap();
    let s = cellshard_runtime::run(RunOptions {
        threads: 2,
        ..RunOptions::new(p)
    })
    .await
    .unwrap();

    let total = keys.len() as u64 + 1;
    assert_eq!(s.objects.discovered, total);
    assert_eq!(s.objects.ignored, 3, "{:?}", s.ignored_by_reason); // notes.txt, README, metadata.csv
    assert_eq!(s.objects.stored, 18); // B02, B03, B06 (w1..w6)
    assert_eq!(
        s.objects.stored + s.objects.rejected + s.objects.ignored,
        total
    );
    let by = &s.rejects_by_reason;
    assert_eq!(by.get("missing_channels"), Some(&4));
    assert_eq!(by.get("duplicate_channel"), Some(&7));
    assert_eq!(by.get("channel_out_of_range"), Some(&1));
    assert_eq!(by.get("no_metadata"), Some(&6));
    assert_eq!(by.get("invalid_key"), Some(&1));
    assert_eq!((s.sites.stored, s.sites.rejected), (3, 3));

    let store = "memory://edge/store";
    let rows = sql(
        store,
        "SELECT reason, count(*) FROM rejects GROUP BY reason ORDER BY reason",
    )
    .await;
    assert_eq!(
        strings(&rows, 0),
        [
            "channel_out_of_range",
            "duplicate_channel",
            "invalid_key",
            "missing_channels",
            "no_metadata"
        ]
    );
    assert_eq!(strings(&rows, 1), ["1", "7", "1", "4", "6"]);
    let rows = sql(
        store,
        "SELECT message FROM rejects WHERE reason = 'invalid_key'",
    )
    .await;
    assert!(
        strings(&rows, 0)[0].contains("Plate1234567890"),
        "{:?}",
        strings(&rows, 0)
    );
    let rows = sql(
        store,
        "SELECT message FROM rejects WHERE reason = 'duplicate_channel' LIMIT 1",
    )
    .await;
    let msg = &strings(&rows, 0)[0];
    assert!(
        msg.contains("more than one file for channel w3")
            && msg.contains("test/EXP-1/Plate1/B05_s1_w3.png"),
        "{msg}"
    );
    let rows = sql(
        store,
        "SELECT site_id, cell_type FROM sites ORDER BY site_id",
    )
    .await;
    assert_eq!(
        strings(&rows, 0),
        ["EXP-1_1_B02_1", "EXP-1_1_B03_1", "EXP-1_1_B06_1"]
    );
    assert!(strings(&rows, 1).iter().all(|c| c == "HEPG2"));
}
