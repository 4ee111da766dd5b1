#!/usr/bin/env bash
# Training reads, cellshard vs MosaicML Streaming vs Lance, on one store (not part of CI).
# Usage (from the repository root): bash tests/bench/feed_compare.sh STORE [WORK]
# Installs the three (and torch, which Streaming needs) from PyPI into target/benchenv.
set -euo pipefail
cd "$(dirname "$0")/../.."
store=${1:?usage: feed_compare.sh STORE [WORK]}
work=${2:-target/feed-compare}
py=target/benchenv/bin/python
if ! "$py" -c "import streaming, lance, torch" >/dev/null 2>&1; then
  python3 -m venv target/benchenv
  "$py" -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
fi
# The dev profile, as the tests build it (zstd's C is optimised in every profile).
MATURIN_PEP517_ARGS="--profile dev --strip" "$py" -m pip install --quiet \
  --disable-pip-version-check ./crates/cellshard-python
"$py" tests/bench/feed_compare.py "$store" "$work"
