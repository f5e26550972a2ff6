#!/usr/bin/env bash
# The main job, end to end, on the embedded SQLite store:
#   1. builds the release binary;
#   2. fetches public IP-to-AS and IP-to-country data if it is missing;
#   3. runs `takedown demo`: a sinkhole behind a simulated PROXY-protocol load
#      balancer, the ingest pipeline, and a replayed botnet over loopback,
#      then a summary of what the store now holds;
#   4. hashes a folder of test images with PDQ.
#
#   scripts/quickstart.sh [--bots N]
#
# The demo uses its own data directory, $DEMO_DATA (default
# target/demo-data), never your real one; its store is wiped at each run,
# its enrichment data kept.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
data="${DEMO_DATA:-$repo/target/demo-data}"
bin="${CARGO_TARGET_DIR:-$repo/target}/release/takedown"

echo "==> Building the release binary"
# libjpeg's SIMD kernels need nasm at build time; they decode the same pixels
# as the portable C code, about twice as fast.
features=()
if command -v nasm >/dev/null 2>&1; then
  features=(--features takedown-image/simd)
fi
cargo build --release -p takedown "${features[@]}"

mkdir -p "$data"
if ! ls "$data"/enrich/*.csv >/dev/null 2>&1; then
  echo "==> Fetching enrichment data into $data/enrich"
  if command -v npm >/dev/null 2>&1; then
    scripts/fetch-enrichment.sh "$data" ||
      echo "warning: fetching enrichment data failed; networks will show as unknown" >&2
  else
    echo "warning: npm is not installed, so no enrichment data; networks will show as unknown" >&2
    echo "         (install npm and rerun, or run scripts/fetch-enrichment.sh $data)" >&2
  fi
fi

echo "==> Running the demo (data in $data)"
rm -f "$data"/takedown.db "$data"/takedown.db-wal "$data"/takedown.db-shm
"$bin" --data "$data" demo "$@"

images="$repo/../shared/testdata/pdq/data/bridge-mods"
if [ -d "$images" ]; then
  echo
  echo "==> Hashing test images with PDQ (hash,quality,path)"
  "$bin" --data "$data" hash "$images" | head -n 12
else
  echo
  echo "(No test images found at $images; hash your own with: $bin hash DIR)"
fi
