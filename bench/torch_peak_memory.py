#!/usr/bin/env python3
"""PyTorch's side of `cargo run --release --example bench -- --memory`: the memory one training
step of the `resnet` network (../shared/bench/torch_modern.py's, batch 128, SGD) takes on the
CPU, as the process's resident set sees it (Linux): the peak during the step (VmHWM, reset just
before it through /proc/self/clear_refs) above the resident set before it, for the first three
steps (PyTorch's allocator keeps freed blocks, as our buffer pool does).

Usage: OMP_WAIT_POLICY=PASSIVE python3 bench/torch_peak_memory.py [--threads 2]
"""
import argparse
import pathlib
import sys

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "bench"))
import torch_modern  # noqa: E402


def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = torch_modern.resnet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(128, 1, 28, 28)
    y = torch.randint(0, 10, (128,))
    net.train()
    for n in range(1, 4):
        before = status("VmRSS:")
        open("/proc/self/clear_refs", "w").write("5")
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
        peak = status("VmHWM:")
        print(f"train_resnet_b128 step {n}: peak {(peak - before) / 1024:.1f} MB above the "
              f"{before / 1024:.1f} MB resident before it")


if __name__ == "__main__":
    main()
