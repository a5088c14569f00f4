"""Goldens for src/data/images/transform.rs: torchvision's transforms on two small test
images (RGB 23x31 and grey 17x12), each result written raw (`.u8`: height x width x channels,
row-major, interleaved; `.f32`: little-endian, channels x height x width as ToTensor lays it
out) and listed in `manifest.txt` with the crate's text for the same pipeline:

    name source height width channels | crate pipeline | torchvision pipeline

    python3 -m venv ~/.cache/cnn-bench/venv && ~/.cache/cnn-bench/venv/bin/pip install torch torchvision
    ~/.cache/cnn-bench/venv/bin/python tests/goldens/transforms.py
"""
import pathlib

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

out = pathlib.Path(__file__).parent / "transforms"
out.mkdir(exist_ok=True)

# Ramps, a hard-edged block, a saturated corner and noise-like bytes, so that rounding and
# clamping both show.
rgb = np.zeros((23, 31, 3), np.uint8)
for y in range(23):
    for x in range(31):
        for c in range(3):
            v = (x * 37 + y * 91 + (x * y) % 17 * 13 + c * 71) % 256 if y >= 12 else min(255, x * 8 + y * 3 + c * 40)
            if 3 <= x < 9 and 2 <= y < 7:
                v = 255
            if x > 25 and y > 18:
                v = 0
            rgb[y, x, c] = v
grey = np.array([[(x * 29 + y * 53 + (x ^ y) * 7) % 256 for x in range(12)] for y in range(17)], np.uint8)
(out / "rgb-23x31x3.u8").write_bytes(rgb.tobytes())
(out / "grey-17x12x1.u8").write_bytes(grey.tobytes())
sources = {"rgb": Image.fromarray(rgb, "RGB"), "grey": Image.fromarray(grey, "L")}

B, C = T.InterpolationMode.BILINEAR, T.InterpolationMode.BICUBIC
cases = [
    # name, source, crate text, torchvision transform
    ("resize-shorter-16", "rgb", "resize(16)", T.Resize(16, B)),
    ("resize-shorter-16-bicubic", "rgb", "resize(16, bicubic)", T.Resize(16, C)),
    ("resize-40x50", "rgb", "resize(40, 50)", T.Resize((40, 50), B)),
    ("resize-40x50-bicubic", "rgb", "resize(40, 50, bicubic)", T.Resize((40, 50), C)),
    ("resize-7x9-bicubic", "rgb", "resize(7, 9, bicubic)", T.Resize((7, 9), C)),
    ("resize-grey-28x28", "grey", "resize(28, 28)", T.Resize((28, 28), B)),
    ("resize-grey-shorter-5-bicubic", "grey", "resize(5, bicubic)", T.Resize(5, C)),
    ("center-crop-12x20", "rgb", "center_crop(12, 20)", T.CenterCrop((12, 20))),
    ("center-crop-22x30", "rgb", "center_crop(22, 30)", T.CenterCrop((22, 30))),
    ("center-crop-padded-30x36", "rgb", "center_crop(30, 36)", T.CenterCrop((30, 36))),
    ("center-crop-grey-padded-20", "grey", "center_crop(20)", T.CenterCrop(20)),
    ("pad-3-1-2-4-fill-7", "rgb", "pad(3, 1, 2, 4, fill=7)", T.Pad((3, 1, 2, 4), fill=7)),
    ("pad-edge-2", "rgb", "pad(2, edge)", T.Pad(2, padding_mode="edge")),
    ("pad-reflect-3-2", "rgb", "pad(3, 2, reflect)", T.Pad((3, 2), padding_mode="reflect")),
    ("pad-symmetric-grey-4", "grey", "pad(4, symmetric)", T.Pad(4, padding_mode="symmetric")),
    ("hflip", "rgb", "random_horizontal_flip(1)", T.RandomHorizontalFlip(1.0)),
    ("grayscale-1", "rgb", "grayscale", T.Grayscale(1)),
    ("grayscale-3", "rgb", "grayscale(3)", T.Grayscale(3)),
    ("resize-crop-grey", "rgb", "resize(32); center_crop(28, 28); grayscale",
     T.Compose([T.Resize(32), T.CenterCrop(28), T.Grayscale()])),
    ("normalize-rgb", "rgb", "resize(20, bicubic); normalize(0.485, 0.456, 0.406, 0.229, 0.224, 0.225)",
     T.Compose([T.Resize(20, C), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])),
    ("normalize-grey", "grey", "normalize(0.5, 0.25)",
     T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.25,))])),
    ("to-tensor-rgb", "rgb", "center_crop(8, 8)", T.Compose([T.CenterCrop(8), T.ToTensor()])),
    ("brightness-1.3", "rgb", "adjust_brightness(1.3)", lambda i: F.adjust_brightness(i, 1.3)),
    ("brightness-0.6", "rgb", "adjust_brightness(0.6)", lambda i: F.adjust_brightness(i, 0.6)),
    ("contrast-0.6", "rgb", "adjust_contrast(0.6)", lambda i: F.adjust_contrast(i, 0.6)),
    ("contrast-1.4", "rgb", "adjust_contrast(1.4)", lambda i: F.adjust_contrast(i, 1.4)),
    ("saturation-1.7", "rgb", "adjust_saturation(1.7)", lambda i: F.adjust_saturation(i, 1.7)),
    ("saturation-0.3", "rgb", "adjust_saturation(0.3)", lambda i: F.adjust_saturation(i, 0.3)),
]
lines = [f"# torch {torch.__version__}, torchvision {torchvision.__version__}, Pillow {PIL.__version__}"]
for name, src, ours, tv in cases:
    got = tv(sources[src])
    if isinstance(got, torch.Tensor):
        arr = got.numpy().astype("<f4")
        c, h, w = arr.shape
        ext = "f32"
    else:
        arr = np.asarray(got)
        h, w = arr.shape[:2]
        c = 1 if arr.ndim == 2 else arr.shape[2]
        ext = "u8"
    (out / f"{name}.{ext}").write_bytes(arr.tobytes())
    lines.append(f"{name}.{ext} {src} {h} {w} {c} | {ours} | {tv!r}".replace("\n", " "))
(out / "manifest.txt").write_text("\n".join(lines) + "\n")
print(lines[0], len(cases), "cases")
