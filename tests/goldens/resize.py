"""Goldens for src/data/resize.rs: a 28x28 8-bit test pattern and Pillow's bilinear resize of
it to each size below, as torchvision's `transforms.Resize(size)` does to a Fashion-MNIST PIL
image (d2l's `load_data_fashion_mnist(resize=96)`). Raw bytes, row-major.

    python3 -m venv /tmp/pil && /tmp/pil/bin/pip install pillow
    /tmp/pil/bin/python tests/goldens/resize.py     # Pillow 13.0.0 made the files here
"""
import pathlib

import PIL
from PIL import Image

out = pathlib.Path(__file__).parent / "resize"
out.mkdir(exist_ok=True)
# Smooth ramps, a hard edge, a saturated block (clamping) and some noise-like bytes.
pattern = bytes(
    255 if 10 <= x < 14 and 3 <= y < 9
    else 0 if x > 22 and y > 20
    else (x * 37 + y * 91 + (x * y) % 17 * 13) % 256 if y >= 14
    else min(255, x * 9 + y * 2)
    for y in range(28) for x in range(28)
)
(out / "pattern-28x28.u8").write_bytes(pattern)
img = Image.frombytes("L", (28, 28), pattern)
for rows, cols in [(96, 96), (56, 56), (33, 47), (14, 14), (28, 28)]:
    (out / f"pattern-{rows}x{cols}.u8").write_bytes(img.resize((cols, rows), Image.BILINEAR).tobytes())
print("Pillow", PIL.__version__)
