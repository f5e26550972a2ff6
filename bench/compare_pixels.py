#!/usr/bin/env python3
"""Compares takedown's decoded pixels with Pillow's, sample for sample.

Usage: compare_pixels.py DUMP_BIN {pytx,rgb} IMAGE...

DUMP_BIN is the `dump` example of takedown-image. For the `pytx` policy the reference
samples are python-threatexchange's (numpy.asarray of the opened image, LA and I;16
converted to RGB, 2-D arrays stacked, extra channels dropped); for `rgb` they are
Pillow's `convert("RGB")`. Exits non-zero if any image differs.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def reference(path, policy):
    im = Image.open(path)
    if policy == "rgb":
        return np.asarray(im.convert("RGB"))
    if im.mode in ("LA", "I;16"):
        im = im.convert("RGB")
    a = np.asarray(im)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype != np.uint8 or a.shape[2] < 3:
        return np.asarray(im.convert("RGB"))
    return a[:, :, :3]


def read_pnm(path):
    data = path.read_bytes()
    parts = data.split(b"\n", 3)
    w, h = map(int, parts[1].split())
    return np.frombuffer(parts[3], dtype=np.uint8).reshape(h, w, 3)


def main():
    dump, policy, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([dump, policy, tmp, *images], capture_output=True, text=True)
        if out.stdout:
            print(out.stdout, end="")
        for i, path in enumerate(images):
            pnm = Path(tmp) / f"{i}.pnm"
            try:
                ref = reference(path, policy)
            except Exception as e:  # Pillow cannot open it: takedown must fail too.
                status = "both fail" if not pnm.exists() else f"Pillow fails ({e}), takedown decodes"
                print(f"{status}: {path}")
                bad += pnm.exists()
                continue
            if not pnm.exists():
                print(f"DIFF takedown fails, Pillow decodes: {path}")
                bad += 1
                continue
            got = read_pnm(pnm)
            if got.shape != ref.shape:
                print(f"DIFF shape {got.shape} vs {ref.shape}: {path}")
                bad += 1
                continue
            d = np.abs(got.astype(int) - ref.astype(int))
            if d.max() == 0:
                print(f"same: {path}")
            else:
                bad += 1
                print(f"DIFF {np.count_nonzero(d) / d.size:.2%} samples, max {d.max()}: {path}")
    print(f"{len(images) - bad} identical or both failing, {bad} different")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
