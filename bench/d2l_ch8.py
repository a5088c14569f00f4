#!/usr/bin/env python3
"""Goldens for examples/10-alexnet.rs .. 17-mobilenet-se.rs: d2l chapter 8's networks (d2l 2.0,
PyTorch edition), defined as the book prints them (its `nn.Lazy*` layers, materialised by one
dummy forward pass), on Fashion-MNIST's one input channel at the book's resolutions, with 10
classes. For each it prints the trainable parameter count
(`sum(p.numel() for p in net.parameters())`; batch norm's running statistics are buffers, not
parameters), the count of those running statistics, and the output shape of each top-level
part of `net.net` and of the whole network.

The classes drop `d2l.Classifier` (training plumbing: `save_hyperparameters`, the loss, the
optimiser) and `init_cnn` (initial values only): neither changes a shape or a count.

Made with PyTorch 2.15.0 (`../shared/bench/compare.sh` installs it into ~/.cache/cnn-bench/venv).
Run from the repository root:

    ~/.cache/cnn-bench/venv/bin/python bench/d2l_ch8.py

With `--export DIR NAME...` it writes, for each named network (alexnet, vgg11, nin, googlenet,
bnlenet, resnet18, densenet), what the `loads_the_books_pytorch_weights` tests of
examples/10-alexnet.rs .. 16-densenet.rs check: `DIR/NAME.safetensors`, the network's
`state_dict()` as `safetensors.torch.save_file` writes it (float32; batch norm's affine
parameters and running statistics set to random values, so that they matter), and
`DIR/NAME.io.safetensors`, a batch of two random images (`input`) and the logits the network
gives them in inference mode (`logits`).
"""

import pathlib
import sys

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F


# --- d2l 8.1 -----------------------------------------------------------------------------------
class AlexNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.LazyConv2d(96, kernel_size=11, stride=4, padding=1),
            nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LazyConv2d(256, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
            nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
            nn.LazyConv2d(256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2), nn.Flatten(),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.LazyLinear(num_classes))

    def forward(self, X):
        return self.net(X)


# --- d2l 8.2 -----------------------------------------------------------------------------------
def vgg_block(num_convs, out_channels):
    layers = []
    for _ in range(num_convs):
        layers.append(nn.LazyConv2d(out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, arch, num_classes=10):
        super().__init__()
        conv_blks = []
        for (num_convs, out_channels) in arch:
            conv_blks.append(vgg_block(num_convs, out_channels))
        self.net = nn.Sequential(
            *conv_blks, nn.Flatten(),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(num_classes))

    def forward(self, X):
        return self.net(X)


# --- d2l 8.3 -----------------------------------------------------------------------------------
def nin_block(out_channels, kernel_size, strides, padding):
    return nn.Sequential(
        nn.LazyConv2d(out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU())


class NiN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nin_block(96, kernel_size=11, strides=4, padding=0),
            nn.MaxPool2d(3, stride=2),
            nin_block(256, kernel_size=5, strides=1, padding=2),
            nn.MaxPool2d(3, stride=2),
            nin_block(384, kernel_size=3, strides=1, padding=1),
            nn.MaxPool2d(3, stride=2),
            nn.Dropout(0.5),
            nin_block(num_classes, kernel_size=3, strides=1, padding=1),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten())

    def forward(self, X):
        return self.net(X)


# --- d2l 8.4 -----------------------------------------------------------------------------------
class Inception(nn.Module):
    # c1--c4 are the number of output channels for each branch
    def __init__(self, c1, c2, c3, c4, **kwargs):
        super(Inception, self).__init__(**kwargs)
        # Branch 1
        self.b1_1 = nn.LazyConv2d(c1, kernel_size=1)
        # Branch 2
        self.b2_1 = nn.LazyConv2d(c2[0], kernel_size=1)
        self.b2_2 = nn.LazyConv2d(c2[1], kernel_size=3, padding=1)
        # Branch 3
        self.b3_1 = nn.LazyConv2d(c3[0], kernel_size=1)
        self.b3_2 = nn.LazyConv2d(c3[1], kernel_size=5, padding=2)
        # Branch 4
        self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.b4_2 = nn.LazyConv2d(c4, kernel_size=1)

    def forward(self, x):
        b1 = F.relu(self.b1_1(x))
        b2 = F.relu(self.b2_2(F.relu(self.b2_1(x))))
        b3 = F.relu(self.b3_2(F.relu(self.b3_1(x))))
        b4 = F.relu(self.b4_2(self.b4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


class GoogleNet(nn.Module):
    def b1(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
            nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b2(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=1), nn.ReLU(),
            nn.LazyConv2d(192, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b3(self):
        return nn.Sequential(Inception(64, (96, 128), (16, 32), 32),
                             Inception(128, (128, 192), (32, 96), 64),
                             nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b4(self):
        return nn.Sequential(Inception(192, (96, 208), (16, 48), 64),
                             Inception(160, (112, 224), (24, 64), 64),
                             Inception(128, (128, 256), (24, 64), 64),
                             Inception(112, (144, 288), (32, 64), 64),
                             Inception(256, (160, 320), (32, 128), 128),
                             nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b5(self):
        return nn.Sequential(Inception(256, (160, 320), (32, 128), 128),
                             Inception(384, (192, 384), (48, 128), 128),
                             nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())

    def __init__(self, num_classes=10):
        super(GoogleNet, self).__init__()
        self.net = nn.Sequential(self.b1(), self.b2(), self.b3(), self.b4(),
                                 self.b5(), nn.LazyLinear(num_classes))

    def forward(self, X):
        return self.net(X)


# --- d2l 8.5 (the concise version, 8.5.5) ------------------------------------------------------
class BNLeNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5), nn.LazyBatchNorm2d(),
            nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.LazyConv2d(16, kernel_size=5), nn.LazyBatchNorm2d(),
            nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(), nn.LazyLinear(120), nn.LazyBatchNorm1d(),
            nn.Sigmoid(), nn.LazyLinear(84), nn.LazyBatchNorm1d(),
            nn.Sigmoid(), nn.LazyLinear(num_classes))

    def forward(self, X):
        return self.net(X)


# --- d2l 8.6 -----------------------------------------------------------------------------------
class Residual(nn.Module):
    """The Residual block of ResNet models."""
    def __init__(self, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1,
                                   stride=strides)
        self.conv2 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1,
                                       stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return F.relu(Y)


class ResNet(nn.Module):
    def b1(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
            nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def block(self, num_residuals, num_channels, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(Residual(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(Residual(num_channels))
        return nn.Sequential(*blk)

    def __init__(self, arch, num_classes=10):
        super(ResNet, self).__init__()
        self.net = nn.Sequential(self.b1())
        for i, b in enumerate(arch):
            self.net.add_module(f'b{i+2}', self.block(*b, first_block=(i==0)))
        self.net.add_module('last', nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.LazyLinear(num_classes)))

    def forward(self, X):
        return self.net(X)


class ResNet18(ResNet):
    def __init__(self, num_classes=10):
        super().__init__(((2, 64), (2, 128), (2, 256), (2, 512)), num_classes)


# --- d2l 8.7 -----------------------------------------------------------------------------------
def conv_block(num_channels):
    return nn.Sequential(
        nn.LazyBatchNorm2d(), nn.ReLU(),
        nn.LazyConv2d(num_channels, kernel_size=3, padding=1))


class DenseBlock(nn.Module):
    def __init__(self, num_convs, num_channels):
        super(DenseBlock, self).__init__()
        layer = []
        for i in range(num_convs):
            layer.append(conv_block(num_channels))
        self.net = nn.Sequential(*layer)

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            # Concatenate input and output of each block along the channels
            X = torch.cat((X, Y), dim=1)
        return X


def transition_block(num_channels):
    return nn.Sequential(
        nn.LazyBatchNorm2d(), nn.ReLU(),
        nn.LazyConv2d(num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    def b1(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
            nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def __init__(self, num_channels=64, growth_rate=32, arch=(4, 4, 4, 4),
                 num_classes=10):
        super(DenseNet, self).__init__()
        self.net = nn.Sequential(self.b1())
        for i, num_convs in enumerate(arch):
            self.net.add_module(f'dense_blk{i+1}', DenseBlock(num_convs,
                                                              growth_rate))
            # The number of output channels in the previous dense block
            num_channels += num_convs * growth_rate
            # A transition layer that halves the number of channels is added
            # between the dense blocks
            if i != len(arch) - 1:
                num_channels //= 2
                self.net.add_module(f'tran_blk{i+1}', transition_block(
                    num_channels))
        self.net.add_module('last', nn.Sequential(
            nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.LazyLinear(num_classes)))

    def forward(self, X):
        return self.net(X)


# --- Not d2l: the MobileNet-style network of examples/17-mobilenet-se.rs ----------------------
class SE(nn.Module):
    """Squeeze-and-excitation: `scale { global_avg_pool2d, linear(C / 4), relu, linear(C),
    sigmoid }`, each channel multiplied by its gate."""
    def __init__(self, channels):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 4)
        self.fc2 = nn.Linear(channels // 4, channels)

    def forward(self, X):
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(X.mean(dim=(2, 3))))))
        return X * g[:, :, None, None]


def separable(in_channels, out_channels, stride=1, se=False):
    """A depthwise-separable unit: depthwise 3x3 (+ batch norm + relu6), squeeze-and-excitation
    on the depthwise output when `se` (MobileNetV3's place for it), pointwise 1x1 (+ batch norm
    + relu6). The convolutions have no bias: batch norm's shift takes its place."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=stride, padding=1,
                  groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels), nn.ReLU6(),
        *([SE(in_channels)] if se else []),
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6())


class MobileNetSE(nn.Module):
    """1x96x96 -> 32x48x48 (stem) -> 64x48x48 -> 128x24x24 -> 256x12x12 -> 512x6x6 -> 10."""
    def __init__(self, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, 32, kernel_size=3, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(32), nn.ReLU6()),
            separable(32, 64),
            separable(64, 128, stride=2),
            separable(128, 128),
            separable(128, 256, stride=2, se=True),
            separable(256, 256, se=True),
            separable(256, 512, stride=2, se=True),
            separable(512, 512, se=True),
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)))

    def forward(self, X):
        return self.net(X)


NETWORKS = [
    ("AlexNet (d2l 8.1)", AlexNet, 224),
    ("VGG-11 (d2l 8.2)", lambda: VGG(arch=((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))), 224),
    ("NiN (d2l 8.3)", NiN, 224),
    ("GoogLeNet (d2l 8.4)", GoogleNet, 96),
    ("BNLeNet (d2l 8.5)", BNLeNet, 28),
    ("ResNet-18 (d2l 8.6)", ResNet18, 96),
    ("DenseNet (d2l 8.7)", DenseNet, 96),
    ("MobileNet-SE (examples/17)", MobileNetSE, 96),
]


def main():
    torch.manual_seed(0)
    print(f"PyTorch {torch.__version__}")
    for name, make, size in NETWORKS:
        net = make()
        net.eval()  # batch norm on a batch of one; lazy layers materialise in either mode
        with torch.no_grad():
            X = torch.zeros(1, 1, size, size)
            net(X)  # materialise the lazy layers
            parts = []
            for part_name, part in net.net.named_children():
                X = part(X)
                parts.append(f"{part_name} {part.__class__.__name__} {list(X.shape[1:])}")
        params = sum(p.numel() for p in net.parameters())
        # Batch norm's running mean and variance (not `num_batches_tracked`, which the Rust
        # layers do not keep): the summary's non-trainable count.
        running = sum(b.numel() for n, b in net.named_buffers()
                      if n.endswith(("running_mean", "running_var")))
        print(f"\n{name}, input [1, {size}, {size}]: params {params}, output {list(X.shape[1:])},"
              f" running statistics {running}")
        for p in parts:
            print(f"  {p}")


EXPORTS = {
    "alexnet": (AlexNet, 224),
    "vgg11": (lambda: VGG(arch=((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))), 224),
    "nin": (NiN, 224),
    "googlenet": (GoogleNet, 96),
    "bnlenet": (BNLeNet, 28),
    "resnet18": (ResNet18, 96),
    "densenet": (DenseNet, 96),
}


def export(directory, names):
    out = pathlib.Path(directory)
    for name in names:
        make, size = EXPORTS[name]
        torch.manual_seed(0)
        net = make()
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, 1, size, size))  # materialise the lazy layers
            for module in net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 1.5)
            x = torch.randn(2, 1, size, size)
            logits = net(x)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()},
                  out / f"{name}.safetensors", metadata={"format": "pt"})
        save_file({"input": x, "logits": logits}, out / f"{name}.io.safetensors",
                  metadata={"made_by": f"torch {torch.__version__}"})
        print(f"{name}: logits {logits.tolist()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--export"]:
        export(sys.argv[2], sys.argv[3:])
    else:
        main()
