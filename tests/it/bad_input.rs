//! A messy bucket: every kind of bad input next to good sites. The run finishes, stores the
//! good sites exactly as a clean run would, and accounts for every object with a reason.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;

use crate::*;

const W: u32 = 16;

fn pixels(seed: u32) -> Vec<u16> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..W * W)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            u16::try_from(s % 5000 + 200).unwrap()
        })
        .collect()
}

fn encode(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    palette: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(depth);
        if let Some(p) = palette {
            e.set_palette(p);
        }
        e.write_header().unwrap().write_image_data(data).unwrap();
    }
    out
}

fn png16(seed: u32) -> Vec<u8> {
    let data: Vec<u8> = pixels(seed).iter().flat_map(|v| v.to_be_bytes()).collect();
    encode(
        W,
        W,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &data,
        None,
    )
}

fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut c = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    c
}

/// The same pixels as `png16(seed)`, Adam7-interlaced (written by hand: the png crate
/// cannot encode interlaced images), zlib with stored blocks.
fn interlaced16(seed: u32) -> Vec<u8> {
    let px = pixels(seed);
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in PASSES {
        let xs: Vec<u32> = (x0..W).step_by(dx as usize).collect();
        if xs.is_empty() {
            continue;
        }
        for y in (y0..W).step_by(dy as usize) {
            raw.push(0u8);
            for &x in &xs {
                raw.extend_from_slice(&px[(y * W + x) as usize].to_be_bytes());
            }
        }
    }
    let z = cellshard_synth::zlib_stored(&raw, 65_535);
    let mut ihdr = W.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&W.to_be_bytes());
    ihdr.extend_from_slice(&[16, 0, 0, 0, 1]);
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", &z));
    out.extend(chunk(b"IEND", &[]));
    out
}

fn bomb() -> Vec<u8> {
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[16, 0, 0, 0, 0]);
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    ));
    out.extend(chunk(b"IEND", &[]));
    out
}

fn seed(well: &str, ch: u32) -> u32 {
    well.bytes().fold(ch * 7919, |a, b| {
        a.wrapping_mul(31).wrapping_add(u32::from(b))
    })
}

fn put(root: &Path, key: &str, bytes: &[u8]) {
    let p = root.join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn good_site(root: &Path, plate: u32, well: &str) {
    for ch in 1..=6 {
        put(
            root,
            &format!("train/EXP-1/Plate{plate}/{well}_s1_w{ch}.png"),
            &png16(seed(well, ch)),
        );
    }
}

/// A complete site whose channel `bad_ch` is replaced by `bytes`.
fn site_with(root: &Path, well: &str, bad_ch: u32, bytes: &[u8]) {
    good_site(root, 1, well);
    put(
        root,
        &format!("train/EXP-1/Plate1/{well}_s1_w{bad_ch}.png"),
        bytes,
    );
}

const PIPELINE: &str = r#"
name = "bad-input"
[source]
url = "unused"
[metadata]
urls = ["unused"]
[[stages]]
kind = "decode"
bit_depth = 16
width = 16
height = 16
max_pixels = 1000000
[[stages]]
kind = "normalize"
reference = "negative_controls"
[sink]
url = "unused"
"#;

const METADATA_GOOD: &str = "experiment,plate,well,site,well_type,cell_type,note\n\
EXP-1,1,B02,1,negative_control,HUVEC,\n\
EXP-1,1,B03,1,treatment,HUVEC,\"a, quoted, note\"\n\
EXP-1,1,B04,1,treatment,HUVEC,\n\
EXP-1,1,B14,1,treatment,HUVEC,\n\
EXP-1,1,B17,1,treatment,HUVEC,\n";

fn metadata_messy() -> String {
    let mut m = METADATA_GOOD.to_string();
    for w in [
        "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B13", "B15", "B16", "B19", "B21",
    ] {
        m.push_str(&format!("EXP-1,1,{w},1,treatment,HUVEC,\n"));
    }
    m.push_str("EXP-1,1,B19,1,positive_control,HUVEC,\n"); // conflicts with the row above
    m.push_str("EXP-1,1\n"); // missing columns
    m.push_str("EXP-1,x,B30,1,treatment,HUVEC,\n"); // non-numeric plate
    for w in ["C02", "C03"] {
        m.push_str(&format!("EXP-1,2,{w},1,treatment,HUVEC,\n"));
    }
    for w in ["D02", "D03"] {
        m.push_str(&format!("EXP-1,3,{w},1,treatment,HUVEC,\n"));
    }
    m
}

async fn ingest(raw: &Path, md: &[PathBuf], store: &Path) -> RunSummary {
    let p = Pipeline::from_toml("bad-input.toml", PIPELINE).unwrap();
    cellshard_runtime::run(RunOptions {
        source: Some(raw.display().to_string()),
        metadata: md.iter().map(|m| m.display().to_string()).collect(),
        sink: Some(store.display().to_string()),
        threads: 2,
        ..RunOptions::new(p)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "byte patterns: each value wraps to its low byte"
)]
async fn a_messy_bucket_is_fully_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let good = png16(1);
    for well in ["B02", "B03", "B04"] {
        good_site(&raw, 1, well);
    }
    site_with(&raw, "B14", 1, &interlaced16(seed("B14", 1)));
    good_site(&raw, 1, "B17");
    put(&raw, "train/EXP-1/Plate1/B17_s1_w9.png", &good);
    site_with(&raw, "B05", 1, b"");
    site_with(&raw, "B06", 2, b"this is not a png at all");
    site_with(&raw, "B07", 3, &good[..good.len() / 2]);
    let mut crc = good.clone();
    let n = crc.len();
    crc[n - 20] ^= 0x55;
    site_with(&raw, "B08", 4, &crc);
    let eight: Vec<u8> = (0..W * W).map(|i| i as u8).collect();
    site_with(
        &raw,
        "B09",
        5,
        &encode(
            W,
            W,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &eight,
            None,
        ),
    );
    let big: Vec<u8> = (0..32 * 32 * 2).map(|i| i as u8).collect();
    site_with(
        &raw,
        "B10",
        6,
        &encode(
            32,
            32,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            &big,
            None,
        ),
    );
    site_with(&raw, "B11", 1, &bomb());
    let rgb: Vec<u8> = (0..W * W * 3).map(|i| i as u8).collect();
    site_with(
        &raw,
        "B12",
        1,
        &encode(W, W, png::ColorType::Rgb, png::BitDepth::Eight, &rgb, None),
    );
    site_with(
        &raw,
        "B13",
        1,
        &encode(
            W,
            W,
            png::ColorType::Indexed,
            png::BitDepth::Eight,
            &eight,
            Some(vec![0; 768]),
        ),
    );
    for ch in 1..=4 {
        put(&raw, &format!("train/EXP-1/Plate1/B15_s1_w{ch}.png"), &good);
    }
    good_site(&raw, 1, "B16");
    put(&raw, "train/EXP-1/Plate1/B16_s1_w2.PNG", &good);
    good_site(&raw, 1, "B19");
    good_site(&raw, 1, "B20");
    // A control character in a name is an invalid key (a '=' or '%' is not: names are
    // percent-encoded in partition paths).
    put(&raw, "train/EXP\u{7}1/Plate1/B02_s1_w1.png", &good);
    put(&raw, "train/EXP-1/Plate1/notes.txt", b"lab notes");
    put(&raw, "README.md", b"bucket readme");
    let odd = raw
        .join("train/EXP-1/Plate1")
        .join(std::ffi::OsStr::from_bytes(b"B\xff9_s1_w1.png"));
    std::fs::write(&odd, &good).unwrap();
    for well in ["C02", "C03"] {
        for ch in 1..=6 {
            put(
                &raw,
                &format!("train/EXP-1/Plate2/{well}_s1_w{ch}.png"),
                b"",
            );
        }
    }
    good_site(&raw, 3, "D02");
    good_site(&raw, 3, "D03");
    let md_dir = dir.path().join("md");
    put(&md_dir, "metadata.csv", metadata_messy().as_bytes());
    put(&md_dir, "empty.csv", b"");
    put(
        &md_dir,
        "header-only.csv",
        b"experiment,plate,well,site,well_type\n",
    );
    let md = vec![
        md_dir.join("metadata.csv"),
        md_dir.join("empty.csv"),
        md_dir.join("header-only.csv"),
    ];

    let store = dir.path().join("store");
    let s = ingest(&raw, &md, &store).await;
    let files_on_disk = files(&raw).len() as u64;

    // Conservation: every object on disk is stored, rejected or ignored.
    assert_eq!(s.objects.discovered, files_on_disk, "{s:#?}");
    assert_eq!(
        s.objects.stored + s.objects.rejected + s.objects.ignored,
        s.objects.discovered
    );
    assert_eq!(s.objects.stored, 30, "{s:#?}");
    assert_eq!(
        s.conservation,
        format!(
            "{files_on_disk} discovered = 30 stored + {} rejected + 2 ignored + 0 other workers' + 0 unselected + 0 unchanged",
            files_on_disk - 32
        )
    );
    assert_eq!(s.objects.ignored, 2, "{:?}", s.ignored_by_reason);
    let by = &s.rejects_by_reason;
    let expect: BTreeMap<&str, u64> = BTreeMap::from([
        ("channel_out_of_range", 1),
        ("decode_error", 24 + 12),
        ("duplicate_channel", 7),
        ("invalid_key", 2),
        ("metadata_conflict", 6),
        ("missing_channels", 4),
        ("no_metadata", 6),
        ("normalize_failed", 12),
        ("unexpected_format", 30),
        ("bad_metadata_row", 4),
    ]);
    let got: BTreeMap<&str, u64> = by.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(got, expect, "{s:#?}");
    assert_eq!(s.metadata_rows_without_images, 1);
    assert_eq!(s.sites.stored, 5);
    assert_eq!(s.exit_code(0.0), 3);
    assert_eq!(s.exit_code(1.0), 0);

    // Each reason says what is wrong with which file, in plain words.
    let store_s = store.display().to_string();
    let msg = |site: &str| {
        let q = format!("SELECT message FROM rejects WHERE site_id = '{site}' LIMIT 1");
        let store_s = store_s.clone();
        async move {
            strings(&sql(&store_s, &q).await, 0)
                .pop()
                .unwrap_or_default()
        }
    };
    for (site, file, words) in [
        ("EXP-1_1_B05_1", "B05_s1_w1.png", "empty"),
        ("EXP-1_1_B06_1", "B06_s1_w2.png", "not a PNG"),
        ("EXP-1_1_B07_1", "B07_s1_w3.png", "truncated"),
        ("EXP-1_1_B08_1", "B08_s1_w4.png", "CRC"),
        ("EXP-1_1_B09_1", "B09_s1_w5.png", "bit depth 8"),
        ("EXP-1_1_B10_1", "B10_s1_w6.png", "size 32x32"),
        ("EXP-1_1_B11_1", "B11_s1_w1.png", "100000x100000"),
        ("EXP-1_1_B12_1", "B12_s1_w1.png", "grayscale"),
        ("EXP-1_1_B13_1", "B13_s1_w1.png", "grayscale"),
        ("EXP-1_1_B15_1", "", "missing channels w5, w6"),
        ("EXP-1_1_B16_1", "B16_s1_w2.PNG", "more than one file"),
        ("EXP-1_1_B19_1", "", "conflicting metadata"),
        ("EXP-1_1_B20_1", "", "no metadata"),
        ("EXP-1_2_C02_1", "C02_s1_w1.png", "empty"),
        ("EXP-1_3_D02_1", "", "negative_controls"),
    ] {
        let m = msg(site).await;
        assert!(m.contains(file) && m.contains(words), "{site}: {m}");
    }
    let rows = sql(
        &store_s,
        "SELECT object_path FROM rejects WHERE reason = 'bad_metadata_row' ORDER BY object_path",
    )
    .await;
    let paths = strings(&rows, 0);
    assert!(paths.iter().any(|p| p.ends_with("empty.csv")), "{paths:?}");
    assert_eq!(
        paths.iter().filter(|p| p.contains("metadata.csv:")).count(),
        3,
        "{paths:?}"
    );
    let rows = sql(
        &store_s,
        "SELECT note FROM sites WHERE site_id = 'EXP-1_1_B03_1'",
    )
    .await;
    assert_eq!(strings(&rows, 0), ["a, quoted, note"]);

    // The good sites equal a run over a clean bucket holding only them.
    let clean = dir.path().join("clean");
    for well in ["B02", "B03", "B04", "B14", "B17"] {
        good_site(&clean, 1, well);
    }
    put(&md_dir, "clean.csv", METADATA_GOOD.as_bytes());
    let clean_store = dir.path().join("clean-store");
    let c = ingest(&clean, &[md_dir.join("clean.csv")], &clean_store).await;
    assert_eq!((c.sites.stored, c.objects.rejected), (5, 0));
    let q = "SELECT site_id, tensor FROM sites ORDER BY site_id";
    let a = sql(&store_s, q).await;
    let b = sql(&clean_store.display().to_string(), q).await;
    assert_eq!(strings(&a, 0), strings(&b, 0));
    assert_eq!(
        binaries(&a, 1),
        binaries(&b, 1),
        "good sites must not be affected by the bad ones"
    );
}
