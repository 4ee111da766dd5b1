//! Any bytes as a metadata CSV: never a panic; bad rows are collected, not fatal.
#![no_main]

use cellshard_core::MetadataTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut t = MetadataTable::new();
    let _ = t.add_csv("fuzz/train.csv", data);
    for row in t.rows() {
        assert!(!row.experiment.is_empty());
    }
});
