//! TIFF input: files written by an independent encoder (`tifffile`, with each compression,
//! predictor, strips and tiles, 8 and 16 bits) decode to the pixels `tifffile` reads back;
//! bad TIFFs are rejected with the PNG path's reasons; and a plate of TIFF copies of the
//! synthetic PNGs ingests to the very same tensors.

use std::collections::BTreeMap;

use cellshard_core::ImageFormat;
use cellshard_stages::DecodeSpec;
use cellshard_stages::png::DecodeErrorKind;

use crate::*;

/// Run `tests/python/tiffs.py` into `dir`; its manifest.
fn write_tiffs(dir: &Path) -> serde_json::Value {
    let out = std::process::Command::new(crate::interop::python())
        .arg(repo().join("tests/python/tiffs.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tiffs.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn spec(bits: u8) -> DecodeSpec {
    DecodeSpec {
        bit_depth: bits,
        width: None,
        height: None,
        max_pixels: 1 << 20,
    }
}

#[test]
fn tiffs_of_every_compression_and_layout_decode_to_tifffiles_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_tiffs(dir.path());
    let good = manifest["good"].as_array().unwrap();
    assert_eq!(good.len(), 24, "{manifest}");
    for f in good {
        let name = f["file"].as_str().unwrap();
        let bits = u8::try_from(f["bits"].as_u64().unwrap()).unwrap();
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        let want: Vec<u16> = std::fs::read(dir.path().join(format!("{name}.u16")))
            .unwrap()
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        let plane = cellshard_stages::tiff::decode_full(&bytes, &spec(bits))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((plane.width, plane.height), (45, 37), "{name}");
        assert_eq!(plane.data, want, "{name}");
        // The decode stage: auto picks TIFF by the extension, and the transform equals
        // downsample then crop of the full image.
        let t = cellshard_stages::image::decode_transformed(
            &bytes,
            name,
            ImageFormat::Auto,
            &spec(bits),
            2,
            Some(16),
        )
        .unwrap();
        let full = cellshard_stages::plane::Plane::new(45, 37, want);
        let expect = cellshard_stages::crop::center_crop(
            &cellshard_stages::downsample::downsample(&full, 2),
            16,
        );
        assert_eq!(t, expect, "{name}");
        // A 16-bit pipeline refuses an 8-bit TIFF (and the other way) by its header.
        let other = if bits == 8 { 16 } else { 8 };
        let e = cellshard_stages::tiff::decode_full(&bytes, &spec(other)).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Format, "{name}: {e}");
    }
    // Too many pixels for the spec is refused before decoding.
    let bytes = std::fs::read(dir.path().join("g16-none-p1-strips.tif")).unwrap();
    let small = DecodeSpec {
        max_pixels: 100,
        ..spec(16)
    };
    let e = cellshard_stages::tiff::decode_full(&bytes, &small).unwrap_err();
    assert!(e.message.contains("over the limit"), "{e}");
    eprintln!(
        "tiff: {} files from tifffile {}",
        good.len(),
        manifest["tifffile"]
    );
}

#[test]
fn bad_tiffs_get_the_png_paths_reject_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_tiffs(dir.path());
    for f in manifest["bad"].as_array().unwrap() {
        let name = f["file"].as_str().unwrap();
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        let e = cellshard_stages::image::decode_transformed(
            &bytes,
            name,
            ImageFormat::Auto,
            &spec(16),
            1,
            None,
        )
        .unwrap_err();
        let reason = match e.kind {
            DecodeErrorKind::Corrupt => "decode_error",
            DecodeErrorKind::Format => "unexpected_format",
        };
        assert_eq!(reason, f["reason"].as_str().unwrap(), "{name}: {e}");
    }
}

/// The tiny synthetic plates with every PNG replaced by a TIFF copy (LZW, predictor, as
/// `tifffile` writes them): `format = "auto"` ingests them to byte-identical tensors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plate_of_tiffs_ingests_to_the_tensors_of_its_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let loc =
        cellshard_store::Location::parse(&raw.display().to_string(), &BTreeMap::new()).unwrap();
    cellshard_synth::write_dataset(
        loc.store.clone(),
        &loc.prefix,
        &design(),
        &tiny_synth(5),
        None,
    )
    .await
    .unwrap();
    // The PNGs' samples come from the `png` crate; tifffile writes them as LZW TIFFs with
    // the horizontal predictor, in one Python process.
    let tif = dir.path().join("tif");
    let mut jobs = Vec::new();
    for entry in walk(&raw) {
        let rel = entry.strip_prefix(&raw).unwrap().to_path_buf();
        let target = tif.join(&rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        if rel.extension().is_some_and(|e| e == "png") {
            let (w, h, samples) = read_png16(&entry);
            let raw_path = target.with_extension("u16");
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            std::fs::write(&raw_path, bytes).unwrap();
            jobs.push(serde_json::json!([
                raw_path,
                w,
                h,
                target.with_extension("tif")
            ]));
        } else {
            std::fs::copy(&entry, &target).unwrap();
        }
    }
    let mut child = std::process::Command::new(crate::interop::python())
        .arg("-c")
        .arg(
            "import json, os, sys, numpy as np, tifffile\n\
             for raw, w, h, out in json.load(sys.stdin):\n\
             \x20   a = np.fromfile(raw, dtype='<u2').reshape(h, w)\n\
             \x20   tifffile.imwrite(out, a, compression='lzw', predictor=2, photometric='minisblack')\n\
             \x20   os.remove(raw)\n",
        )
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::Value::from(jobs).to_string().as_bytes())
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    let tiff_pipeline = |p: Pipeline| -> Pipeline {
        let mut stages = p.stages.list().to_vec();
        if let Some(cellshard_core::Stage::Decode { format, .. }) = stages.first_mut() {
            *format = ImageFormat::Auto;
        }
        let mut p = Pipeline {
            stages: cellshard_core::pipeline::Stages::new(stages).unwrap(),
            ..p
        };
        p.source.layout = p.source.layout.replace(".png", ".tif");
        p
    };
    let (png_store, tif_store) = (dir.path().join("s-png"), dir.path().join("s-tif"));
    let raw_s = raw.display().to_string();
    let tif_s = tif.display().to_string();
    let a = run(
        pipeline("tiny.toml"),
        &raw_s,
        &[format!("{raw_s}/metadata.csv")],
        &png_store.display().to_string(),
        2,
    )
    .await;
    let b = run(
        tiff_pipeline(pipeline("tiny.toml")),
        &tif_s,
        &[format!("{tif_s}/metadata.csv")],
        &tif_store.display().to_string(),
        2,
    )
    .await;
    assert_eq!((a.sites.stored, b.sites.stored), (12, 12), "{b:?}");
    let q = "SELECT site_id, tensor FROM sites ORDER BY site_id";
    let (x, y) = (
        sql(&png_store.display().to_string(), q).await,
        sql(&tif_store.display().to_string(), q).await,
    );
    assert_eq!(strings(&x, 0), strings(&y, 0));
    assert_eq!(
        binaries(&x, 1),
        binaries(&y, 1),
        "tensors from TIFFs differ"
    );
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A 16-bit grayscale PNG's samples, by the `png` crate.
fn read_png16(path: &Path) -> (u32, u32, Vec<u16>) {
    let mut r = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()))
        .read_info()
        .unwrap();
    let mut buf = vec![0u8; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let samples = buf[..info.buffer_size()]
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect();
    (info.width, info.height, samples)
}
