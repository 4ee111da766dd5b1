//! A plate's fingerprint: everything that determines what its build stores, hashed.
//!
//! Inputs: the plate's source objects (key, size, ETag; every object listed for the plate,
//! including those that end up rejected), the metadata each of its sites resolves to, the
//! pipeline's semantics (layout, channels, stages, tensor ZSTD level: the pipeline hash),
//! the sink's file settings, the illumination function files (key, size, ETag) when the
//! pipeline reads them, and [`PIXEL_SEMANTICS`]. Two runs that agree on all of these
//! store the same rows and tensor bytes, so an incremental run can skip a plate whose
//! committed fingerprint equals the one it computes, without reading a pixel.
//!
//! The store records the fingerprint with the plate's `sites` commit as a Delta
//! application transaction (`txn` action, app id `cellshard/plate/{experiment}/{plate}`),
//! whose version field holds the fingerprint's first 63 bits: the log keeps the latest
//! `txn` per app id in the table snapshot, so looking a plate up reads no data file, and it
//! is committed in the same transaction as the files it describes.

use std::collections::BTreeMap;

use cellshard_core::metadata::Lookup;
use cellshard_core::{MetadataTable, Pipeline, PlateKey, SiteKey};
use sha2::{Digest, Sha256};

use crate::discover::SiteInputs;

/// Version of the pixel semantics of decode, downsample, crop, normalize and stack. Change
/// it whenever the same inputs and pipeline would give other tensor bytes, so incremental
/// runs rebuild every plate.
pub const PIXEL_SEMANTICS: u32 = 1;

/// An illumination function file: its key, and its size and ETag when it exists.
pub type IllumFile = (String, Option<(u64, Option<String>)>);

/// The fingerprint of `plate` (see the module docs), as a non-negative `i64`.
/// `illum_files` are the plate's illumination function files, for `source = "files"`.
pub fn plate_fingerprint(
    pipeline: &Pipeline,
    plate: &PlateKey,
    sites: &BTreeMap<SiteKey, SiteInputs>,
    metadata: &MetadataTable,
    illum_files: &[IllumFile],
) -> i64 {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"cellshard plate fingerprint");
    field(&PIXEL_SEMANTICS.to_le_bytes());
    field(pipeline.hash().as_bytes());
    field(&pipeline.sink.row_group_size.bytes().to_le_bytes());
    field(&pipeline.sink.target_file_size.bytes().to_le_bytes());
    field(plate.experiment.as_bytes());
    field(&plate.plate.to_le_bytes());
    for (key, inputs) in sites {
        field(key.site_id().as_bytes());
        field(inputs.dataset.as_deref().unwrap_or("").as_bytes());
        match metadata.lookup(key) {
            Lookup::Found(m) => {
                field(b"found");
                field(m.cell_type.as_bytes());
                field(m.dataset.as_deref().unwrap_or("\0").as_bytes());
                field(m.well_type.as_bytes());
                field(&m.sirna_id.map_or(i64::MIN, i64::from).to_le_bytes());
                for v in &m.extra {
                    field(v.as_deref().unwrap_or("\0").as_bytes());
                }
            }
            Lookup::Missing => field(b"missing"),
            Lookup::Conflict(why) => {
                field(b"conflict");
                field(why.as_bytes());
            }
        }
        for (channel, objects) in &inputs.channels {
            field(&channel.to_le_bytes());
            for o in objects {
                field(o.path.as_ref().as_bytes());
                field(&o.size.to_le_bytes());
                field(o.etag.as_deref().unwrap_or("\0").as_bytes());
            }
        }
    }
    for (key, meta) in illum_files {
        field(b"illumination");
        field(key.as_bytes());
        match meta {
            Some((size, etag)) => {
                field(&size.to_le_bytes());
                field(etag.as_deref().unwrap_or("\0").as_bytes());
            }
            None => field(b"missing"),
        }
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::ObjectRef;

    fn inputs(etag: &str) -> BTreeMap<SiteKey, SiteInputs> {
        let key = SiteKey {
            experiment: "HUVEC-01".into(),
            plate: 1,
            well: "B02".into(),
            site: 1,
        };
        let mut s = SiteInputs::default();
        s.channels.insert(
            1,
            vec![ObjectRef {
                path: "raw/HUVEC-01/Plate1/B02_s1_w1.png".into(),
                display: "raw/HUVEC-01/Plate1/B02_s1_w1.png".into(),
                size: 10,
                etag: Some(etag.into()),
            }],
        );
        BTreeMap::from([(key, s)])
    }

    #[test]
    fn the_fingerprint_moves_with_objects_metadata_and_pipeline_only() {
        let p = Pipeline::from_toml(
            "tiny.toml",
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../pipelines/tiny.toml"
            ))
            .unwrap(),
        )
        .unwrap();
        let plate = PlateKey {
            experiment: "HUVEC-01".into(),
            plate: 1,
        };
        let mut meta = MetadataTable::new();
        let csv = "experiment,plate,well,site,well_type,sirna_id\nHUVEC-01,1,B02,1,treatment,7\n";
        meta.add_csv("m.csv", csv.as_bytes()).unwrap();
        let a = plate_fingerprint(&p, &plate, &inputs("e1"), &meta, &[]);
        assert!(a >= 0);
        assert_eq!(a, plate_fingerprint(&p, &plate, &inputs("e1"), &meta, &[]));
        assert_ne!(a, plate_fingerprint(&p, &plate, &inputs("e2"), &meta, &[]));
        let mut other = MetadataTable::new();
        other
            .add_csv("m.csv", csv.replace(",7", ",8").as_bytes())
            .unwrap();
        assert_ne!(a, plate_fingerprint(&p, &plate, &inputs("e1"), &other, &[]));
        let mut q = p.clone();
        q.sink.zstd_level += 1;
        assert_ne!(a, plate_fingerprint(&q, &plate, &inputs("e1"), &meta, &[]));
        // Where the store is is not what it stores.
        let mut r = p.clone();
        r.sink.url = "elsewhere".into();
        assert_eq!(a, plate_fingerprint(&r, &plate, &inputs("e1"), &meta, &[]));
    }
}
