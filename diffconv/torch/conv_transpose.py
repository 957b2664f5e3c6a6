"""``nn.ConvTransposeNd`` subclasses whose border outputs sum over ghosts instead of missing inputs.

The functionals (``conv_transpose1d/2d/3d``) live in :mod:`diffconv.torch.functional` beside
the convolution's and share its path.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from .._checks import as_tuple
from . import functional as DF
from .modules import boundary_repr, checked_spec

__all__ = ["DiffConvTranspose1d", "DiffConvTranspose2d", "DiffConvTranspose3d"]


class _DiffConvTransposeMixin:
    """``nn.ConvTransposeNd``'s constructor without ``padding_mode``, plus ``boundary``/``order``;
    same parameters and state-dict keys."""

    _nd: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        device: Any = None,
        dtype: Any = None,
        *,
        boundary: Any = "diff",
        order: Any = None,
    ) -> None:
        for name, value, minimum in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                     ("padding", padding, 0), ("output_padding", output_padding, 0),
                                     ("dilation", dilation, 1)):
            as_tuple(name, value, self._nd, minimum=minimum)
        super().__init__(  # type: ignore[call-arg]
            in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias, dilation,
            "zeros", device, dtype,
        )
        nodes = [-(-k * math.gcd(s, d) // s) for k, s, d in zip(self.kernel_size, self.stride, self.dilation)]
        self.boundary, self.order = checked_spec(self._nd, boundary, order, [m - 1 for m in nodes])

    def forward(self, input: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        """``input`` ``(N, C_in, *L)`` or ``(C_in, *L)``; ``output_size`` picks ``output_padding`` as in torch."""
        output_padding = self._output_padding(  # type: ignore[attr-defined]
            input, None if output_size is None else list(output_size), list(self.stride),  # type: ignore[attr-defined]
            list(self.padding), list(self.kernel_size), self._nd, list(self.dilation),  # type: ignore[attr-defined]
        )
        return _FUNCTIONAL[self._nd](
            input, self.weight, self.bias, self.stride, self.padding,  # type: ignore[attr-defined]
            tuple(output_padding), self.groups, self.dilation,  # type: ignore[attr-defined]
            boundary=self.boundary, order=self.order,
        )

    def extra_repr(self) -> str:
        return nn.modules.conv._ConvNd.extra_repr(self) + boundary_repr(self.boundary, self.order)  # type: ignore[arg-type]


class DiffConvTranspose1d(_DiffConvTransposeMixin, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` whose border outputs sum over ghosts instead of missing inputs."""

    _nd = 1


class DiffConvTranspose2d(_DiffConvTransposeMixin, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose border outputs sum over ghosts instead of missing inputs."""

    _nd = 2


class DiffConvTranspose3d(_DiffConvTransposeMixin, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` whose border outputs sum over ghosts instead of missing inputs."""

    _nd = 3


_FUNCTIONAL = {1: DF.conv_transpose1d, 2: DF.conv_transpose2d, 3: DF.conv_transpose3d}
