#!/usr/bin/env bash
# Training reads: cellshard against LitData, WebDataset, MosaicML Streaming and Lance, from the
# same rows, in one run (not part of CI; about 40 minutes the first time, 15 after).
# Usage (from the repository root): bash tests/bench/feed_compare.sh [WORK] [-- ARGS...]
# Renders 2 synthetic plates (1,232 sites, 512x512 16-bit), ingests them into three stores
# (tensor_codec zstd, lz4, none), installs the peers (and torch) from PyPI into
# target/benchenv, then runs tests/bench/feed_compare.py over them. PROFILE=release for the
# release build. ARGS go to feed_compare.py (e.g. --rounds 1, --only litdata).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=target/feed-compare
if [ $# -gt 0 ] && [ "$1" != "--" ]; then work=$1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
profile=${PROFILE:-dev}
cargo build --quiet --profile "$profile" -p cellshard-cli
bin=target/$([ "$profile" = dev ] && echo debug || echo "$profile")/cellshard
mkdir -p "$work"
if [ ! -f "$work/raw/metadata.csv" ]; then
  "$bin" synth --out "$work/raw" --plates 2 --size 512 >/dev/null
fi
stores=()
for codec in zstd lz4 none; do
  cat >"$work/$codec.toml" <<TOML
name = "feed-compare-$codec"
description = "512x512 16-bit synthetic sites to 6x512x512 uint8, tensor codec $codec"

[source]
url = "$work/raw"
channels = 6

[metadata]
urls = ["$work/raw/metadata.csv"]

[[stages]]
kind = "decode"
bit_depth = 16
width = 512
height = 512

[[stages]]
kind = "normalize"

[sink]
url = "$work/store-$codec"
zstd_level = 1
tensor_codec = "$codec"
row_group_size = "32MiB"
target_file_size = "256MiB"
TOML
  # Incremental: plates already stored are skipped, a run cut short is finished.
  "$bin" run --incremental "$work/$codec.toml" >/dev/null
  stores+=(--store "$codec=$work/store-$codec")
done
py=target/benchenv/bin/python
if ! "$py" -c "import litdata, webdataset, streaming, lance, torch" >/dev/null 2>&1; then
  python3 -m venv target/benchenv
  "$py" -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
fi
MATURIN_PEP517_ARGS="--profile $profile --strip" "$py" -m pip install --quiet \
  --disable-pip-version-check ./crates/cellshard-python
"$py" tests/bench/feed_compare.py "$work" "${stores[@]}" "$@"
