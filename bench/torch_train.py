#!/usr/bin/env python3
"""The main jobs in PyTorch, for the README's comparisons, on Fashion-MNIST read from the same
IDX files the Rust examples use, Xavier-uniform init of every convolution and linear weight,
the net's optimizer unless --sgd or --adam: SGD (without momentum unless --momentum; the net's
learning rate unless --lr) or Adam (lr 0.001 unless --lr); the net's learning-rate schedule
unless --schedule (all as the examples'); batch 256, 10 epochs. Prints one line per epoch and the final `loss L, train acc A, test acc T` line,
like the examples.

- `--net lenet` (default): d2l 6.6's LeNet (sigmoid, average pooling), lr 0.9, as
  `cargo run --release --example lenet`, SGD at a constant rate;
- `--net resnet`: the `resnet` network of ../shared/bench/README.md (d2l 8.6's `Residual`
  blocks at 28x28), Adam at lr 0.001 (SGD's lr 0.1), cosine annealing, as
  `cargo run --release --example resnet`.

Usage: python3 bench/torch_train.py [--net lenet|resnet] [--data /usr/share/datasets/fashion-mnist]
       [--threads 2] [--epochs 10] [--sgd [--momentum 0] | --adam] [--lr LR]
       [--schedule constant|cosine]
"""
import argparse, gzip, os, struct, time
import torch
from torch import nn
from torch.nn import functional as F


class Residual(nn.Module):
    """d2l 8.6's `Residual`, its lazy layers given their input channels."""

    def __init__(self, in_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, num_channels, 3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, 3, padding=1)
        self.conv3 = nn.Conv2d(in_channels, num_channels, 1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))


def resnet():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        Residual(32, 32), Residual(32, 32),
        Residual(32, 64, use_1x1conv=True, strides=2), Residual(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


# each net's optimizer (Adam?), SGD learning rate and schedule when the flags do not say
NETS = {"lenet": (lenet, False, 0.9, "constant"), "resnet": (resnet, True, 0.1, "cosine")}


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
    p.add_argument("--net", choices=NETS, default="lenet")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--momentum", type=float, default=0.0, help="SGD's, as the examples' --momentum")
    p.add_argument("--adam", action="store_true", help="Adam, as the examples' --adam")
    p.add_argument("--sgd", action="store_true", help="SGD, as the examples' --sgd")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the net's for SGD, 0.001 for Adam, as the examples')")
    p.add_argument("--schedule", choices=["constant", "cosine"], default=None,
                   help="the rate over the epochs (default: the net's); cosine is CosineAnnealingLR(T_max=epochs), stepped per epoch")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = load(a.data, "train"), load(a.data, "test")
    make, adam, sgd_lr, schedule = NETS[a.net]
    if a.adam and a.sgd:
        p.error("--adam and --sgd exclude each other")
    adam = a.adam or (adam and not a.sgd)
    if adam and a.momentum:
        p.error("--momentum is SGD's: add --sgd")
    schedule = schedule if a.schedule is None else a.schedule
    net = make()
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
    if adam:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3 if a.lr is None else a.lr)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=sgd_lr if a.lr is None else a.lr, momentum=a.momentum)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs) if schedule == "cosine" else None
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
        lr_now = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        net.eval()
        with torch.no_grad():
            test_acc = sum((net(xte[i:i + 256]).argmax(1) == yte[i:i + 256]).sum().item() for i in range(0, len(yte), 256)) / len(yte)
        secs = time.perf_counter() - start
        total += secs
        print(f"epoch {epoch + 1}/{a.epochs}: loss {loss_sum / seen:.3f}, train acc {correct / seen:.3f}, "
              f"test acc {test_acc:.3f}, lr {lr_now:.3e}, {seen / train_s:.1f} images/s, {secs:.1f} s")
    print(f"{a.epochs} epochs in {total:.1f} s")
    print(f"loss {loss_sum / seen:.3f}, train acc {correct / seen:.3f}, test acc {test_acc:.3f}")


if __name__ == "__main__":
    main()
