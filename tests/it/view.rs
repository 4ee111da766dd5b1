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
