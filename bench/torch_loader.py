"""torchvision's DataLoader on an image folder, timed as examples/loader-bench.rs times the
crate's loader: one pass of decode + transforms + batching, no network, in images/s.

    ~/.cache/cnn-bench/venv/bin/python bench/torch_loader.py DIR [--workers 2] [--batch 256]
"""
import argparse
import json
import time

import torch
from torchvision import datasets, transforms as T

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--workers", type=int, default=2)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--passes", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(1)
tf = T.Compose([T.Grayscale(), T.RandomResizedCrop(28), T.RandomHorizontalFlip(),
                T.ToTensor(), T.Normalize((0.5,), (0.5,))])
data = datasets.ImageFolder(a.dir, tf)
loader = torch.utils.data.DataLoader(data, batch_size=a.batch, shuffle=True, drop_last=True,
                                     num_workers=a.workers, prefetch_factor=2 if a.workers else None,
                                     persistent_workers=False)
for p_ in range(a.passes):
    start = time.perf_counter()
    n = sum(len(y) for _, y in loader)
    s = time.perf_counter() - start
    print(json.dumps({"case": f"torch_loader_w{a.workers}", "pass": p_, "images": n,
                      "seconds": round(s, 2), "images_per_s": round(n / s)}))
