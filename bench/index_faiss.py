"""faiss peer for the index benchmark: same data, same queries, one thread.

Reads DIR/base.u8, DIR/queries.u8 and DIR/planted.txt written by the Rust
bench (bench_index --out DIR) and times IndexBinaryFlat and
IndexBinaryMultiHash(256, 16 tables, 16 bits) with nflip=1, the setup HMA
uses, answering "distance <= 31" as range_search(radius=32) (faiss's radius
is exclusive). Prints one RESULT line of JSON per index.
"""

import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def run(kind, base, queries, planted, nq):
    r0 = rss()
    t = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexBinaryFlat(256)
    else:
        index = faiss.IndexBinaryMultiHash(256, 16, 16)
        index.nflip = 1
    index.add(base)
    build = time.perf_counter() - t
    mem = rss() - r0
    n = base.shape[0]
    res = {"kind": kind, "n": n, "queries": nq, "build_s": round(build, 3),
           "rss_bytes_per_hash": round(mem / n, 1)}
    for label, sel in (("q1", "one"), ("q8", "eight")):
        lat = []
        found = 0
        cpu0 = time.thread_time()
        wall0 = time.perf_counter()
        for i in range(nq):
            tr, pos = planted[i]
            q = queries[i, tr:tr + 1] if sel == "one" else queries[i]
            s = time.perf_counter()
            lims, _d, ids = index.range_search(q, 32)
            lat.append(time.perf_counter() - s)
            found += int(pos in set(ids.tolist()))
        wall = time.perf_counter() - wall0
        cpu = time.thread_time() - cpu0
        lat.sort()
        res[f"{label}_cpu_ms"] = round(cpu * 1e3 / nq, 5)
        res[f"{label}_mean_ms"] = round(wall * 1e3 / nq, 5)
        res[f"{label}_p50_ms"] = round(lat[len(lat) // 2] * 1e3, 5)
        res[f"{label}_p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, 5)
        res[f"{label}_recall_planted"] = round(found / nq, 4)
    print("RESULT " + json.dumps(res), flush=True)
    del index


def main():
    d = Path(sys.argv[1])
    nq_mih = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    nq_flat = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    faiss.omp_set_num_threads(1)
    base = np.fromfile(d / "base.u8", dtype=np.uint8).reshape(-1, 32)
    queries = np.fromfile(d / "queries.u8", dtype=np.uint8).reshape(-1, 8, 32)
    planted = [tuple(int(x) for x in line.split()) for line in open(d / "planted.txt")]
    nq_mih = min(nq_mih, len(planted))
    nq_flat = min(nq_flat, len(planted))
    run("multihash", base, queries, planted, nq_mih)
    run("flat", base, queries, planted, nq_flat)


if __name__ == "__main__":
    main()
