//! Tests of [`crate::table`]: racing creators and version ranges.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creators_racing_on_an_empty_store_make_one_table() {
    use arrow::datatypes::{DataType, Field};
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]));
    for round in 0..5 {
        let root = dir.path().join(format!("round{round}"));
        let loc = Location::parse(root.to_str().unwrap(), &BTreeMap::new()).unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (loc, schema) = (loc.clone(), schema.clone());
                tokio::spawn(
                    async move { open_or_create(&loc, "t", &schema, &[], Vec::new()).await },
                )
            })
            .collect();
        let mut ids = std::collections::BTreeSet::new();
        for t in tasks {
            let table = t.await.unwrap().unwrap();
            ids.insert(table.snapshot().unwrap().metadata().id().to_string());
        }
        assert_eq!(ids.len(), 1, "round {round}: tables {ids:?}");
        let commits = std::fs::read_dir(root.join("_delta_log"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count();
        assert_eq!(
            commits, 1,
            "round {round}: the CREATE was committed {commits} times"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Any requested version of a table at version 0 is opened (0), refused as invalid
    /// (negative) or not found (past it), never wrapped or searched for.
    #[test]
    fn any_version_is_opened_refused_or_not_found(
        v in proptest::prop_oneof![-2i64..=2, proptest::num::i64::ANY]
    ) {
        use arrow::datatypes::{DataType, Field};
        use cellshard_core::ErrorClass;
        use std::collections::BTreeMap;
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let loc = Location::parse(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]));
        rt.block_on(open_or_create(&loc, "t", &schema, &[], Vec::new())).unwrap();
        match (v, rt.block_on(open_table(&loc, Some(v)))) {
            (0, Ok(Some(t))) => proptest::prop_assert_eq!(t.version(), Some(0)),
            (v, Err(e)) if v < 0 => proptest::prop_assert_eq!(e.class(), ErrorClass::BadInput),
            (v, Err(e)) if v > 0 => proptest::prop_assert_eq!(e.class(), ErrorClass::NotFound),
            (v, other) => proptest::prop_assert!(false, "version {v}: {:?}", other.map(|t| t.map(|t| t.version()))),
        }
    }
}

#[test]
fn rows_per_group_divides_the_byte_target() {
    assert_eq!(rows_per_group(32 << 20, 6 * 512 * 512), 21);
    assert_eq!(rows_per_group(1, 6 * 512 * 512), 1);
}
