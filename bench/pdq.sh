#!/usr/bin/env bash
# Times PDQ hashing of decoded pixels: takedown against the reference C++ core
# (through the `pdqhash` Python binding), on identical synthetic buffers, in
# one run. Prints a table with ratios and checks that the hashes agree.
#
# Usage: bench/pdq.sh [REPS]        (default 30 repetitions per case)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${1:-30}"
SIZES=(1600x1004 512x512)

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import numpy, pdqhash' 2>/dev/null; then
    .venv/bin/pip install --quiet numpy pdqhash==0.2.8 pillow
fi

cargo build --quiet --release -p takedown-pdq --example bench_hash
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_hash"

out="$(mktemp)"
trap 'rm -f "$out"' EXIT

"$bin" "$REPS" "${SIZES[@]}" >>"$out"

.venv/bin/python - "$REPS" "${SIZES[@]}" >>"$out" <<'PY'
import statistics, sys, time
sys.path.insert(0, "crates/pdq/tests/data")
import pdqhash
from gen_golden import bits_to_hex, image

reps = int(sys.argv[1])
for size in sys.argv[2:]:
    w, h = map(int, size.split("x"))
    img = image("mix", w, h, 21)
    for op, fn, pick in (
        ("hash", pdqhash.compute, lambda r: r[0]),
        ("dihedral", pdqhash.compute_dihedral, lambda r: r[0][1]),
    ):
        fn(img)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            r = fn(img)
            times.append((time.perf_counter() - t) * 1e3)
        print(
            f"pdq_bench impl=reference case={size} op={op} "
            f"median_ms={statistics.median(times):.3f} min_ms={min(times):.3f} "
            f"hash={bits_to_hex(pick(r))}"
        )
PY

python3 - "$out" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("pdq_bench "):
        continue
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    rows[(kv["impl"], kv["case"], kv["op"])] = kv
print(f"{'case':<10} {'op':<9} {'reference ms':>14} {'takedown ms':>12} {'ratio (median)':>15} {'ratio (min)':>12} {'same hash':>10}")
for (impl, case, op), t in rows.items():
    if impl != "takedown":
        continue
    r = rows.get(("reference", case, op))
    if r is None:
        continue
    med = float(r["median_ms"]) / float(t["median_ms"])
    mn = float(r["min_ms"]) / float(t["min_ms"])
    same = "yes" if r["hash"] == t["hash"] else "NO"
    print(f"{case:<10} {op:<9} {float(r['median_ms']):>14.3f} {float(t['median_ms']):>12.3f} {med:>14.1f}x {mn:>11.1f}x {same:>10}")
PY
