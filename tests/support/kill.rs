//! Killing a process at a named point of its work. The process runs with
//! `CELLSHARD_PAUSE_AT=point`; when it gets there it prints `cellshard: paused at ...` on
//! standard error and waits, and then it gets SIGKILL, as a crash or a preempted machine
//! would stop it.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Start `cmd` paused at `point`, kill it once it says it paused, and return the line it
/// said (`cellshard: paused at POINT...`). Panics with everything it printed if it ends,
/// or does not pause within two minutes.
pub fn kill_when_paused(mut cmd: Command, point: &str) -> String {
    let mut child = cmd
        .env("CELLSHARD_PAUSE_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("cellshard: paused at") {
                let _ = tx.send(Ok(line));
                return;
            }
            seen.push(line);
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    let got = rx.recv_timeout(Duration::from_secs(120));
    child.kill().unwrap();
    child.wait().unwrap();
    match got {
        Ok(Ok(line)) => line,
        other => panic!("{point}: the process never paused there: {other:?}"),
    }
}
