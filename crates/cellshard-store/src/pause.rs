//! Named points where a test can stop the process to kill it there.
//!
//! With `CELLSHARD_PAUSE_AT=NAME` (or `NAME#K`, the K-th time the point is reached, from
//! 1), the process says `cellshard: paused at NAME#K` on stderr when it gets there and
//! waits to be killed. Unset, a point costs one environment lookup the first time.
//! The points: `after-listing`, `in-phase1` (a plate's first site decoded), `in-phase2`
//! (a shard file's first row group encoded), `before-publish`, and the publish steps
//! [`crate::publish::PAUSE_POINTS`].

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

fn target() -> &'static Option<(String, u32)> {
    static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
    TARGET.get_or_init(|| {
        let v = std::env::var("CELLSHARD_PAUSE_AT").ok()?;
        Some(match v.split_once('#') {
            Some((name, k)) => (name.to_string(), k.parse().unwrap_or(1)),
            None => (v, 1),
        })
    })
}

/// Whether reaching `name` now is the pause the environment asks for.
fn reached(name: &str) -> bool {
    let Some((want, k)) = target() else {
        return false;
    };
    if want != name {
        return false;
    }
    static SEEN: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let n = seen.entry(name.to_string()).or_default();
    *n += 1;
    *n == *k
}

/// Stop here for good if the environment names this point (see the module docs).
pub async fn point(name: &str) {
    if reached(name) {
        let k = target().as_ref().map_or(1, |t| t.1);
        eprintln!("cellshard: paused at {name}#{k}");
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    }
}
