#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
# Usage (from the repository root): bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

# Other readers of the store for tests/it/interop.rs: pyarrow, DuckDB and numpy from PyPI,
# pytest for the Python package, PyYAML and hadolint for the deploy/ checks (pinned in tests/python/requirements.txt),
# in a virtualenv under target/, plus deltalake where it installs.
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 (3.9 or newer, with venv) is required for the interop test" >&2
  exit 1
fi
py=target/pyenv/bin/python
if ! "$py" -c "import pyarrow, duckdb, polars, tifffile, imagecodecs, numpy, yaml, pytest, copairs" >/dev/null 2>&1 || [ ! -x target/pyenv/bin/hadolint ]; then
  mkdir -p target
  python3 -m venv target/pyenv
  "$py" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
if ! "$py" -c "import deltalake" >/dev/null 2>&1; then
  "$py" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements-optional.txt \
    || echo "note: the deltalake Python package did not install; the interop test reads without it (and fails under CI=true)" >&2
fi
export CELLSHARD_PYTHON="$PWD/$py"

# Headless Chromium (Debian's package) for the viewer's browser tests; where it cannot be
# installed, those tests print why and skip.
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null 2>&1 \
      || { $sudo apt-get update -qq >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null 2>&1; } \
      || echo "note: Debian's chromium did not install; the browser tests will be skipped (and fail under CI=true)" >&2
  else
    echo "note: no apt-get to install chromium; the browser tests will be skipped (and fail under CI=true)" >&2
  fi
fi

# The Python package of the training feed (crates/cellshard-python), built by maturin in
# the dev profile so it shares target/ with the tests; users install a release build.
mkdir -p target
maturin_log=target/maturin-build.log
if ! MATURIN_PEP517_ARGS="--profile dev --strip" "$py" -m pip install -v \
  --disable-pip-version-check ./crates/cellshard-python >"$maturin_log" 2>&1; then
  tail -n 40 "$maturin_log" >&2
  exit 1
fi

# One profile for everything (see [profile.dev] in Cargo.toml); two test threads on a
# 2-core machine. Every test target, then the examples in the API docs.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
RUST_TEST_THREADS=2 cargo test --workspace --all-targets --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
RUST_TEST_THREADS=2 cargo test --workspace --doc --locked --no-fail-fast 2>&1 | tee -a "$log"
doc_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$doc_status
set -e

# The stack is compiled once: the test build may compile the workspace's crates, pyo3
# (built against the interpreter maturin chose) and test-only crates, nothing maturin's
# build of the package already compiled (crates/cellshard-hack keeps the features equal).
compiled() { grep -oE 'Compiling [A-Za-z0-9_-]+ v[0-9][^ ]*' "$1" | awk '{print $2"@"$3}' | sort -u; }
twice=$(comm -12 <(compiled "$maturin_log") <(compiled "$log") \
  | grep -vE '^(cellshard-[a-z-]+|pyo3[a-z-]*|numpy)@' || true)
if [ -n "$twice" ]; then
  echo "error: the test build compiled again what maturin's build compiled:" $twice >&2
  status=1
fi
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
