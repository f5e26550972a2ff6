#!/usr/bin/env bash
# End-to-end PDQ hashing throughput, file to hash: `takedown hash` against Pillow +
# PyPI pdqhash (the python-threatexchange pipeline), same files, 1 and 2 cores.
#
# Usage: bench/hash_e2e.sh [COUNT]   (default 200 JPEGs of about 1600x1000)
# Builds takedown in release mode, with libjpeg's SIMD kernels when `nasm` is present
# (set NO_SIMD=1 to measure the portable C build).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-200}
ROOT=$PWD
VENV=$ROOT/.venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import PIL, numpy, pdqhash" 2>/dev/null \
    || "$VENV/bin/pip" install --quiet pillow numpy pdqhash
PY=$VENV/bin/python

FEATURES=()
if command -v nasm >/dev/null && [ -z "${NO_SIMD:-}" ]; then
    FEATURES=(--features takedown-image/simd)
    SIMD="libjpeg SIMD (nasm)"
else
    SIMD="portable C libjpeg (no nasm)"
fi
cargo build --release -q -p takedown "${FEATURES[@]}"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/takedown

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SRC=${PDQ_TESTDATA:-$ROOT/../shared/testdata/pdq}/data
"$PY" bench/hash_e2e.py make-corpus "$SRC" "$WORK/corpus" "$COUNT"

# Same answers first: the benchmark compares equal work.
"$BIN" hash "$WORK/corpus" | cut -d, -f1,2 > "$WORK/ours.txt"
"$PY" - "$WORK/corpus" > "$WORK/theirs.txt" <<'PYEOF'
import sys, pathlib
sys.path.insert(0, "bench")
from hash_e2e import pdq_file
for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    h, q = pdq_file(p)
    print(f"{h},{q}")
PYEOF
if ! cmp -s "$WORK/ours.txt" "$WORK/theirs.txt"; then
    echo "hash mismatch between takedown and the reference" >&2
    exit 1
fi

echo "corpus: $COUNT JPEGs, about 1600x1000; takedown built with $SIMD"
echo "| cores | Pillow+pdqhash (img/s) | takedown (img/s) | ratio |"
echo "| --- | --- | --- | --- |"
for cores in 1 2; do
    best_py=0; best_td=0
    for _ in 1 2 3; do
        read -r n secs < <("$PY" bench/hash_e2e.py run "$WORK/corpus" "$cores")
        py=$(python3 -c "print($n / $secs)")
        start=$(date +%s.%N)
        RAYON_NUM_THREADS=$cores "$BIN" hash "$WORK/corpus" > /dev/null
        end=$(date +%s.%N)
        td=$(python3 -c "print($COUNT / ($end - $start))")
        best_py=$(python3 -c "print(max($best_py, $py))")
        best_td=$(python3 -c "print(max($best_td, $td))")
    done
    python3 -c "print(f'| $cores | {$best_py:.1f} | {$best_td:.1f} | {$best_td / $best_py:.2f}x |')"
done
