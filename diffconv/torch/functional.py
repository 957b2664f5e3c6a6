"""Padding-free convolution for PyTorch (channels-first, weights ``(out, in/groups, *k)``).

Fast form: pad every spatial axis with Lagrange ghosts (:func:`lagrange_pad`), then run the
ordinary VALID ``F.convNd``. The ghost weights come from :mod:`diffconv.coefficients`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..plan import AxisPlan, axis_plan
from ._validate import validate_conv_args
from .padding import lagrange_pad, pad_axis

__all__ = ["conv1d", "conv2d", "conv3d", "lagrange_pad"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
def _boundary_mask(plans: Sequence[AxisPlan], device: torch.device) -> torch.Tensor:
    """Bool tensor of output spatial shape: True where the window reaches a ghost."""
    nd = len(plans)
    mask = torch.zeros((1,) * nd, dtype=torch.bool, device=device)
    for a, p in enumerate(plans):
        i = torch.arange(p.out_len, device=device)
        shape = [1] * nd
        shape[a] = p.out_len
        mask = mask | ((i < p.n_low) | (i >= p.out_len - p.n_high)).reshape(shape)
    return mask


def _conv_nd(
    nd: int,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | Sequence[int],
    dilation: int | Sequence[int],
    groups: int,
    edge_weight: torch.Tensor | None,
    edge_bias: torch.Tensor | None,
    boundary_input_grad: bool,
) -> torch.Tensor:
    strides, dils = validate_conv_args(
        nd, input, weight, bias, edge_weight, edge_bias, stride, dilation, groups, boundary_input_grad
    )
    unbatched = input.dim() == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    ks = tuple(weight.shape[2:])
    plans = [axis_plan(x.shape[2 + a], ks[a], dils[a], strides[a], axis=a) for a in range(nd)]

    padded = x
    for a in reversed(range(nd)):
        p = plans[a]
        padded = pad_axis(padded, 2 + a, p.kernel_size, p.dilation, p.before, p.after)
    conv = _CONV[nd]
    out = conv(padded, weight, bias, strides, 0, dils, groups)

    special = edge_weight is not None or edge_bias is not None or not boundary_input_grad
    if special and any(p.n_low or p.n_high for p in plans):
        w_edge = weight if edge_weight is None else edge_weight
        b_edge = bias if edge_bias is None else edge_bias
        src = padded if boundary_input_grad else padded.detach()
        out_edge = conv(src, w_edge, b_edge, strides, 0, dils, groups)
        out = torch.where(_boundary_mask(plans, x.device), out_edge, out)
    return out.squeeze(0) if unbatched else out


_SIGNATURE_DOC = """Size-keeping padding-free {nd}-d convolution.

    input: ``(N, C, *L)`` or unbatched ``(C, *L)`` with {nd} spatial dims; weight:
    ``(O, C/groups, *k)``; returns ``(N, O, *ceil(L/stride))``. Like
    ``F.conv{nd}d(padding='same')`` at stride 1, but the border sees Lagrange ghosts instead of
    zeros. Outputs whose window reaches a ghost use ``edge_weight``/``edge_bias`` when given,
    and pass no gradient to ``input`` when ``boundary_input_grad=False``.
    """


def conv1d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, groups: int = 1, *,
           edge_weight: torch.Tensor | None = None, edge_bias: torch.Tensor | None = None,
           boundary_input_grad: bool = True) -> torch.Tensor:
    return _conv_nd(1, input, weight, bias, stride, dilation, groups, edge_weight, edge_bias, boundary_input_grad)


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, groups: int = 1, *,
           edge_weight: torch.Tensor | None = None, edge_bias: torch.Tensor | None = None,
           boundary_input_grad: bool = True) -> torch.Tensor:
    return _conv_nd(2, input, weight, bias, stride, dilation, groups, edge_weight, edge_bias, boundary_input_grad)


def conv3d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, groups: int = 1, *,
           edge_weight: torch.Tensor | None = None, edge_bias: torch.Tensor | None = None,
           boundary_input_grad: bool = True) -> torch.Tensor:
    return _conv_nd(3, input, weight, bias, stride, dilation, groups, edge_weight, edge_bias, boundary_input_grad)


for _nd, _f in ((1, conv1d), (2, conv2d), (3, conv3d)):
    _f.__doc__ = _SIGNATURE_DOC.format(nd=_nd)
