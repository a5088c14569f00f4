#!/usr/bin/env python3
"""d2l 6.6 in PyTorch, for the README's comparison: LeNet (sigmoid, average pooling) on
Fashion-MNIST, Xavier-uniform init, SGD lr 0.9, batch 256, 10 epochs, the data read from the same
IDX files the Rust example uses. Prints one line per epoch and the final
`loss L, train acc A, test acc T` line, like `cargo run --release --example lenet`.

Usage: python3 bench/torch_lenet_train.py [--data /usr/share/datasets/fashion-mnist] [--threads 2]
"""
import argparse, gzip, os, struct, time
import torch
from torch import nn


def read_idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def load(data, split):
    prefix = "train" if split == "train" else "t10k"
    name = lambda kind, n: next(p for p in (f"{data}/{prefix}-{kind}-idx{n}-ubyte.gz", f"{data}/{prefix}-{kind}-idx{n}-ubyte") if os.path.exists(p))
    x = read_idx(name("images", 3)).float().div(255).unsqueeze(1)
    y = read_idx(name("labels", 1)).long()
    return x, y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = load(a.data, "train"), load(a.data, "test")
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))
    for m in net:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
    opt = torch.optim.SGD(net.parameters(), lr=0.9)
    loss_fn = nn.CrossEntropyLoss()
    total = 0.0
    for epoch in range(a.epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(ytr))
        seen = correct = 0
        loss_sum = 0.0
        net.train()
        for i in range(0, len(ytr), 256):
            idx = perm[i:i + 256]
            x, y = xtr[idx], ytr[idx]
            opt.zero_grad()
            out = net(x)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        train_s = time.perf_counter() - start
        net.eval()
        with torch.no_grad():
            test_acc = sum((net(xte[i:i + 256]).argmax(1) == yte[i:i + 256]).sum().item() for i in range(0, len(yte), 256)) / len(yte)
        secs = time.perf_counter() - start
        total += secs
        print(f"epoch {epoch + 1}/{a.epochs}: loss {loss_sum / seen:.3f}, train acc {correct / seen:.3f}, "
              f"test acc {test_acc:.3f}, {seen / train_s:.1f} images/s, {secs:.1f} s")
    print(f"{a.epochs} epochs in {total:.1f} s")
    print(f"loss {loss_sum / seen:.3f}, train acc {correct / seen:.3f}, test acc {test_acc:.3f}")


if __name__ == "__main__":
    main()
