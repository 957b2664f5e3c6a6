"""``nn.ConvNd`` subclasses whose border is handled by Lagrange ghosts instead of padding."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .._checks import as_tuple
from ..boundary import BoundarySpec, parse_boundary, parse_order
from . import functional as DF

__all__ = ["DiffConv1d", "DiffConv2d", "DiffConv3d"]


def checked_spec(nd: int, boundary: BoundarySpec, order: Any, max_orders: Sequence[int]) -> tuple[Any, Any]:
    """``(boundary, order)`` as given, once checked (the layer fails at construction, not at its first call)."""
    parse_boundary(boundary, nd)
    parse_order(order, nd, max_orders)
    return (boundary if isinstance(boundary, str) else tuple(boundary),
            order if order is None or isinstance(order, int) else tuple(order))


def boundary_repr(boundary: Any, order: Any) -> str:
    """The ``extra_repr`` part of a non-default boundary spec and order."""
    return (f", boundary={boundary!r}" if boundary != "diff" else "") + (f", order={order!r}" if order is not None else "")


class _DiffConvMixin:
    """Shared behaviour of the DiffConvNd modules (the conv class supplies ``weight``/``bias``).

    The constructor is ``nn.ConvNd``'s without ``padding``/``padding_mode``, plus
    ``edge_kernel=True``, which adds ``edge_weight``/``edge_bias`` (initialised as copies of
    ``weight``/``bias``) used by every output whose window reaches past the data, and
    ``boundary_input_grad=False``, which stops those outputs' gradient to the input, and
    ``boundary``/``order`` (:func:`diffconv.torch.functional.conv2d`).
    """

    _nd: int
    weight: nn.Parameter
    bias: nn.Parameter | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        edge_kernel: bool = False,
        boundary_input_grad: bool = True,
        boundary: BoundarySpec = "diff",
        order: int | Sequence[int | None] | None = None,
    ) -> None:
        for name, value in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
            as_tuple(name, value, self._nd)
        for name, flag in (("edge_kernel", edge_kernel), ("boundary_input_grad", boundary_input_grad)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        super().__init__(  # type: ignore[call-arg]
            in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias, "zeros", device, dtype
        )
        self.edge_kernel = edge_kernel
        self.boundary_input_grad = boundary_input_grad
        self.boundary, self.order = checked_spec(self._nd, boundary, order, [k - 1 for k in self.kernel_size])
        if edge_kernel:
            self.edge_weight = nn.Parameter(self.weight.detach().clone())
            self.edge_bias = None if self.bias is None else nn.Parameter(self.bias.detach().clone())
        else:
            self.register_parameter("edge_weight", None)
            self.register_parameter("edge_bias", None)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _FUNCTIONAL[self._nd](
            input,
            self.weight,
            self.bias,
            self.stride,
            self.dilation,
            self.groups,
            edge_weight=self.edge_weight,
            edge_bias=self.edge_bias,
            boundary_input_grad=self.boundary_input_grad,
            boundary=self.boundary,
            order=self.order,
        )

    def extra_repr(self) -> str:
        s = nn.modules.conv._ConvNd.extra_repr(self)  # type: ignore[arg-type]
        if self.edge_kernel:
            s += ", edge_kernel=True"
        if not self.boundary_input_grad:
            s += ", boundary_input_grad=False"
        return s + boundary_repr(self.boundary, self.order)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # A plain nn.ConvNd checkpoint has no edge parameters: start them from weight/bias.
        if self.edge_kernel:
            for edge, main in (("edge_weight", "weight"), ("edge_bias", "bias")):
                if prefix + edge not in state_dict and prefix + main in state_dict and getattr(self, edge) is not None:
                    state_dict[prefix + edge] = state_dict[prefix + main]
        super()._load_from_state_dict(  # type: ignore[misc]
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class DiffConv1d(_DiffConvMixin, nn.Conv1d):
    """Drop-in for ``nn.Conv1d(..., padding='same')``. Input ``(N, C, L)``, output ``(N, O, ceil(L/stride))``."""

    _nd = 1


class DiffConv2d(_DiffConvMixin, nn.Conv2d):
    """Drop-in for ``nn.Conv2d(..., padding='same')``. Input ``(N, C, H, W)``, output ``(N, O, ceil(H/s), ceil(W/s))``."""

    _nd = 2


class DiffConv3d(_DiffConvMixin, nn.Conv3d):
    """Drop-in for ``nn.Conv3d(..., padding='same')``. Input ``(N, C, D, H, W)``, output ``(N, O, *ceil(L/s))``."""

    _nd = 3


_FUNCTIONAL = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}
