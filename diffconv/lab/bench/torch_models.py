"""The PyTorch models ``diffconv speed`` times (``stack``, ``unet``, ``gelu``, ``resnet``).

Each takes ``conv(cin, cout, k, stride=1)`` (:func:`torch_conv`), so the zero-padded model and
its DiffConv twin share state-dict keys. Inputs ``(N, C, S, S)``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvFactory", "torch_conv", "Stack", "UNet", "Gelu", "ResNet"]

ConvFactory = Callable[..., nn.Module]


def torch_conv(variant: str) -> ConvFactory:
    """``conv(cin, cout, k, stride=1)``: ``nn.Conv2d`` with zero padding (``variant='zero'``), or
    ``DiffConv2d`` (``'diff'``)."""
    from diffconv.torch import DiffConv2d

    def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
        if variant == "diff":
            return DiffConv2d(cin, cout, k, stride)
        return nn.Conv2d(cin, cout, k, stride, padding="same" if stride == 1 else k // 2)

    return conv


class Stack(nn.Module):
    """Four ``conv(k)`` layers of constant width, ReLU between. ``(N, C, S, S) -> (N, C, S, S)``."""

    def __init__(self, conv: ConvFactory, channels: int, k: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv(channels, channels, k) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, c in enumerate(self.convs):
            x = c(x) if i == len(self.convs) - 1 else torch.relu(c(x))
        return x


class UNet(nn.Module):
    """3 -> 3 UNet, three levels (features f, 2f, 4f), two tanh convs per block, max-pool down,
    transposed-conv up, skip concatenation, 1x1 output head. ``(N, 3, S, S)``, S % 4 == 0."""

    def __init__(self, conv: ConvFactory, f: int, k: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(conv(cin, cout, k), nn.Tanh(), conv(cout, cout, k), nn.Tanh())

        self.enc0, self.enc1, self.mid = block(3, f), block(f, 2 * f), block(2 * f, 4 * f)
        self.up1, self.dec1 = nn.ConvTranspose2d(4 * f, 2 * f, 2, stride=2), block(4 * f, 2 * f)
        self.up0, self.dec0 = nn.ConvTranspose2d(2 * f, f, 2, stride=2), block(2 * f, f)
        self.head = nn.Conv2d(f, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(x)
        e1 = self.enc1(F.max_pool2d(e0, 2))
        m = self.mid(F.max_pool2d(e1, 2))
        d1 = self.dec1(torch.cat([self.up1(m), e1], 1))
        d0 = self.dec0(torch.cat([self.up0(d1), e0], 1))
        return self.head(d0)


class Gelu(nn.Module):
    """3 -> c -> 2c -> 2c -> c -> 3, GELU between: five size-keeping convs of changing width."""

    def __init__(self, conv: ConvFactory, c: int, k: int) -> None:
        super().__init__()
        widths = [3, c, 2 * c, 2 * c, c, 3]
        self.convs = nn.ModuleList(conv(a, b, k) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, c in enumerate(self.convs):
            x = c(x) if i == len(self.convs) - 1 else F.gelu(c(x))
        return x


class ResNet(nn.Module):
    """Stem conv, then three stages of one residual block (two convs, SiLU, identity skip),
    the stages joined by stride-2 convs (c -> 2c -> 4c), a 1x1 head to 3 features.
    ``(N, 3, S, S) -> (N, 3, S/4, S/4)``."""

    def __init__(self, conv: ConvFactory, c: int, k: int) -> None:
        super().__init__()
        widths = [c, 2 * c, 4 * c]
        self.stem = conv(3, c, k)
        self.blocks = nn.ModuleList(nn.ModuleList([conv(w, w, k), conv(w, w, k)]) for w in widths)
        self.downs = nn.ModuleList(conv(a, b, k, 2) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Conv2d(4 * c, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.stem(x))
        for i, (c1, c2) in enumerate(self.blocks):
            x = F.silu(x + c2(F.silu(c1(x))))
            if i < len(self.downs):
                x = F.silu(self.downs[i](x))
        return self.head(x)
