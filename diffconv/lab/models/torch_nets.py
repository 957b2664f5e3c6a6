"""Small PyTorch reference networks whose size-keeping convolutions come from a ``conv`` factory.

A factory is called as ``conv(in_channels, out_channels, kernel_size, stride)`` and returns a
module that maps ``(N, in, H, W)`` to ``(N, out, ceil(H/stride), ceil(W/stride))``.
:func:`zero_conv` (``nn.Conv2d`` with ``padding=kernel_size // 2``, odd kernels),
:func:`diff_conv` (:class:`diffconv.torch.DiffConv2d`) and :func:`padded_conv` (``nn.Conv2d``
with replicate or reflect padding) are the ones used here; the models built with any of them
have the same state-dict keys, and ``diffconv.torch.convert`` turns the first into the second.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from diffconv.torch import DiffConv2d

__all__ = ["ConvFactory", "zero_conv", "diff_conv", "padded_conv", "UNet", "BasicBlock", "ResNet"]

ConvFactory = Callable[[int, int, int, int], nn.Module]


def zero_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """``nn.Conv2d`` with zero padding ``kernel_size // 2`` (size-keeping for odd kernels)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2)


def diff_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> DiffConv2d:
    """:class:`diffconv.torch.DiffConv2d`: Lagrange ghosts instead of zero padding."""
    return DiffConv2d(in_channels, out_channels, kernel_size, stride)


def padded_conv(mode: str) -> ConvFactory:
    """Factory of ``nn.Conv2d`` with ``padding=kernel_size // 2`` and ``padding_mode=mode``
    (``'replicate'`` or ``'reflect'``; odd kernels)."""
    if mode not in ("replicate", "reflect"):
        raise ValueError(f"mode must be 'replicate' or 'reflect', got {mode!r}")

    def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, padding_mode=mode)

    return conv


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, conv: ConvFactory, kernel_size: int) -> None:
        super().__init__(conv(cin, cout, kernel_size, 1), nn.SiLU(), conv(cout, cout, kernel_size, 1), nn.SiLU())


class UNet(nn.Module):
    """UNet for image-to-image regression. ``(N, in_channels, H, W) -> (N, out_channels, H, W)``.

    ``depth`` levels of two size-keeping convs each, 2x2 average pooling down, nearest
    upsampling up, skip connections by concatenation, a 1x1 conv head. ``H`` and ``W`` must
    be divisible by ``2**depth``. Channels double per level from ``width``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        width: int = 8,
        depth: int = 2,
        kernel_size: int = 3,
        conv: ConvFactory = zero_conv,
    ) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths[:-1]:
            self.down.append(_DoubleConv(cin, w, conv, kernel_size))
            cin = w
        self.bottom = _DoubleConv(cin, widths[-1], conv, kernel_size)
        self.up = nn.ModuleList(
            _DoubleConv(widths[i + 1] + widths[i], widths[i], conv, kernel_size) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3x3 convs, batch norm, 1x1 (padding 0) projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, conv: ConvFactory = zero_conv) -> None:
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv(cout, cout, 3, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """A small torchvision-style ResNet classifier. ``(N, in_channels, H, W) -> (N, num_classes)``.

    Stem: 3x3 conv; then one stage per entry of ``widths`` with ``blocks`` basic blocks each,
    every stage after the first starting with stride 2; global average pool; linear head.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        *,
        widths: Sequence[int] = (8, 16),
        blocks: int = 1,
        conv: ConvFactory = zero_conv,
    ) -> None:
        super().__init__()
        self.stem = conv(in_channels, widths[0], 3, 1)
        self.bn = nn.BatchNorm2d(widths[0])
        layers = []
        cin = widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and b == 0) else 1, conv))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
