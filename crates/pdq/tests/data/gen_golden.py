#!/usr/bin/env python3
"""Regenerates golden.jsonl: PDQ outputs of the reference core for synthetic images.

The pixels are not stored. Both this script and the Rust test derive them from a
counter-based SplitMix64 stream, so the fixture holds only sizes, seeds and the
reference outputs. Run with a Python that has numpy and pdqhash 0.2.8:

    python3 crates/pdq/tests/data/gen_golden.py > crates/pdq/tests/data/golden.jsonl
"""

import json
import sys

import numpy as np
import pdqhash

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix(seed: int, n: int) -> np.ndarray:
    """Value i is mix64(seed + (i + 1) * GOLDEN), all arithmetic modulo 2**64."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (np.arange(1, n + 1, dtype=np.uint64) * GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def image(pattern: str, width: int, height: int, seed: int) -> np.ndarray:
    """An H x W x 3 uint8 image; the Rust test implements the same formulas."""
    n = width * height * 3
    rand = (splitmix(seed, n) >> np.uint64(56)).astype(np.int64).reshape(height, width, 3)
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    if pattern == "noise":
        px = rand
    elif pattern == "gradient":
        r = x * 255 // max(width - 1, 1)
        g = y * 255 // max(height - 1, 1)
        b = ((x + y) * 7) % 256
        px = np.stack([r, g, b], axis=2)
    elif pattern == "mix":
        # A smooth gradient with a checkerboard and low-amplitude noise on top.
        base = (x * 200 // max(width - 1, 1)) + (y * 50 // max(height - 1, 1))
        check = ((x // 13 + y // 9) % 2) * 40
        px = np.clip(base[:, :, None] + check[:, :, None] + (rand % 32) - 16, 0, 255)
    elif pattern == "grey":
        # R = G = B, as a greyscale image converted to RGB.
        v = (x * 3 + y * 5 + (rand[:, :, 0] % 64)) % 256
        px = np.stack([v, v, v], axis=2)
    elif pattern == "flat":
        px = np.full((height, width, 3), 77, dtype=np.int64)
    else:
        raise ValueError(pattern)
    return np.ascontiguousarray(px.astype(np.uint8))


def bits_to_hex(vec) -> str:
    # The binding returns bit 255 first, which is also the first printed bit.
    v = [int(b) for b in vec]
    return "".join("%x" % (v[i] * 8 + v[i + 1] * 4 + v[i + 2] * 2 + v[i + 3]) for i in range(0, 256, 4))


CASES = [
    ("noise", 5, 5, 1),
    ("noise", 4, 10, 2),
    ("noise", 10, 4, 3),
    ("noise", 7, 300, 4),
    ("gradient", 300, 7, 5),
    ("noise", 64, 64, 6),
    ("mix", 64, 64, 7),
    ("noise", 65, 63, 8),
    ("mix", 63, 65, 9),
    ("noise", 513, 257, 10),
    ("mix", 257, 513, 11),
    ("noise", 1000, 3, 12),
    ("noise", 3, 1000, 13),
    ("gradient", 128, 128, 14),
    ("grey", 200, 150, 15),
    ("grey", 64, 64, 16),
    ("flat", 100, 80, 17),
    ("mix", 127, 129, 18),
    ("gradient", 1000, 5, 19),
    ("mix", 640, 480, 20),
    ("noise", 1600, 1004, 21),
]


def main() -> None:
    for pattern, width, height, seed in CASES:
        img = image(pattern, width, height, seed)
        h, q = pdqhash.compute(img)
        dih, dq = pdqhash.compute_dihedral(img)
        row = {
            "pattern": pattern,
            "width": width,
            "height": height,
            "seed": seed,
            "hash": bits_to_hex(h),
            "quality": int(q),
            "dihedral": [bits_to_hex(d) for d in dih],
            "dihedral_quality": int(dq),
        }
        if width >= 5 and height >= 5:
            f, fq = pdqhash.compute_float(img)
            # The binding reverses the 16x16 buffer; store it in natural order as f32 bits.
            nat = np.asarray(f, dtype=np.float32)[::-1]
            row["dct_bits"] = "".join("%08x" % int(b) for b in nat.view(np.uint32))
        json.dump(row, sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
