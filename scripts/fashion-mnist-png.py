#!/usr/bin/env python3
"""Writes Fashion-MNIST (the installed IDX files) out as a PNG folder tree, the layout
torchvision's ImageFolder and the examples' `--images` read:

    OUT/train/<class>/<index>.png   60,000 images
    OUT/test/<class>/<index>.png    10,000 images

Class folders are the data set's names with `/` made `_` (`T-shirt_top`); each PNG is the 28x28
8-bit grey image, byte for byte. The Python standard library only (zlib), so it runs anywhere.

    python3 scripts/fashion-mnist-png.py [IDX_DIR] [OUT]
    (defaults: /usr/share/datasets/fashion-mnist, /tmp/fashion-mnist-png)
    cargo run --release --example lenet -- --images /tmp/fashion-mnist-png
"""
import gzip
import pathlib
import struct
import sys
import zlib

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def idx(path):
    raw = pathlib.Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return shape, raw[4 + 4 * dims:]


def png(rows, cols, pixels):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    scan = b"".join(b"\x00" + pixels[r * cols:(r + 1) * cols] for r in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(scan, 6)) + chunk(b"IEND", b""))


def main():
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
    out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/fashion-mnist-png")
    for split, prefix in [("train", "train"), ("test", "t10k")]:
        find = lambda stem: next(p for p in [src / stem, src / (stem + ".gz")] if p.exists())
        (n, rows, cols), images = idx(find(f"{prefix}-images-idx3-ubyte"))
        _, labels = idx(find(f"{prefix}-labels-idx1-ubyte"))
        for name in CLASSES:
            (out / split / name.replace("/", "_")).mkdir(parents=True, exist_ok=True)
        size = rows * cols
        for i in range(n):
            folder = out / split / CLASSES[labels[i]].replace("/", "_")
            (folder / f"{i:05}.png").write_bytes(png(rows, cols, images[i * size:(i + 1) * size]))
        print(f"{out / split}: {n} images")


if __name__ == "__main__":
    main()
