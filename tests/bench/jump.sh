#!/usr/bin/env bash
# Ingest of a JUMP-shaped plate (1080x1080 16-bit TIFFs, 5 channels) with and without
# illumination correction, on 1 and 2 threads (not part of CI).
# Usage (from the repository root): bash tests/bench/jump.sh [WELLS] [WORK]
# WELLS wells of 2 fields (default 64: 128 sites, 1.5 GB of TIFFs). Dev profile by default;
# PROFILE=release for the release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
wells=${1:-64}
work=${2:-target/jump-bench}
profile=${PROFILE:-dev}
cargo build --quiet --profile "$profile" -p cellshard-cli
bin=target/$([ "$profile" = dev ] && echo debug || echo "$profile")/cellshard
rm -rf "$work" && mkdir -p "$work"
"$bin" synth --dataset jump --out "$work/raw" --wells "$wells" --sites 2 >/dev/null
sed -e "s#demo-out/jump-raw#$work/raw#g; s#demo-out/jump-store#$work/store#" \
  pipelines/jump-cpg0016.toml >"$work/illumination.toml"
# The same pipeline without its illumination stage.
python3 - "$work" <<'PY'
import re, sys
w = sys.argv[1]
s = open(f"{w}/illumination.toml").read()
s = re.sub(r'\[\[stages\]\]\nkind = "illumination"\nsource = "compute"\n\n', "", s)
open(f"{w}/plain.toml", "w").write(s.replace('name = "jump-cpg0016"', 'name = "jump-plain"'))
PY
echo "JUMP-shaped plate: $((wells * 2)) sites of 5 x 1080x1080 16-bit TIFFs, $profile profile, page cache warm"
printf '%-14s %7s %10s %8s %9s\n' pipeline threads sites/s cpu_s peak_MiB
for t in 1 2; do
  for p in plain illumination; do
    rm -rf "$work/store"
    "$bin" run "$work/$p.toml" --threads "$t" >"$work/$p-$t.json" 2>/dev/null
    python3 - "$work/$p-$t.json" "$p" "$t" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<14} {sys.argv[3]:>7} {s['sites_per_second']:>10.2f} {s['cpu_seconds']:>8.2f} "
      f"{s['peak_rss_bytes'] / 2**20:>9.0f}")
PY
  done
done
