#!/usr/bin/env python3
"""Writes a corpus of encoder variants (JPEG subsamplings, progressive, odd sizes,
CMYK; PNG bit depths, palettes, interlacing; WebP lossy/lossless with alpha; GIF; BMP;
TIFF) derived from one source image, for compare_pixels.py.

Usage: pixel_corpus.py SOURCE_IMAGE OUT_DIR
"""
import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def raw_png(w, h, depth, ctype, rows, extra=b""):
    data = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
            + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


def main():
    src = Image.open(sys.argv[1]).convert("RGB")
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    sizes = [(src.width, src.height), (333, 211), (17, 9), (1, 1), (8, 300)]
    for w, h in sizes:
        im = src.resize((w, h))
        for sub in ("4:4:4", "4:2:2", "4:2:0", "4:1:1", "4:4:0"):
            for prog in (False, True):
                name = f"jpeg_{w}x{h}_{sub.replace(':', '')}_{'p' if prog else 'b'}.jpg"
                try:
                    im.save(out / name, "JPEG", quality=85, subsampling=sub, progressive=prog)
                except Exception as e:
                    print("skip", name, e)
        im.convert("L").save(out / f"jpeg_{w}x{h}_gray.jpg", quality=90)
        im.convert("CMYK").save(out / f"jpeg_{w}x{h}_cmyk.jpg", quality=90)
        im.save(out / f"jpeg_{w}x{h}_q100_restart.jpg", quality=100, restart_marker_blocks=3)
        im.save(out / f"jpeg_{w}x{h}_opt.jpg", quality=40, optimize=True)
        for mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16"):
            try:
                im.convert(mode).save(out / f"png_{w}x{h}_{mode.replace(';', '')}.png")
            except Exception as e:
                print("skip png", mode, e)
        im.save(out / f"png_{w}x{h}_interlaced.png", interlace=True)
        im.convert("P", palette=Image.ADAPTIVE, colors=3).save(out / f"png_{w}x{h}_p2bit.png", bits=2)
        im.convert("P", palette=Image.ADAPTIVE, colors=14).save(out / f"png_{w}x{h}_p4bit.png", bits=4)
        rgba = im.convert("RGBA")
        a = np.asarray(rgba).copy()
        a[:, :, 3] = np.arange(a.shape[1], dtype=np.uint8)[None, :] * 7
        rgba = Image.fromarray(a, "RGBA")
        rgba.save(out / f"webp_{w}x{h}_alpha_lossy.webp", quality=70)
        rgba.save(out / f"webp_{w}x{h}_alpha_lossless.webp", lossless=True)
        im.save(out / f"webp_{w}x{h}_lossy.webp", quality=50)
        im.save(out / f"webp_{w}x{h}_lossless.webp", lossless=True)
        im.save(out / f"gif_{w}x{h}.gif")
        im.convert("L").save(out / f"gif_{w}x{h}_gray.gif")
        for mode in ("1", "L", "P", "RGB", "RGBA"):
            im.convert(mode).save(out / f"bmp_{w}x{h}_{mode}.bmp")
        for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"):
            try:
                im.convert(mode).save(out / f"tiff_{w}x{h}_{mode.replace(';', '')}.tif")
            except Exception as e:
                print("skip tiff", mode, e)
        im.save(out / f"tiff_{w}x{h}_lzw.tif", compression="tiff_lzw")
        im.save(out / f"tiff_{w}x{h}_deflate.tif", compression="tiff_adobe_deflate")
    # Hand-made PNGs: sub-byte grey, 16-bit colour, short palette, grey with alpha 16-bit.
    w, h = 13, 7
    rng = np.random.default_rng(1)
    for depth in (1, 2, 4):
        vals = rng.integers(0, 1 << depth, size=(h, w))
        rows = []
        for r in vals:
            bits = "".join(format(int(v), f"0{depth}b") for v in r)
            bits += "0" * (-len(bits) % 8)
            rows.append(int(bits, 2).to_bytes(len(bits) // 8, "big"))
        (out / f"png_hand_gray{depth}.png").write_bytes(raw_png(w, h, depth, 0, rows))
    rows = [rng.integers(0, 65536, size=w * 3).astype(">u2").tobytes() for _ in range(h)]
    (out / "png_hand_rgb16.png").write_bytes(raw_png(w, h, 16, 2, rows))
    rows = [rng.integers(0, 65536, size=w * 2).astype(">u2").tobytes() for _ in range(h)]
    (out / "png_hand_la16.png").write_bytes(raw_png(w, h, 16, 4, rows))
    rows = [rng.integers(0, 65536, size=w * 4).astype(">u2").tobytes() for _ in range(h)]
    (out / "png_hand_rgba16.png").write_bytes(raw_png(w, h, 16, 6, rows))
    rows = [rng.integers(0, 65536, size=w).astype(">u2").tobytes() for _ in range(h)]
    (out / "png_hand_gray16.png").write_bytes(raw_png(w, h, 16, 0, rows))
    rows = [bytes(rng.integers(0, 256, size=w).astype(np.uint8)) for _ in range(h)]
    plte = chunk(b"PLTE", bytes(range(30)))
    (out / "png_hand_shortplte.png").write_bytes(raw_png(w, h, 8, 3, rows, plte))
    trns = chunk(b"tRNS", bytes([0, 128, 255]))
    (out / "png_hand_plte_trns.png").write_bytes(raw_png(w, h, 8, 3, rows, plte + trns))


if __name__ == "__main__":
    main()
