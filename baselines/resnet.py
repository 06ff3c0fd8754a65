"""ResNet-18 in plain torch (torchvision does not import beside this project's torch).

Parameter names equal torchvision's `resnet18` (conv1, bn1, layer1.0.conv1, ..., layer4.1.downsample.0),
so a torchvision or R3M state dict loads after stripping its prefix (see `baselines.r3m`). The fully
connected layer is left out, as R3M does (`convnet.fc = Identity()`). `width` scales every stage
(64 = the real ResNet-18; smaller widths only for the CPU presets).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 trunk: `features` gives the last stage's map (B, 8w, ceil(H/32), ceil(W/32)),
    `forward` its global average (B, 8w), R3M's embedding."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        planes = [width, 2 * width, 4 * width, 8 * width]
        inplanes = width
        for i, p in enumerate(planes):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, p, stride), BasicBlock(p, p)))
            inplanes = p
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def out_dim(self) -> int:
        return 8 * self.width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def feature_hw(image_hw: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of `ResNet18.features` for an input of `image_hw` (five halvings, rounding up)."""
    h, w = image_hw
    for _ in range(5):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


class ImageNetNormalize(nn.Module):
    """Images in [-1, 1] -> [0, 1] -> ImageNet mean/std, the input R3M (and torchvision) expect."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return ((images + 1.0) * 0.5 - self.mean) / self.std
