//! `cellshard export`: the selected rows, tensors included, as a new Delta table or plain
//! Parquet files, equal to what the store holds.

use std::collections::BTreeMap;

use cellshard_sql::AsOf;
use cellshard_sql::export::{ExportFormat, ExportOptions, export};
use datafusion::prelude::SessionContext;

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_delta_and_parquet_with_equal_tensors() {
    let (dir, store) = crate::slt::fixture_store().await;
    let session = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
        .await
        .unwrap();
    let q = "SELECT site_id, experiment, sirna_id, tensor FROM treatments ORDER BY site_id";
    let want = cellshard_sql::query(&session, q).await.unwrap();
    let want_ids = strings(&want, 0);
    let want_tensors = binaries(&want, 3);
    assert!(!want_ids.is_empty());

    // Delta, partitioned by experiment.
    let delta = dir.path().join("subset-delta").display().to_string();
    let mut opts = ExportOptions::new(&delta);
    opts.partition_by = vec!["experiment".into()];
    let s = export(&session, q, &opts).await.unwrap();
    assert_eq!(usize::try_from(s.rows).unwrap(), want_ids.len());
    assert_eq!(s.version, Some(1));
    assert!(s.files >= 2, "one file per experiment at least: {s:?}");
    let loc = cellshard_store::Location::parse(&delta, &BTreeMap::new()).unwrap();
    let table = cellshard_store::table::open_table(&loc, None)
        .await
        .unwrap()
        .unwrap();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let got = ctx
        .sql("SELECT site_id, tensor FROM t ORDER BY site_id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(strings(&got, 0), want_ids);
    assert!(
        binaries(&got, 1) == want_tensors,
        "Delta export tensors differ"
    );
    assert!(
        files(std::path::Path::new(&delta))
            .iter()
            .any(|p| p.display().to_string().contains("experiment=HUVEC-01")),
        "hive partition folders"
    );

    // Plain Parquet: flat files any reader opens, with the tensor field metadata.
    let pq = dir.path().join("subset-parquet");
    let mut opts = ExportOptions::new(pq.display().to_string());
    opts.format = ExportFormat::Parquet;
    let s = export(&session, q, &opts).await.unwrap();
    assert_eq!(
        (usize::try_from(s.rows).unwrap(), s.version),
        (want_ids.len(), None)
    );
    let mut ids = Vec::new();
    let mut tensors = Vec::new();
    for f in files(&pq) {
        let file = std::fs::File::open(&f).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let field = reader.schema().field_with_name("tensor").unwrap().clone();
        assert_eq!(
            field.metadata().get("cellshard.shape").map(String::as_str),
            Some("[6,64,64]")
        );
        let batches: Vec<_> = reader.build().unwrap().map(|b| b.unwrap()).collect();
        ids.extend(strings(&batches, 0));
        tensors.extend(binaries(&batches, 3));
    }
    assert_eq!(ids, want_ids);
    assert!(tensors == want_tensors, "Parquet export tensors differ");

    // Bad requests are refused with the reason.
    let e = export(&session, q, &opts).await.unwrap_err().to_string();
    assert!(e.contains("is not empty"), "{e}");
    let mut bad = ExportOptions::new(dir.path().join("x").display().to_string());
    bad.partition_by = vec!["nosuch".into()];
    let e = export(&session, q, &bad).await.unwrap_err().to_string();
    assert!(e.contains("partition column \"nosuch\""), "{e}");
}
