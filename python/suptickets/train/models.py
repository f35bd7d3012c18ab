"""The networks ``suptickets train`` builds: small ones for digits and the paper's CIFAR and
ImageNet architectures, as plain ``nn.Module`` s made of ``nn.Conv2d``/``nn.Linear`` (the
training run makes them sparse with ``st.sparsify``).

    build_model("vgg16", in_channels=3, image_size=32, num_classes=10)

- ``mlp``: flatten, two hidden layers of 256 with ReLU (no BatchNorm, as SET's MLPs).
- ``mlp3x1000``: flatten, three hidden layers of 1000 (BatchNorm + ReLU): the 784-1000-1000-
  1000-10 network of SET's paper (Mocanu et al., 2018) on Fashion-MNIST, with BatchNorm.
- ``cnn``: three 3x3 convolutions (32, 64, 128 channels, BatchNorm + ReLU, a 2x2 max-pool
  after the second), global average pooling, a linear classifier.
- ``cnn2``: two 3x3 convolutions (16, 32 channels, BatchNorm + ReLU, a 2x2 max-pool after
  each), a hidden linear layer of 128 (BatchNorm + ReLU), a linear classifier: about 210k
  weights for 28x28 images.
- ``vgg16``: VGG-16 with BatchNorm (configuration D) and the CIFAR classifier of the
  sparse-training literature (512-512-classes, BatchNorm in place of dropout; Dettmers &
  Zettlemoyer 2019, used by RigL, GraNet and Sup-tickets).
- ``resnet18``, ``resnet50``: CIFAR form (3x3 stem, no max-pool) for 32x32 images; for
  ImageNet-sized images (``image_size >= 64``) ``resnet50`` takes its ImageNet form (7x7
  stride-2 stem and max-pool; He et al. 2016).
- ``wrn28-10``: Wide ResNet 28-10 (pre-activation blocks, no dropout; Zagoruyko & Komodakis 2016).
"""
from __future__ import annotations

from torch import nn

MODELS = ("mlp", "mlp3x1000", "cnn", "cnn2", "vgg16", "resnet18", "resnet50", "wrn28-10")


def mlp(in_features: int, num_classes: int, hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))


def mlp3x1000(in_features: int, num_classes: int, hidden: int = 1000) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    for cin in (in_features, hidden, hidden):
        layers += [nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(hidden, num_classes))


def _conv_bn(cin: int, cout: int, bias: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def cnn(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(*_conv_bn(in_channels, 32), *_conv_bn(32, 64), nn.MaxPool2d(2), *_conv_bn(64, 128),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


def cnn2(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    side = image_size // 4
    return nn.Sequential(*_conv_bn(in_channels, 16), nn.MaxPool2d(2), *_conv_bn(16, 32), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * side * side, 128), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                         nn.Linear(128, num_classes))


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(in_channels: int, num_classes: int) -> nn.Module:
    layers, c = [], in_channels
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += _conv_bn(c, v, bias=True)  # biased convolutions, as in the authors' code
            c = v
    head = [nn.Linear(512, 512), nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Linear(512, 512),
            nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), *head)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = _shortcut(cin, out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """ResNet with a CIFAR stem (3x3, stride 1) or an ImageNet stem (7x7 stride 2 + max-pool)."""

    def __init__(self, block, depths, in_channels: int, num_classes: int, imagenet_stem: bool):
        super().__init__()
        if imagenet_stem:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(*_conv_bn(in_channels, 64))
        stages, c = [], 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(c, planes, 2 if (i > 0 and j == 0) else 1))
                c = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stages(self.stem(x))))


class WideBlock(nn.Module):
    """Pre-activation wide basic block."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


def wide_resnet(depth: int, width: int, in_channels: int, num_classes: int) -> nn.Module:
    n = (depth - 4) // 6
    widths = (16, 16 * width, 32 * width, 64 * width)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
    c = widths[0]
    for i, w in enumerate(widths[1:]):
        for j in range(n):
            layers.append(WideBlock(c, w, 2 if (i > 0 and j == 0) else 1))
            c = w
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def build_model(name: str, *, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """A dense model for images of ``in_channels x image_size x image_size``."""
    if name == "mlp":
        return mlp(in_channels * image_size * image_size, num_classes)
    if name == "mlp3x1000":
        return mlp3x1000(in_channels * image_size * image_size, num_classes)
    if name == "cnn":
        return cnn(in_channels, num_classes)
    if name == "cnn2":
        if image_size < 4:
            raise ValueError(f"cnn2 needs images of at least 4x4 pixels, got {image_size}")
        return cnn2(in_channels, image_size, num_classes)
    if name == "vgg16":
        return vgg16(in_channels, num_classes)
    if name == "resnet18":
        return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes, imagenet_stem=image_size >= 64)
    if name == "resnet50":
        return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, num_classes, imagenet_stem=image_size >= 64)
    if name == "wrn28-10":
        return wide_resnet(28, 10, in_channels, num_classes)
    raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
