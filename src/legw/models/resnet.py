"""ResNets: the standard ImageNet ResNet-50 and a small ResNet for 28 x 28 images.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (arXiv 1512.03385).
ResNet-50 here is the common "v1.5" variant (stride 2 on the 3x3 conv of a bottleneck, as in
torchvision and the MLPerf / LARS reference runs): 25,557,032 parameters at 1000 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out)]


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand (x4), plus the shortcut."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(c_in, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, c_out, 1),
        )
        self.shortcut = (nn.Sequential(*_conv_bn(c_in, c_out, 1, stride))
                         if stride != 1 or c_in != c_out else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the shortcut (1x1 projection when the shape changes)."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(c_in, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3),
        )
        self.shortcut = (nn.Sequential(*_conv_bn(c_in, width, 1, stride))
                         if stride != 1 or c_in != width else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """stem -> stages of residual blocks (each stage but the first halves H, W) -> pool -> fc."""

    def __init__(
        self,
        block: type[Bottleneck] | type[BasicBlock],
        stem: nn.Module,
        stem_channels: int,
        widths: Sequence[int],
        blocks: Sequence[int],
        num_classes: int,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths {tuple(widths)} and blocks {tuple(blocks)} must be "
                             "non-empty and of equal length")
        self.stem = stem
        stages, c_in = [], stem_channels
        for i, (width, n) in enumerate(zip(widths, blocks)):
            if n < 1:
                raise ValueError(f"blocks per stage must be >= 1, got {tuple(blocks)}")
            layers = []
            for j in range(n):
                layers.append(block(c_in, width, 2 if (i > 0 and j == 0) else 1))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self._init(zero_init_residual)

    def _init(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Goyal et al. 2017 (arXiv 1706.02677): gamma = 0 on each block's last BN, so every
            # block starts as the identity; helps large-batch training early on.
            for m in self.modules():
                if isinstance(m, (Bottleneck, BasicBlock)):
                    nn.init.zeros_(m.body[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float ``(B, C, H, W)`` (or ``(B, H, W)`` for one channel) -> logits ``(B, classes)``."""
        if not x.is_floating_point():
            raise ValueError(f"ResNet expects normalized float images, got {x.dtype}")
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet50(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-50 for 224 x 224 RGB: 7x7/2 stem + 3x3/2 max-pool, bottleneck stages [3, 4, 6, 3]."""
    stem = nn.Sequential(*_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, stride=2, padding=1))
    return ResNet(Bottleneck, stem, 64, (64, 128, 256, 512), (3, 4, 6, 3), num_classes,
                  zero_init_residual)


def small_resnet(
    num_classes: int = 10,
    in_channels: int = 1,
    widths: Sequence[int] = (32, 64, 128),
    blocks_per_stage: int = 1,
    stem_stride: int = 2,
) -> ResNet:
    """A small ResNet for 28 x 28 images that trains on a few CPU cores.

    A 3x3 stem with ``widths[0]`` channels and stride ``stem_stride``, then ``len(widths)``
    stages of ``blocks_per_stage`` basic blocks (He et al. 2015), each stage after the first
    halving the resolution: with the defaults 14x14 -> 7x7 -> 4x4, 1x1 projection shortcuts,
    0.31M parameters and about 10M multiply-adds per image. ``widths=(16, 32, 64),
    blocks_per_stage=3, stem_stride=1`` is the CIFAR ResNet-20 layout (0.27M parameters, 31M
    multiply-adds, measured about 3x slower to train on a CPU; see docs/data-and-models.md).
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
    stem = nn.Sequential(*_conv_bn(in_channels, widths[0], 3, stem_stride), nn.ReLU(inplace=True))
    return ResNet(BasicBlock, stem, widths[0], widths, [blocks_per_stage] * len(widths),
                  num_classes)
