#!/usr/bin/env bash
# Index benchmark, side by side with faiss on the same data in one run.
#
#   bench/index.sh [N] [QUERIES]      (defaults: 1000000 1000)
#
# Builds the Rust bench, generates N random hashes with one planted match at
# distance 20-31 per query, times takedown's index (1-hash and 8-hash
# dihedral queries), then faiss IndexBinaryMultiHash(256,16,16) nflip=1 and
# IndexBinaryFlat on the same files, and prints the ratios. All query timing
# is single-threaded. Creates .venv at the repo root with faiss-cpu and numpy.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
NQ="${2:-1000}"
NQ_FLAT="${NQ_FLAT:-20}"
WORK="${BENCH_DIR:-$(mktemp -d)}"
trap 'rm -rf "$WORK"' EXIT

[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c 'import faiss, numpy' 2>/dev/null; then
    .venv/bin/pip install --quiet faiss-cpu numpy
fi

cargo build --release --quiet -p takedown-index --example bench_index
BIN="${CARGO_TARGET_DIR:-target}/release/examples/bench_index"

echo "== takedown (n=$N, queries=$NQ)"
"$BIN" --n "$N" --queries "$NQ" --out "$WORK" | tee "$WORK/ours.txt"
rm -f "$WORK"/bench-*.tdx
echo "== faiss (multihash: $NQ queries, flat: $NQ_FLAT queries)"
OMP_NUM_THREADS=1 .venv/bin/python bench/index_faiss.py "$WORK" "$NQ" "$NQ_FLAT" | tee "$WORK/faiss.txt"

.venv/bin/python - "$WORK" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
def results(name):
    return [json.loads(l[7:]) for l in open(d / name) if l.startswith("RESULT ")]
ours = results("ours.txt")[0]
peers = {r["kind"]: r for r in results("faiss.txt")}
print("== ratios (faiss time / takedown time; CPU time per query)")
for kind, r in peers.items():
    for q in ("q1", "q8"):
        print(f"  {kind:9s} {q}: faiss {r[q + '_cpu_ms']:.4f} ms, takedown {ours[q + '_cpu_ms']:.4f} ms,"
              f" x{r[q + '_cpu_ms'] / ours[q + '_cpu_ms']:.1f}; recall faiss {r[q + '_recall_planted']}")
    print(f"  {kind:9s} memory: faiss {r['rss_bytes_per_hash']} B/hash, takedown {ours['rss_open_bytes_per_hash']} B/hash")
flat = peers.get("flat")
if flat:
    print("== takedown's own flat scan (the large-radius fallback) vs faiss IndexBinaryFlat")
    for q in ("q1", "q8"):
        mine = ours["flat" + q[1] + "_cpu_ms"]
        print(f"  flat scan {q}: faiss {flat[q + '_cpu_ms']:.2f} ms, takedown {mine:.2f} ms, x{flat[q + '_cpu_ms'] / mine:.2f}")
PY
