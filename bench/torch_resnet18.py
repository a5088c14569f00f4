#!/usr/bin/env python3
"""PyTorch's side of one timed epoch of d2l 8.6's ResNet-18 on Fashion-MNIST at 96x96, the run
`cargo run --release --features cuda --example resnet -- --resnet18 --epochs 1` makes on our side
(`.gpu/run.sh resnet18` runs both on the same GPU).

As d2l trains it (`d2l.train_ch6(net, train_iter, test_iter, num_epochs=10, lr=0.05, d2l.try_gpu())`
with `load_data_fashion_mnist(256, resize=96)`): SGD lr 0.05, batch 256, Xavier-uniform init of
every conv and linear weight, cross-entropy; one epoch over the 60,000 shuffled training images,
then accuracy on the 10,000 test images. The data sits on the GPU, resized once before timing
(bilinear, `F.interpolate(align_corners=False)`, the float version of torchvision's `Resize(96)`;
ours reproduces PIL's 8-bit rounding too, within 1/255 of this): the timing covers training only,
as ours does. cuDNN is on (PyTorch's default), benchmark mode off, TF32 off: full f32, as ours.

Prints the epoch as one JSON line:
  {"case": "resnet18_96_epoch", "train_s": 12.3, "images_per_s": 4878.0, "loss": .., "train_acc": ..,
   "test_acc": .., "eval_s": ..}
Usage: python3 bench/torch_resnet18.py --data DIR [--device cuda] [--epochs 1] [--limit N]
(DIR holds the four Fashion-MNIST IDX files, gzipped or not; --limit N uses the first N
training images, for a quick check on a CPU.)
"""
import argparse, json, time
import torch
from torch import nn
import torch.nn.functional as F

# The IDX reader and d2l's `Residual`, shared with the CPU training script beside this one.
import torch_train
from torch_train import Residual


def stage(cin, c, n, first_block=False):
    blocks = []
    for i in range(n):
        if i == 0 and not first_block:
            blocks.append(Residual(cin, c, use_1x1conv=True, strides=2))
        else:
            blocks.append(Residual(c, c))
    return nn.Sequential(*blocks)


def resnet18():
    """d2l 8.6's `ResNet18` for one input channel and 10 classes."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                      nn.MaxPool2d(3, stride=2, padding=1)),
        stage(64, 64, 2, first_block=True), stage(64, 128, 2), stage(128, 256, 2),
        stage(256, 512, 2),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10))


def load(data, split, device, side):
    x, y = torch_train.load(data, split)  # [N, 1, 28, 28] in [0, 1], labels as int64
    x = F.interpolate(x.to(device), size=(side, side), mode="bilinear", align_corners=False)
    return x, y.to(device)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--side", type=int, default=96)
    p.add_argument("--limit", type=int, default=0)
    args = p.parse_args()
    dev = args.device
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    x, y = load(args.data, "train", dev, args.side)
    xt, yt = load(args.data, "test", dev, args.side)
    if args.limit:
        x, y, xt, yt = x[:args.limit], y[:args.limit], xt[:args.limit], yt[:args.limit]
    torch.manual_seed(0)
    net = resnet18().to(dev)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    print(torch.__version__, torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          torch.cuda.get_device_name() if dev == "cuda" else "cpu", flush=True)

    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(y), device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        sync()
        t0 = time.perf_counter()
        for i in range(0, len(y), args.batch):
            idx = order[i:i + args.batch]
            xb, yb = x[idx], y[idx]
            out = net(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(yb)
            correct += (out.argmax(1) == yb).sum()
        sync()
        train_s = time.perf_counter() - t0

        net.eval()
        t0 = time.perf_counter()
        hits = 0
        with torch.no_grad():
            for i in range(0, len(yt), args.batch):
                hits += (net(xt[i:i + args.batch]).argmax(1) == yt[i:i + args.batch]).sum().item()
        sync()
        eval_s = time.perf_counter() - t0
        print(json.dumps({
            "case": f"resnet18_{args.side}_epoch", "epoch": epoch + 1,
            "train_s": round(train_s, 2), "images_per_s": round(len(y) / train_s, 1),
            "loss": round(loss_sum.item() / len(y), 4), "train_acc": round(correct.item() / len(y), 4),
            "test_acc": round(hits / len(yt), 4), "eval_s": round(eval_s, 2)}), flush=True)


if __name__ == "__main__":
    main()
