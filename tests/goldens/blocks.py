"""Goldens for tests/blocks.rs: small networks built from d2l's PyTorch code (chapter 8), run in
float64, their outputs, gradients and updated batch-norm statistics saved as safetensors.

Made with PyTorch 2.15.0 and safetensors 0.8.0 (`../shared/bench/compare.sh` installs both into
~/.cache/cnn-bench/venv). Rerun from the repository root:

    ~/.cache/cnn-bench/venv/bin/python tests/goldens/blocks.py

Each case writes two files:
- tests/goldens/<case>.safetensors: the module's `state_dict()` as
  `safetensors.torch.save_file` writes it, which `cnn::checkpoint::load_pytorch` loads into the
  matching `cnn!` network by key alone (no map: the networks mirror these modules);
- tests/goldens/<case>.io.safetensors: `input` (batch 3), `r` (the weights of the loss `sum(output * r)`);
- `output.eval`: the output in inference mode (batch norm's running statistics, set to random
  values first);
- `output.train`: the output in training mode (batch statistics), then `grad.input` and
  `grad.<key>` for every trainable weight, from `sum(output.train * r)`;
- `running.<key>`: batch norm's running statistics after that training forward pass.
"""

import math
import pathlib

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
OUT = pathlib.Path(__file__).parent


# --- d2l 8.6 (ResNet) --------------------------------------------------------------------------
class Residual(nn.Module):
    """d2l's Residual, with its lazy layers given their input channels."""

    def __init__(self, in_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return F.relu(Y)


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Residual(3, 4, use_1x1conv=True, strides=2)
        self.b = Residual(4, 4)

    def forward(self, x):
        return self.b(self.a(x))


# --- d2l 8.4 (GoogLeNet) -----------------------------------------------------------------------
class Inception(nn.Module):
    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.b1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.b2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.b2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.b3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.b3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.b4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, x):
        b1 = F.relu(self.b1_1(x))
        b2 = F.relu(self.b2_2(F.relu(self.b2_1(x))))
        b3 = F.relu(self.b3_2(F.relu(self.b3_1(x))))
        b4 = F.relu(self.b4_2(self.b4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


# --- d2l 8.7 (DenseNet) ------------------------------------------------------------------------
def conv_block(in_channels, num_channels):
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1))


class DenseBlock(nn.Module):
    def __init__(self, in_channels, num_convs, num_channels):
        super().__init__()
        self.net = nn.Sequential(*[
            conv_block(in_channels + i * num_channels, num_channels) for i in range(num_convs)])

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            X = torch.cat((X, Y), dim=1)
        return X


def transition_block(in_channels, num_channels):
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = DenseBlock(3, 2, 2)  # 3 + 2*2 = 7 channels
        self.trans = transition_block(7, 3)

    def forward(self, x):
        return self.trans(self.dense(x))


# --- squeeze-and-excitation, sum, relu6/silu, the global and adaptive pools, batch_norm1d ------
class Misc(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, kernel_size=3, padding=1)
        self.linear1 = nn.Linear(4, 2)
        self.linear2 = nn.Linear(2, 4)
        self.conv2 = nn.Conv2d(4, 4, kernel_size=1)
        self.conv3 = nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=4)
        self.linear3 = nn.Linear(8, 6)
        self.bn1 = nn.BatchNorm1d(6)
        self.linear4 = nn.Linear(6, 3)

    def forward(self, x):
        x = F.silu(self.conv1(x))
        # scale { global_avg_pool2d, linear(C / 2), relu, linear(C), sigmoid }
        g = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=(2, 3))))))
        x = x * g[:, :, None, None]
        # sum { { conv2d(4, kernel = 1), relu6 }, identity, conv2d(4, kernel = 3, groups = 4) }
        x = F.relu6(self.conv2(x)) + x + self.conv3(x)
        x = F.adaptive_avg_pool2d(x, 3)  # 8x8 -> 3x3: overlapping windows
        # concat { global_max_pool2d, { adaptive_avg_pool2d(1), flatten } }
        x = torch.cat((x.amax(dim=(2, 3)), torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), dim=1)
        x = F.relu(self.bn1(self.linear3(x)))
        return self.linear4(x)


CASES = {
    # cnn!: `a: Residual(4, use_1x1conv = true, stride = 2), b: Residual(4)` on [3, 8, 8]
    "residual": (ResidualNet, (3, 8, 8)),
    # cnn!: `Inception(2, (2, 3), (1, 2), 2)` on [3, 6, 6], the network's entry 0
    "inception": (lambda: nn.Sequential(Inception(3, 2, (2, 3), (1, 2), 2)), (3, 6, 6)),
    # cnn!: `dense: DenseBlock(2, 2), trans: Transition(3)` on [3, 6, 6]
    "dense": (DenseNet, (3, 6, 6)),
    # cnn!: see `Misc` in tests/blocks.rs, its layers named as these attributes.
    "misc": (Misc, (4, 8, 8)),
}


def randomise(module):
    """Weights uniform in [-1, 1] / sqrt(fan-in)-ish, and batch norm's statistics and affine
    parameters away from their defaults, so that every part of the formula shows."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            p.uniform_(-1, 1)
            if p.dim() > 1:
                p /= math.sqrt(p[0].numel())
    for name, b in module.named_buffers():
        with torch.no_grad():
            if name.endswith("running_mean"):
                b.uniform_(-0.5, 0.5)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)


def run(case, make, shape):
    net = make()
    randomise(net)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              OUT / f"{case}.safetensors", metadata={"format": "pt"})
    out = {}
    x = torch.rand(3, *shape) * 2 - 1
    net.eval()
    with torch.no_grad():
        out["output.eval"] = net(x)
    net.train()
    xg = x.clone().requires_grad_(True)
    y = net(xg)
    r = torch.rand(*y.shape) * 2 - 1
    (y * r).sum().backward()
    out["input"] = x
    out["r"] = r
    out["output.train"] = y.detach()
    out["grad.input"] = xg.grad
    for name, p in net.named_parameters():
        out[f"grad.{name}"] = p.grad
    for name, b in net.named_buffers():
        if b.is_floating_point():
            out[f"running.{name}"] = b.clone()
    out = {k: v.contiguous() for k, v in out.items()}
    save_file(out, OUT / f"{case}.io.safetensors", metadata={"made_by": f"torch {torch.__version__}"})
    print(f"{case}: output {tuple(y.shape)}, {sum(p.numel() for p in net.parameters())} parameters")


for case, (make, shape) in CASES.items():
    run(case, make, shape)
