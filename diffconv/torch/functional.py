"""Padding-free convolution for PyTorch (channels-first, weights ``(out, in/groups, *k)``).

Fast form: the convolution of the Lagrange-ghost-padded input (:func:`lagrange_pad`). In
eager mode it runs in one autograd node (:mod:`diffconv.torch._autograd`): the zero-padded
convolution plus the ghost ring convolved as four thin bands (2-d maps of 64 and more), a
transient ghost-padded buffer and a VALID convolution (other small maps), or the zero-padded
convolution plus thin boundary terms. Each saves what ``padding='same'`` saves, plus at most
a thin rim of ghosts. Under ``torch.compile`` and for higher-order gradients it is a composite
of plain differentiable operations: under ``torch.compile``, plain float 2-d stride-1 layers
with a square odd kernel trace the banded form (:func:`~diffconv.torch._banded.banded_conv2d`);
other layers, and higher-order gradients, pad and then run a VALID ``F.convNd``. The ghost
weights come from :mod:`diffconv.coefficients`.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch

from ._autograd import CONV, LeanConv, plain_banded
from ._banded import banded_conv2d
from ._boundary import Geometry, geometry, out_view
from ._validate import validate_conv_args
from .padding import lagrange_pad, pad_axis

from .conv_transpose import conv_transpose1d, conv_transpose2d, conv_transpose3d

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "lagrange_pad"]

def composite(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    edge_weight: torch.Tensor | None,
    edge_bias: torch.Tensor | None,
    *,
    geo: Geometry,
    groups: int,
    special: bool,
    boundary_input_grad: bool,
) -> torch.Tensor:
    """The fast form from plain differentiable ops: ghost padding, then a VALID convolution.

    Used under ``torch.compile``, for higher-order gradients, and where the lean path does not
    apply. Edge kernel / switch: the boundary output blocks are recomputed from views of the
    padded input and written over the plain result. Under ``torch.compile``, plain float32 /
    float64 layers that the banded form covers trace :func:`banded_conv2d` instead (no padded
    copy of ``x``; measured in docs/benchmarks.md).
    """
    nd = x.dim() - 2
    if torch.compiler.is_compiling() and plain_banded(x, weight, special, geo):
        return banded_conv2d(x, weight, bias, groups)
    padded = x
    for a in reversed(range(nd)):
        p = geo.plans[a]
        padded = pad_axis(padded, 2 + a, p.kernel_size, p.dilation, p.before, p.after)
    conv = CONV[nd]
    y = conv(padded, weight, bias, geo.strides, 0, geo.dilations, groups)
    if special:
        src = padded if boundary_input_grad else padded.detach()
        w_e = weight if edge_weight is None else edge_weight
        b_e = bias if edge_bias is None else edge_bias
        for region in geo.edge_regions:
            box = src
            for a, (r, p) in enumerate(zip(region.ranges, geo.plans)):
                box = box.narrow(2 + a, r.lo + p.before, r.hi - r.lo + 1)
            out_view(y, region).copy_(conv(box, w_e, b_e, geo.strides, 0, geo.dilations, groups))
    return y


def _autocast_inputs(device_type: str, *tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Cast floating inputs to the autocast dtype, as autocast would for a convolution (float64 stays)."""
    dtype = torch.get_autocast_dtype(device_type)
    return [t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64 else t
            for t in tensors]


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
    device_type = input.device.type if isinstance(input, torch.Tensor) else None
    if device_type is not None and torch.is_autocast_enabled(device_type):
        # Decide the dtype once, as autocast would for a convolution, then run with autocast off
        # so that the ghosts are computed in >= float32 and the saved tensors keep one dtype.
        input, weight, bias, edge_weight, edge_bias = _autocast_inputs(device_type, input, weight, bias, edge_weight, edge_bias)
        with torch.autocast(device_type, enabled=False):
            return _conv_nd(nd, input, weight, bias, stride, dilation, groups, edge_weight, edge_bias, boundary_input_grad)
    strides, dils = validate_conv_args(
        nd, input, weight, bias, edge_weight, edge_bias, stride, dilation, groups, boundary_input_grad
    )
    unbatched = input.dim() == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    ks = tuple(weight.shape[2:])
    lengths = tuple(x.shape[2:])
    compiling = torch.compiler.is_compiling()
    geo = (geometry.__wrapped__ if compiling else geometry)(lengths, ks, strides, dils)
    special = (edge_weight is not None or edge_bias is not None or not boundary_input_grad) and bool(geo.edge_regions)
    run = functools.partial(composite, geo=geo, groups=groups, special=special, boundary_input_grad=boundary_input_grad)
    if compiling or not geo.lean:
        out = run(x, weight, bias, edge_weight, edge_bias)
    else:
        out = LeanConv.apply(x, weight, bias, edge_weight, edge_bias, geo, groups, special, boundary_input_grad, run)
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
