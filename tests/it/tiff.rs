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
/// `tifffile` writes them), under the PNGs' names and under Phenix names: `format = "auto"`
/// ingests both to byte-identical tensors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plate_of_tiffs_under_either_layout_ingests_to_the_tensors_of_its_pngs() {
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
    // The same TIFFs under a Phenix/Harmony name: rRRcCCfFFpPP-chNsk1fk1fl1.tiff (no
    // dataset directory), the well from its row and column, the site from its field.
    let phenix = dir.path().join("phenix");
    for entry in walk(&tif) {
        let rel = entry.strip_prefix(&tif).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let target = match parts.as_slice() {
            [_dataset, exp, plate, file] if file.ends_with(".tif") => {
                let (well, rest) = file.trim_end_matches(".tif").split_once("_s").unwrap();
                let (site, ch) = rest.split_once("_w").unwrap();
                let (r, c) = cellshard_core::plate::well_position(well).unwrap();
                let site: u32 = site.parse().unwrap();
                phenix.join(exp).join(plate).join(format!(
                    "r{:02}c{:02}f{site:02}p01-ch{ch}sk1fk1fl1.tiff",
                    r + 1,
                    c + 1
                ))
            }
            _ => phenix.join(rel),
        };
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    let phenix_pipeline = |p: Pipeline| -> Pipeline {
        let mut p = tiff_pipeline(p);
        p.source.layout =
            "{experiment}/Plate{plate}/r{row:02}c{col:02}f{field:02}p{plane:02}-ch{channel}sk1fk1fl1.tiff"
                .into();
        p
    };
    let stores = [
        dir.path().join("s-png"),
        dir.path().join("s-tif"),
        dir.path().join("s-phenix"),
    ];
    let sources = [&raw, &tif, &phenix].map(|p| p.display().to_string());
    let pipelines = [
        pipeline("tiny.toml"),
        tiff_pipeline(pipeline("tiny.toml")),
        phenix_pipeline(pipeline("tiny.toml")),
    ];
    let mut tensors = Vec::new();
    for ((p, source), store) in pipelines.into_iter().zip(&sources).zip(&stores) {
        let store = store.display().to_string();
        let s = run(p, source, &[format!("{source}/metadata.csv")], &store, 2).await;
        assert_eq!(
            (s.sites.stored, s.sites.rejected),
            (12, 0),
            "{source}: {s:?}"
        );
        let rows = sql(&store, "SELECT site_id, tensor FROM sites ORDER BY site_id").await;
        tensors.push((strings(&rows, 0), binaries(&rows, 1)));
    }
    assert_eq!(
        tensors[0], tensors[1],
        "tensors from TIFFs differ from the PNGs'"
    );
    assert_eq!(
        tensors[0], tensors[2],
        "tensors from Phenix-named TIFFs differ"
    );

    // Bad TIFFs in a run: one channel file of four sites replaced (cut short, RGB, float,
    // not a TIFF at all). Those sites are rejected with the PNG path's reasons, the other
    // eight are stored, and every object is accounted for.
    let bad = dir.path().join("bad");
    let mut by_site: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in walk(&tif) {
        let target = bad.join(entry.strip_prefix(&tif).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
        let name = target.file_name().unwrap().to_string_lossy().to_string();
        if let Some((site, _)) = name.split_once("_w") {
            let key = format!("{}/{site}", target.parent().unwrap().display());
            by_site.entry(key).or_insert(target);
        }
    }
    let made = write_tiffs(&dir.path().join("bad-tiffs"));
    assert_eq!(made["bad"].as_array().unwrap().len(), 4);
    let victims: Vec<PathBuf> = by_site.into_values().take(4).collect();
    let whole = std::fs::read(&victims[0]).unwrap();
    std::fs::write(&victims[0], &whole[..whole.len() / 2]).unwrap();
    for (v, name) in victims[1..]
        .iter()
        .zip(["rgb.tif", "float.tif", "not-a-tiff.tif"])
    {
        std::fs::copy(dir.path().join("bad-tiffs").join(name), v).unwrap();
    }
    let source = bad.display().to_string();
    let s = run(
        tiff_pipeline(pipeline("tiny.toml")),
        &source,
        &[format!("{source}/metadata.csv")],
        &dir.path().join("s-bad").display().to_string(),
        2,
    )
    .await;
    assert_eq!((s.sites.stored, s.sites.rejected), (8, 4), "{s:?}");
    let reasons: BTreeMap<&str, u64> = s
        .rejects_by_reason
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        reasons,
        // Objects: a rejected site's six channel files each carry its reason.
        BTreeMap::from([("decode_error", 12), ("unexpected_format", 12)]),
        "{s:?}"
    );
    assert_eq!(
        s.objects.stored + s.objects.rejected + s.objects.ignored,
        s.objects.discovered,
        "{}",
        s.conservation
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
