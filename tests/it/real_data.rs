//! The 40 real RxRx1 PNGs through `rxrx1-release.toml`, with both metadata dialects.

use crate::*;

fn images() -> String {
    test_data().join("images").display().to_string()
}

fn decode8(path: &str) -> Vec<u16> {
    let bytes = std::fs::read(path).unwrap();
    let mut d = png::Decoder::new(std::io::Cursor::new(&bytes[..]));
    d.set_transformations(png::Transformations::IDENTITY);
    let mut r = d.read_info().unwrap();
    let mut buf = vec![0u8; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height, info.bit_depth),
        (512, 512, png::BitDepth::Eight)
    );
    buf[..info.buffer_size()]
        .iter()
        .map(|&b| u16::from(b))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pngs_store_complete_sites_and_reject_incomplete_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let md = design_file();
    let s = run(pipeline("rxrx1-release.toml"), &images(), &[md], &store, 2).await;

    assert_eq!(s.objects.discovered, 40);
    assert_eq!(s.objects.stored, 24);
    assert_eq!(s.objects.rejected, 16);
    assert_eq!(s.objects.ignored, 0);
    assert_eq!(
        (s.sites.discovered, s.sites.stored, s.sites.rejected),
        (8, 4, 4)
    );
    assert_eq!(s.rejects_by_reason.get("missing_channels"), Some(&16));
    assert_eq!(s.plates, 4);

    let rows = sql(
        &store,
        "SELECT site_id, reason, message, object_path FROM rejects ORDER BY object_path",
    )
    .await;
    let ids = strings(&rows, 0);
    let msgs = strings(&rows, 2);
    assert_eq!(ids.len(), 16);
    for (id, msg) in ids.iter().zip(&msgs) {
        assert!(id.ends_with("_1_B02_2"), "{id}");
        assert!(msg.contains("missing channels w5, w6"), "{msg}");
    }
    assert!(strings(&rows, 1).iter().all(|r| r == "missing_channels"));

    let rows = sql(
        &store,
        "SELECT site_id, cell_type, well_type, channels, height, width, dtype, source_paths[1], tensor FROM sites ORDER BY site_id",
    )
    .await;
    let ids = strings(&rows, 0);
    assert_eq!(
        ids,
        [
            "HEPG2-01_1_B02_1",
            "HUVEC-01_1_B02_1",
            "RPE-01_1_B02_1",
            "U2OS-01_1_B02_1"
        ]
    );
    assert_eq!(strings(&rows, 1), ["HEPG2", "HUVEC", "RPE", "U2OS"]);
    assert!(strings(&rows, 2).iter().all(|w| w == "negative_control"));
    assert!(strings(&rows, 3).iter().all(|v| v == "6"));
    assert!(
        strings(&rows, 4)
            .iter()
            .zip(strings(&rows, 5))
            .all(|(h, w)| h == "512" && w == "512")
    );
    assert!(strings(&rows, 6).iter().all(|v| v == "uint8"));
    let tensors = binaries(&rows, 8);
    let firsts = strings(&rows, 7);
    for (tensor, first) in tensors.iter().zip(&firsts) {
        assert_eq!(tensor.len(), 6 * 512 * 512);
        // Each plate holds one complete site, so the plate statistics are that site's.
        for ch in 1..=6 {
            let path = first.replace("_w1.png", &format!("_w{ch}.png"));
            let px = decode8(&path);
            let expect = reference_normalize(std::slice::from_ref(&px), 0.1, 99.9, &px);
            let got = &tensor[(ch - 1) * 512 * 512..ch * 512 * 512];
            assert!(
                got == &expect[..],
                "{path}: stored channel differs from the per-plate normalization"
            );
        }
    }

    let stats = sql(
        &store,
        "SELECT count(*), min(pixel_count), max(site_count) FROM plate_stats",
    )
    .await;
    assert_eq!(strings(&stats, 0), ["24"]);
    assert_eq!(strings(&stats, 1), [(512 * 512).to_string()]);
    assert_eq!(strings(&stats, 2), ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaggle_metadata_dialect_gives_the_same_sites() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let k = test_data().join("kaggle");
    let md: Vec<String> = ["train.csv", "train_controls.csv"]
        .iter()
        .map(|f| k.join(f).display().to_string())
        .collect();
    let s = run(pipeline("rxrx1-release.toml"), &images(), &md, &store, 1).await;
    assert_eq!((s.sites.stored, s.objects.rejected), (4, 16));
    let rows = sql(
        &store,
        "SELECT site_id, cell_type, dataset, well_type, sirna_id FROM sites ORDER BY site_id",
    )
    .await;
    assert_eq!(
        strings(&rows, 0),
        [
            "HEPG2-01_1_B02_1",
            "HUVEC-01_1_B02_1",
            "RPE-01_1_B02_1",
            "U2OS-01_1_B02_1"
        ]
    );
    assert_eq!(strings(&rows, 1), ["HEPG2", "HUVEC", "RPE", "U2OS"]);
    assert!(strings(&rows, 2).iter().all(|d| d == "train"));
    assert!(strings(&rows, 3).iter().all(|d| d == "negative_control"));
    assert!(strings(&rows, 4).iter().all(|d| d == "1138"));
}
