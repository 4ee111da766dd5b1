//! `cellshard-bench ingest` end to end at a tiny size: pool, hard-linked plate layout, decode
//! ceilings, two pipeline runs in child processes, the report and its JSON.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn bench_measures_ceiling_and_pipeline() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_cellshard-bench"))
        .args([
            "ingest", "--size", "64", "--pool", "2", "--plates", "1", "--wells", "3",
        ])
        .args(["--ceiling-sites", "2", "--cache"])
        .arg(dir.path().join("cache"))
        .arg("--json")
        .arg(&json)
        .current_dir(&repo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("decode only"), "{stdout}");
    assert!(stdout.contains("of the decode ceiling"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = report["pipeline"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    for run in runs {
        // Three wells of two sites, every one stored; the run reports its own peak RSS.
        assert_eq!(run["sites"], 6, "{run}");
        assert!(run["peak_rss_bytes"].as_u64().unwrap() > 0, "{run}");
    }
    assert_eq!(run_threads(&runs[0]), 1);
    let ceilings = report["ceiling"].as_array().unwrap();
    assert!(ceilings.iter().any(|c| c["decoder"] == "crop-aware"));
    assert!(ceilings.iter().any(|c| c["decoder"] == "png-rows"));
    // The ceiling is measured again after the pipeline runs, at each thread count.
    let before = ceilings
        .iter()
        .filter(|c| c["decoder"] == "crop-aware")
        .count();
    let after = ceilings
        .iter()
        .filter(|c| c["decoder"] == "crop-aware-after")
        .count();
    assert!(before >= 1 && after == before, "{report}");
    // The inflate-only limit is measured at the same thread counts as the decoder (how the
    // two compare is timing, and not asserted).
    let inflate: Vec<_> = ceilings
        .iter()
        .filter(|c| c["decoder"] == "inflate-only")
        .collect();
    assert_eq!(inflate.len(), before, "{report}");
    assert!(
        inflate.iter().all(|c| c["sites"].as_u64() > Some(0)),
        "{report}"
    );
    assert!(stdout.contains("libdeflate alone"), "{stdout}");
    assert!(stdout.contains("again after the pipeline runs"), "{stdout}");
    // A second run reuses the cached pool and layout.
    let again = Command::new(env!("CARGO_BIN_EXE_cellshard-bench"))
        .args([
            "ingest", "--size", "64", "--pool", "2", "--plates", "1", "--wells", "3",
        ])
        .args(["--ceiling-sites", "2", "--one-core-plates", "0", "--cache"])
        .arg(dir.path().join("cache"))
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("rendering"));
}

fn run_threads(run: &serde_json::Value) -> u64 {
    run["threads"].as_u64().unwrap()
}
