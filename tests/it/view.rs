//! Pictures of the store are the stored tensors: a rendered composite's pixels are
//! recomputed here from the tensor bytes, with the colours written out independently.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use cellshard_sql::AsOf;

/// RxRx1 viewer colours and display maxima (rxrx1-utils), channels 1..6.
const COLOURS: [[f64; 3]; 6] = [
    [19.0, 0.0, 249.0],
    [42.0, 255.0, 31.0],
    [255.0, 0.0, 25.0],
    [45.0, 255.0, 252.0],
    [250.0, 0.0, 253.0],
    [254.0, 255.0, 40.0],
];
const MAXES: [f64; 6] = [51.0, 107.0, 64.0, 191.0, 89.0, 191.0];

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "clamped to 0..=255 first"
)]
fn expected(
    t: &[u8],
    h: usize,
    w: usize,
    channels: &[usize],
    x: usize,
    y: usize,
    f: usize,
) -> [u8; 3] {
    let mut rgb = [0f64; 3];
    for &c in channels {
        // Box mean of f x f source pixels (f = 1 at full size).
        let mut sum = 0.0;
        for yy in y * f..(y + 1) * f {
            for xx in x * f..(x + 1) * f {
                sum += f64::from(t[(c - 1) * h * w + yy * w + xx]);
            }
        }
        let v = (sum / (f * f) as f64 / MAXES[c - 1]).min(1.0);
        for k in 0..3 {
            rgb[k] += v * COLOURS[c - 1][k];
        }
    }
    rgb.map(|v| v.round().clamp(0.0, 255.0) as u8)
}

fn decode(png_bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

#[tokio::test]
async fn a_rendered_composite_equals_an_independent_computation_from_the_stored_tensor() {
    let (_dir, store) = crate::slt::fixture_store().await;
    let session = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
        .await
        .unwrap();
    let id = "HUVEC-01_1_B02_1";
    // The tensor as plain bytes, its shape from the row's own columns.
    let batches: Vec<RecordBatch> = session
        .ctx
        .sql(&format!(
            "SELECT channels, height, width, dtype, CAST(tensor AS BYTEA) AS t FROM sites WHERE site_id = '{id}'"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let b = &batches[0];
    let int = |i: usize| usize::try_from(b.column(i).as_primitive::<Int32Type>().value(0)).unwrap();
    let (c, h, w) = (int(0), int(1), int(2));
    let dtype = arrow::compute::cast(b.column(3), &arrow::datatypes::DataType::Utf8).unwrap();
    assert_eq!((c, dtype.as_string::<i32>().value(0)), (6, "uint8"));
    let t = arrow::compute::cast(b.column(4), &arrow::datatypes::DataType::Binary).unwrap();
    let t = t.as_binary::<i32>().value(0).to_vec();
    assert_eq!(t.len(), c * h * w);

    let site = cellshard_view::data::site(&session, id).await.unwrap();
    let all: Vec<usize> = (1..=6).collect();
    // The brightest pixel of channel 2, and corners and middle.
    let plane2 = &t[h * w..2 * h * w];
    let hot = plane2
        .iter()
        .enumerate()
        .max_by_key(|(_, v)| **v)
        .map(|(i, _)| i)
        .unwrap();
    let points = [(0, 0), (w - 1, h - 1), (w / 2, h / 3), (hot % w, hot / w)];
    for (channels, f) in [
        (all.clone(), 1),
        (vec![2], 1),
        (vec![1, 2, 5], 1),
        (all.clone(), 2),
    ] {
        let size = w / f;
        let png_bytes =
            cellshard_view::render::composite(&site, &channels, size, Default::default())
                .unwrap()
                .png()
                .unwrap();
        let (pw, ph, rgb) = decode(&png_bytes);
        assert_eq!((pw, ph), (size, size));
        for &(x, y) in &points {
            let (x, y) = (x / f, y / f);
            let got = [
                rgb[(y * pw + x) * 3],
                rgb[(y * pw + x) * 3 + 1],
                rgb[(y * pw + x) * 3 + 2],
            ];
            assert_eq!(
                got,
                expected(&t, h, w, &channels, x, y, f),
                "pixel ({x}, {y}) of channels {channels:?} at {size} px"
            );
        }
    }
    // The picture is not blank: the brightest ConA pixel shows green.
    let (x, y) = (hot % w, hot / w);
    assert!(expected(&t, h, w, &[2], x, y, 1)[1] > 0);
}

/// A plate whose wells are RxRx3 addresses (`AD27`, `AF48`) is stored, and its heatmap is
/// the 32 x 48 grid of a 1536-well plate with those wells coloured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1536_well_plate_renders_a_32_by_48_heatmap() {
    use cellshard_core::plate::PlateFormat;
    use cellshard_view::render;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let loc =
        cellshard_store::Location::parse(&raw.display().to_string(), &BTreeMap::new()).unwrap();
    let cfg = cellshard_synth::SynthConfig {
        plates: 1,
        ..crate::tiny_synth(8)
    };
    cellshard_synth::write_dataset(loc.store.clone(), &loc.prefix, &crate::design(), &cfg, None)
        .await
        .unwrap();
    // The design's wells, renamed to addresses only a 1536-well plate has.
    let csv = std::fs::read_to_string(raw.join("metadata.csv")).unwrap();
    let mut wells: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(6).unwrap().to_string())
        .collect();
    wells.sort();
    wells.dedup();
    let new: Vec<&str> = ["AD27", "AF48", "Q01", "B02"][..wells.len()].to_vec();
    let plate_dir = raw.join("train/HUVEC-01/Plate1");
    let mut csv = csv;
    for (old, new) in wells.iter().zip(&new) {
        for f in std::fs::read_dir(&plate_dir).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if let Some(rest) = name.strip_prefix(&format!("{old}_")) {
                std::fs::rename(f.path(), plate_dir.join(format!("{new}_{rest}"))).unwrap();
            }
        }
        csv = csv
            .replace(&format!("_{old}"), &format!("_{new}"))
            .replace(&format!(",{old},"), &format!(",{new},"));
    }
    std::fs::write(raw.join("metadata.csv"), csv).unwrap();
    let store = dir.path().join("store").display().to_string();
    let source = raw.display().to_string();
    let s = crate::run(
        crate::pipeline("tiny.toml"),
        &source,
        &[format!("{source}/metadata.csv")],
        &store,
        2,
    )
    .await;
    assert_eq!(s.sites.stored, 2 * wells.len() as u64, "{s:?}");
    let session = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
        .await
        .unwrap();
    let stat = cellshard_view::stat::Stat::parse("mean").unwrap();
    let values = cellshard_view::data::plate_map(&session.ctx, "HUVEC-01", 1, stat, 1)
        .await
        .unwrap();
    assert_eq!(values.keys().cloned().collect::<Vec<_>>(), {
        let mut n: Vec<String> = new.iter().map(|s| s.to_string()).collect();
        n.sort();
        n
    });
    let canvas = render::plate("HUVEC-01", 1, stat, "w1 Hoechst", &values);
    let f = PlateFormat::W1536;
    let (x, y, w, h) = render::well_cell_of(f, 31, 47);
    assert!(
        x + w <= canvas.width && y + h <= canvas.height,
        "not a 32 x 48 grid"
    );
    let range = render::range_of(&values);
    for well in &new {
        let (r, c) = cellshard_core::plate::well_position(well).unwrap();
        let (x, y, w, h) = render::well_cell_of(f, r, c);
        let want = cellshard_view::colormap::viridis(render::scaled(values[*well], range));
        assert_eq!(canvas.get(x + w / 2, y + h / 2), want, "{well}");
    }
}

/// `synth --dataset rxrx3`: a 1536-well plate in RxRx3's layout and metadata dialect
/// ingests (every metadata column kept, SMILES with its commas), and its heatmap is the
/// 32 x 48 grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synthetic_rxrx3_plate_ingests_and_draws_on_1536_wells() {
    use cellshard_core::plate::PlateFormat;
    use cellshard_synth::rxrx3::{RXRX3_LAYOUT, rxrx3_design};
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw").display().to_string();
    let loc = cellshard_store::Location::parse(&raw, &BTreeMap::new()).unwrap();
    let cfg = cellshard_synth::SynthConfig {
        experiments: None,
        plates: 1,
        wells: Some(50),
        sites: 1,
        layout: RXRX3_LAYOUT.into(),
        ..crate::tiny_synth(9)
    };
    let r = cellshard_synth::write_dataset(
        loc.store.clone(),
        &loc.prefix,
        &rxrx3_design(1).unwrap(),
        &cfg,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.sites, 50);
    let mut p = crate::pipeline("tiny.toml");
    p.source.layout = RXRX3_LAYOUT.into();
    let store = dir.path().join("store").display().to_string();
    let s = crate::run(p, &raw, &[format!("{raw}/metadata.csv")], &store, 2).await;
    assert_eq!((s.sites.stored, s.sites.rejected), (50, 0), "{s:?}");
    let smiles = crate::strings(
        &crate::sql(
            &store,
            "SELECT DISTINCT \"SMILES\" FROM sites WHERE perturbation_type = 'COMPOUND'",
        )
        .await,
        0,
    );
    assert!(
        !smiles.is_empty() && smiles.iter().all(|s| s.contains(',')),
        "{smiles:?}"
    );
    let session = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
        .await
        .unwrap();
    let stat = cellshard_view::stat::Stat::parse("mean").unwrap();
    let values = cellshard_view::data::plate_map(&session.ctx, "gene-001", 1, stat, 1)
        .await
        .unwrap();
    assert_eq!(values.len(), 50);
    assert_eq!(
        PlateFormat::containing(values.keys().map(String::as_str)),
        PlateFormat::W1536
    );
    let canvas = cellshard_view::render::plate("gene-001", 1, stat, "w1 Hoechst", &values);
    let (x, y, w, h) = cellshard_view::render::well_cell_of(PlateFormat::W1536, 31, 47);
    assert!(x + w <= canvas.width && y + h <= canvas.height);
}
