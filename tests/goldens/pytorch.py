"""Goldens for tests/pytorch.rs: PyTorch modules' `state_dict`s, which
`cnn::checkpoint::load_pytorch` loads into the `cnn!` networks that mirror them with no key map,
and the logits PyTorch gives.

Made with PyTorch 2.15.0 and safetensors 0.8.0 (`../shared/bench/compare.sh` installs both into
~/.cache/cnn-bench/venv). Rerun from the repository root:

    ~/.cache/cnn-bench/venv/bin/python tests/goldens/pytorch.py

It writes, for each case, tests/goldens/torch_<case>.safetensors (the `state_dict`, as
`safetensors.torch.save_file(module.state_dict(), path)` writes it) and
tests/goldens/torch_<case>.io.safetensors (`input`, a batch of two, and `logits`, the output in
inference mode, in the case's element type), and prints the logits:
- `lenet`: d2l 7.6's `LeNet` (its layers in `self.net`), float32, PyTorch's default init;
- `constructs64`: a module of groups, named entries, a block that is an `nn.Sequential` with a
  loop, a squeeze-and-excitation class with a `gate` attribute, a sum of branches, a transposed
  convolution, a named repeat, batch norm trained for two steps (so `num_batches_tracked` is 2)
  and a linear layer without bias, in float64;
- `constructs32`: the same module made in float32.

`--check FILE IO CASE` is the other direction, for tests/pytorch.rs: it loads FILE (written by
`cnn::checkpoint::save_pytorch`) into the case's module with `load_state_dict(strict=True)`,
runs it on IO's `input` and compares with IO's `logits` (relative 1e-5), and exits non-zero
when they differ.
"""

import collections
import pathlib
import sys

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

OUT = pathlib.Path(__file__).parent


class LeNet(nn.Module):
    """d2l 7.6, with the lazy layers given their input sizes."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, num_classes))

    def forward(self, X):
        return self.net(X)


def stage(c):
    """`block Stage(c) { repeat(2) { conv2d(c, ...), batch_norm2d, relu } }`: a list built in
    a loop, then `nn.Sequential(*layers)`."""
    layers = []
    for _ in range(2):
        layers += [nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c),
                   nn.ReLU()]
    return nn.Sequential(*layers)


class SE(nn.Module):
    """`block SE(r = 2) { scale { gate: { adaptive_avg_pool2d(1), flatten, linear(C / r),
    relu, linear(C), sigmoid } } }`."""

    def __init__(self, c, r=2):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, c // r),
                                  nn.ReLU(), nn.Linear(c // r, c), nn.Sigmoid())

    def forward(self, x):
        return x * self.gate(x)[:, :, None, None]


class Constructs(nn.Module):
    """The `Constructs` network of tests/pytorch.rs. Its children are named as an
    `nn.Sequential` of the same entries would name them: positions, except where `cnn!` gives a
    name; the sum's branches are `forward` code, their layers children of this module."""

    def __init__(self):
        super().__init__()
        children = [
            ("stem", nn.Sequential(nn.Conv2d(3, 4, kernel_size=3, padding=1), nn.ReLU())),
            ("1", nn.Sequential(stage(4), SE(4))),
            ("2", nn.Conv2d(4, 4, kernel_size=1)),
            ("3", nn.ReLU6()),
            ("4", nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=4)),
            ("up", nn.ConvTranspose2d(4, 2, kernel_size=2, stride=2)),
            ("blocks", nn.Sequential(*[
                nn.Sequential(nn.Conv2d(2, 2, kernel_size=3, padding=1), nn.BatchNorm2d(2),
                              nn.ReLU()) for _ in range(2)])),
            ("7", nn.AdaptiveAvgPool2d(1)),
            ("8", nn.Flatten()),
            ("9", nn.Linear(2, 5, bias=False)),
        ]
        for name, module in children:
            self.add_module(name, module)

    def forward(self, x):
        c = self._modules
        x = c["stem"](x)
        x = c["1"](x)
        x = c["3"](c["2"](x)) + x + c["4"](x)  # sum { { conv2d, relu6 }, identity, conv2d }
        x = c["up"](x)
        x = c["blocks"](x)
        return c["9"](c["8"](c["7"](x)))


CASES = {
    "lenet": (LeNet, (1, 28, 28), torch.float32),
    "constructs64": (Constructs, (3, 8, 8), torch.float64),
    "constructs32": (Constructs, (3, 8, 8), torch.float32),
}


def make(case):
    cls, shape, dtype = CASES[case]
    torch.manual_seed(0)
    net = cls().to(dtype)
    if cls is Constructs:
        # Two training steps' worth of batch statistics; then weights away from their
        # defaults, so that every tensor matters.
        net.train()
        with torch.no_grad():
            for _ in range(2):
                net(torch.randn(4, *shape, dtype=dtype))
            for module in net.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
    net.eval()
    return net, shape, dtype


def write(case):
    net, shape, dtype = make(case)
    torch.manual_seed(1)
    x = torch.randn(2, *shape, dtype=dtype)
    with torch.no_grad():
        logits = net(x)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              OUT / f"torch_{case}.safetensors", metadata={"format": "pt"})
    save_file({"input": x, "logits": logits}, OUT / f"torch_{case}.io.safetensors",
              metadata={"made_by": f"torch {torch.__version__}"})
    print(f"{case} ({dtype}): logits {logits.tolist()}")


def check(path, io, case):
    net, _, dtype = make(case)
    state = load_file(path)
    net.load_state_dict(state, strict=True)
    io = load_file(io)
    with torch.no_grad():
        logits = net(io["input"].to(dtype))
    want = io["logits"].to(dtype)
    diff = (logits - want).abs().max().item()
    scale = want.abs().max().item()
    print(f"{case}: PyTorch's logits differ from cnn's by {diff:e} (largest {scale:e})")
    sys.exit(0 if diff <= 1e-5 * scale else 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        check(*sys.argv[2:5])
    else:
        for case in CASES:
            write(case)
