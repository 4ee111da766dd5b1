//! Replicate mean average precision in SQL (`replicate_map`): on vectors whose per-well
//! phenotype is known, phenotype wells score well above the others and significantly; with
//! the vectors shuffled across sites, scores fall to chance; and every group's mAP equals
//! the `copairs` package's on the same vectors, to 1e-6.

use std::collections::BTreeMap as Map;

use cellshard_store::Location;
use cellshard_store::embeddings::write_embeddings;

use crate::*;

/// A deterministic standard-normal-ish draw (sum of uniforms).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        (0..12).map(|_| self.uniform()).sum::<f32>() - 6.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_map_finds_the_phenotypes_and_equals_copairs() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let mut cfg = tiny_synth(5);
    cfg.plates = 1;
    cfg.wells = Some(60);
    cfg.sites = 2;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&raw).unwrap();
    cellshard_synth::write_dataset(
        std::sync::Arc::new(store),
        &object_store::path::Path::from(""),
        &design(),
        &cfg,
        None,
    )
    .await
    .unwrap();
    let url = dir.path().join("store").display().to_string();
    let md = vec![raw.join("metadata.csv").display().to_string()];
    run(
        pipeline("tiny.toml"),
        &raw.display().to_string(),
        &md,
        &url,
        2,
    )
    .await;

    let b = sql(
        &url,
        "SELECT site_id, well, well_type FROM sites ORDER BY site_id",
    )
    .await;
    let (ids, wells, types) = (strings(&b, 0), strings(&b, 1), strings(&b, 2));
    let treatment_wells: Vec<String> = {
        let mut w: Vec<String> = wells
            .iter()
            .zip(&types)
            .filter(|(_, t)| *t == "treatment")
            .map(|(w, _)| w.clone())
            .collect();
        w.dedup();
        w
    };
    let phenotype: Vec<&String> = treatment_wells.iter().step_by(2).collect();
    let controls = types.iter().filter(|t| *t != "treatment").count();
    assert!(controls >= 3 && phenotype.len() >= 5, "{controls} controls");
    let dim = 32;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let direction: Map<&String, Vec<f32>> = phenotype
        .iter()
        .map(|w| (*w, (0..dim).map(|_| 1.2 * rng.normal()).collect()))
        .collect();
    let mut vectors = Vec::with_capacity(ids.len() * dim);
    for w in &wells {
        let base = direction.get(w);
        for d in 0..dim {
            vectors.push(rng.normal() + base.map_or(0.0, |b| b[d]));
        }
    }
    let root = Location::parse(&url, &BTreeMap::new()).unwrap();
    write_embeddings(&root, "pheno", &ids, dim, &vectors)
        .await
        .unwrap();
    // The shuffled control: the treatment sites' vectors dealt to other sites.
    let treated: Vec<usize> = (0..ids.len())
        .filter(|&i| types[i] == "treatment")
        .collect();
    let mut shuffled = vectors.clone();
    for (k, &i) in treated.iter().enumerate() {
        let j = treated[(k * 7 + 3) % treated.len()];
        shuffled[i * dim..(i + 1) * dim].copy_from_slice(&vectors[j * dim..(j + 1) * dim]);
    }
    write_embeddings(&root, "shuffled", &ids, dim, &shuffled)
        .await
        .unwrap();

    let query = |model: &str| {
        format!(
            "SELECT \"group\", mean_average_precision, p_value, corrected_p_value, sites FROM replicate_map('embeddings', '{model}', 'well', 'well_type <> ''treatment''', 2000) ORDER BY \"group\""
        )
    };
    let b = sql(&url, &query("pheno")).await;
    let groups = strings(&b, 0);
    let map: Vec<f64> = strings(&b, 1).iter().map(|v| v.parse().unwrap()).collect();
    let p: Vec<f64> = strings(&b, 2).iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(groups.len(), treatment_wells.len());
    let mean = |pick: &dyn Fn(&String) -> bool, v: &[f64]| {
        let x: Vec<f64> = groups
            .iter()
            .zip(v)
            .filter(|(g, _)| pick(g))
            .map(|(_, v)| *v)
            .collect();
        x.iter().sum::<f64>() / x.len() as f64
    };
    let is_pheno = |g: &String| phenotype.contains(&g);
    let (pheno_map, other_map) = (mean(&is_pheno, &map), mean(&|g| !is_pheno(g), &map));
    assert!(
        pheno_map > other_map + 0.4,
        "phenotype {pheno_map:.3}, others {other_map:.3}"
    );
    let significant = groups
        .iter()
        .zip(&p)
        .filter(|(g, p)| is_pheno(g) && **p < 0.05)
        .count();
    assert!(
        significant * 10 >= phenotype.len() * 8,
        "{significant} of {} significant",
        phenotype.len()
    );
    let b = sql(&url, &query("shuffled")).await;
    let shuffled_map: f64 = strings(&b, 1)
        .iter()
        .map(|v| v.parse::<f64>().unwrap())
        .sum::<f64>()
        / b.iter().map(|b| b.num_rows()).sum::<usize>() as f64;
    assert!(
        (shuffled_map - other_map).abs() < 0.15 && shuffled_map < pheno_map - 0.3,
        "shuffled {shuffled_map:.3}, no phenotype {other_map:.3}, phenotype {pheno_map:.3}"
    );
    eprintln!(
        "mAP: phenotype wells {pheno_map:.3}, others {other_map:.3}, shuffled {shuffled_map:.3}; {significant}/{} significant",
        phenotype.len()
    );

    // copairs on the same vectors.
    let file = dir.path().join("vectors.parquet");
    {
        use arrow::array::{BooleanArray, Float64Builder, ListBuilder, StringArray};
        let mut lists = ListBuilder::new(Float64Builder::new());
        for v in vectors.chunks_exact(dim) {
            v.iter()
                .for_each(|x| lists.values().append_value(f64::from(*x)));
            lists.append(true);
        }
        let batch = arrow::record_batch::RecordBatch::try_from_iter(vec![
            (
                "group",
                std::sync::Arc::new(StringArray::from(wells.clone())) as arrow::array::ArrayRef,
            ),
            (
                "is_control",
                std::sync::Arc::new(BooleanArray::from(
                    types.iter().map(|t| t != "treatment").collect::<Vec<_>>(),
                )),
            ),
            ("vector", std::sync::Arc::new(lists.finish())),
        ])
        .unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&file).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let out = std::process::Command::new(crate::interop::python())
        .arg(repo().join("tests/python/copairs_map.py"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "copairs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Map<String, f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["group"].as_str().unwrap().to_string(),
                v["mean_average_precision"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(theirs.len(), groups.len(), "{theirs:?}");
    for (g, m) in groups.iter().zip(&map) {
        assert!(
            (theirs[g] - m).abs() < 1e-6,
            "{g}: ours {m}, copairs {}",
            theirs[g]
        );
    }
}
