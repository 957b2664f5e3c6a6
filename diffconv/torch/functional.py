"""Padding-free convolution for PyTorch (channels-first, weights ``(out, in/groups, *k)``).

``convNd`` checks its arguments, plans the geometry and hands the call to the form that
:func:`choose_form` picks, the one decision point:

* ``"banded"`` (:mod:`~diffconv.torch._banded`): plain float 1-d layers and 2-d ones on maps of
  at least :data:`BANDED_MIN_SIDE`, stride 1, square odd kernel: ``padding='same'``'s own
  convolution plus the ghost ring as thin bands (four in 2-d, two in 1-d), one autograd node;
* ``"padded"`` (:mod:`~diffconv.torch._padded`): every other eager call: a transient
  ghost-padded buffer and a VALID convolution, one autograd node;
* ``"composite"``: the ghost-padded input from plain differentiable operations
  (:func:`~diffconv.torch._ghosts.pad_axis`), then a VALID convolution; used wherever
  PyTorch traces or transforms the call (``torch.compile``/``torch.export``, ``torch.jit.trace``,
  ``torch.func``, forward-mode AD, the meta device) and for double backward;
* ``"traced-banded"``: under ``torch.compile``/``torch.export``, the layers the banded form
  covers trace it as plain operations (:func:`~diffconv.torch._banded.banded_conv2d`).

All of them get their ghosts from one builder, :mod:`diffconv.torch._ghosts`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from ..plan import AxisPlan, Box, axis_plan, boundary_boxes
from ._banded import BandedConv, banded_applies, banded_conv2d
from ._ghosts import Side, pad_axis
from ._padded import CONV, PaddedConv, out_box, padded_box
from ._validate import autocast_enabled, transformed, validate_conv_args
from .conv_transpose import conv_transpose1d, conv_transpose2d, conv_transpose3d
from .padding import lagrange_pad

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "lagrange_pad"]

#: Shortest side of the 2-d maps the banded form takes. On smaller maps the padded buffer is as
#: fast or faster (docs/benchmarks.md).
BANDED_MIN_SIDE = 64

#: Largest 2-d map (positions per channel) on which layers with fewer input than output
#: channels keep the padded buffer, which copies the smaller tensor, where the bands would
#: touch the edges of the larger output and its gradient.
INPUT_LIGHT_MAX_POSITIONS = 128 * 128

_PLAIN_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Geometry:
    """Everything shape-dependent about one call: per-axis plans and the boundary boxes."""

    plans: tuple[AxisPlan, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    boxes: tuple[tuple[int, Box], ...]
    special: bool                   # edge kernel or boundary switch, on a layer with a boundary


@functools.lru_cache(maxsize=512)
def geometry(lengths: tuple[int, ...], kernel_size: tuple[int, ...], strides: tuple[int, ...],
             dilations: tuple[int, ...], special: bool) -> Geometry:
    plans = tuple(axis_plan(L, k, d, s) for L, k, d, s in zip(lengths, kernel_size, dilations, strides))
    boxes = tuple(boundary_boxes(plans))
    return Geometry(plans, strides, dilations, boxes, special and bool(boxes))


def choose_form(x: torch.Tensor, weight: torch.Tensor, geo: Geometry, tensors: Sequence[torch.Tensor | None] = ()) -> str:
    """The form that runs a call: ``"banded"``, ``"padded"``, ``"composite"`` or
    ``"traced-banded"`` (module docstring). ``x``: the batched input ``(N, C, *L)``."""
    lengths = tuple(x.shape[2:])
    banded = (not geo.special and x.dtype in _PLAIN_DTYPES
              and banded_applies(lengths, tuple(weight.shape[2:]), geo.strides, geo.dilations))
    if transformed(x, weight, *tensors):
        return "traced-banded" if banded and len(lengths) == 2 and torch.compiler.is_compiling() else "composite"
    if banded and len(lengths) == 1:
        return "banded"
    if not banded or min(lengths) < BANDED_MIN_SIDE:
        return "padded"
    input_light = x.shape[1] < weight.shape[0] and lengths[0] * lengths[1] <= INPUT_LIGHT_MAX_POSITIONS
    return "padded" if input_light else "banded"


def composite(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, edge_weight: torch.Tensor | None,
              edge_bias: torch.Tensor | None, *, geo: Geometry, groups: int, boundary_input_grad: bool) -> torch.Tensor:
    """The layer from plain differentiable operations: ghost padding, then a VALID convolution;
    with an edge kernel or the switch, the boundary boxes convolved again from (detached) views
    of the padded input with the edge parameters and written over."""
    padded = x
    for a in reversed(range(len(geo.plans))):
        padded = pad_axis(padded, 2 + a, Side.of(geo.plans[a]))
    conv = CONV[x.dim() - 2]
    y = conv(padded, weight, bias, geo.strides, 0, geo.dilations, groups)
    if geo.special:
        src = padded if boundary_input_grad else padded.detach()
        w_e = weight if edge_weight is None else edge_weight
        b_e = bias if edge_bias is None else edge_bias
        for _, box in geo.boxes:
            y[out_box(box)] = conv(src[padded_box(geo.plans, box)], w_e, b_e, geo.strides, 0, geo.dilations, groups)
    return y


def _conv_nd(nd: int, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
             stride: int | Sequence[int], dilation: int | Sequence[int], groups: int,
             edge_weight: torch.Tensor | None, edge_bias: torch.Tensor | None, boundary_input_grad: bool) -> torch.Tensor:
    if isinstance(input, torch.Tensor) and autocast_enabled(input.device.type):
        # Decide the dtype once, as autocast would for a convolution, then run with autocast off
        # so that the ghosts are computed in >= float32 and the saved tensors keep one dtype.
        device_type = input.device.type
        dtype = torch.get_autocast_dtype(device_type)
        cast = [t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64
                else t for t in (input, weight, bias, edge_weight, edge_bias)]
        with torch.autocast(device_type, enabled=False):
            return _conv_nd(nd, cast[0], cast[1], cast[2], stride, dilation, groups, cast[3], cast[4],
                            boundary_input_grad)
    strides, dils = validate_conv_args(
        nd, input, weight, bias, edge_weight, edge_bias, stride, dilation, groups, boundary_input_grad
    )
    unbatched = input.dim() == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    special = edge_weight is not None or edge_bias is not None or not boundary_input_grad
    # int(): under torch.jit.trace sizes may come as traced values.
    geo = geometry(tuple(int(n) for n in x.shape[2:]), tuple(int(k) for k in weight.shape[2:]), strides, dils, special)
    form = choose_form(x, weight, geo, (bias, edge_weight, edge_bias))
    run = functools.partial(composite, geo=geo, groups=groups, boundary_input_grad=boundary_input_grad)
    if form == "banded":
        out = BandedConv.apply(x, weight, bias, groups, x.device.type == "cpu", run)
    elif form == "padded":
        out = PaddedConv.apply(x, weight, bias, edge_weight, edge_bias, geo, groups, boundary_input_grad, run)
    elif form == "traced-banded":
        out = banded_conv2d(x, weight, bias, groups)
    else:
        out = run(x, weight, bias, edge_weight, edge_bias)
    return out.squeeze(0) if unbatched else out


_SIGNATURE_DOC = """Size-keeping padding-free {nd}-d convolution.

    input: ``(N, C, *L)`` or unbatched ``(C, *L)`` with {nd} spatial dims (any lengths >= 1);
    weight: ``(O, C/groups, *k)``; returns ``(N, O, *ceil(L/stride))``. Like
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
