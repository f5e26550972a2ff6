#!/usr/bin/env python3
"""Reference side of bench/hash_e2e.sh: file to PDQ hash with Pillow + PyPI pdqhash,
the python-threatexchange way, on N worker processes.

Usage: hash_e2e.py make-corpus SRC_DIR OUT_DIR COUNT
       hash_e2e.py run DIR PROCESSES
"""
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image


def pdq_file(path):
    a = np.asarray(Image.open(path))
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    bits, quality = pdqhash.compute(a)
    return "%064x" % int("".join(map(str, bits)), 2), quality


def make_corpus(src, out, count):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in Path(src).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    sources = [Image.open(p).convert("RGB") for p in sources]
    for i in range(count):
        im = sources[i % len(sources)]
        # Rescale to about 1600x1000 with a varying crop and quality, so files differ.
        w, h = im.size
        dx, dy = (i * 7) % max(1, w // 10), (i * 5) % max(1, h // 10)
        im2 = im.crop((dx, dy, w - dx // 2, h - dy // 2)).resize((1600 - i % 8, 1000 + i % 6))
        im2.save(out / f"img{i:04d}.jpg", quality=75 + i % 20)


def run(directory, processes):
    files = sorted(str(p) for p in Path(directory).iterdir())
    t = time.perf_counter()
    if processes == 1:
        results = [pdq_file(f) for f in files]
    else:
        with Pool(processes) as pool:
            results = pool.map(pdq_file, files, chunksize=4)
    dt = time.perf_counter() - t
    print(f"{len(results)} {dt:.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "make-corpus":
        make_corpus(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        run(sys.argv[2], int(sys.argv[3]))
