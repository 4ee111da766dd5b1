#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
# Usage (from the repository root): bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
if [ ! -f ../shared/data/rxrx1/metadata.csv ]; then
  echo "warning: ../shared/data/rxrx1 is missing; the real-data tests need it beside the repository" >&2
fi

# One profile for everything (see [profile.dev] in Cargo.toml); two jobs on a 2-core machine.
cargo test --workspace --locked -- --test-threads 2
