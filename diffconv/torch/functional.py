"""Padding-free convolution and transposed convolution for PyTorch (channels-first).

``convNd`` and ``conv_transposeNd`` check their arguments, work out the call's :class:`Layout`
once per shape (the ghost operator of each axis, from :mod:`diffconv.boundary`) and run the
form that :func:`choose_form` picks, the one decision point:

* ``"plain"``: no output reaches a ghost (e.g. a 1x1 kernel): the framework's convolution alone;
* ``"padded"``: eager autograd: :class:`~diffconv.torch._padded.GhostConv`, one autograd node
  that pads, convolves and, in backward, folds the padded input's gradient onto the data;
* ``"composite"``: the same operations as plain differentiable ones
  (:func:`~diffconv.torch._padded.layer`), wherever PyTorch traces or transforms the call
  (``torch.compile``/``torch.export``, ``torch.jit.trace``, ``torch.func``, forward-mode AD,
  the meta device).

Both get their ghosts from one builder, :mod:`diffconv.torch._ghosts`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .._checks import as_tuple
from ..boundary import BoundarySpec, ghost_operator, parse_boundary, parse_order
from ..plan import axis_plan, boundary_boxes, window
from ..transpose_plan import transpose_axis_torch
from ._ghosts import AxisGhosts, eager_cached
from ._padded import GhostConv, Layout, convolve, layer
from ._validate import autocast_enabled, transformed, validate_conv_args
from .padding import lagrange_pad

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "lagrange_pad", "choose_form"]

Pairs = tuple[tuple[str, str], ...]


@eager_cached
def conv_layout(lengths: tuple[int, ...], kernel_size: tuple[int, ...], strides: tuple[int, ...],
                dilations: tuple[int, ...], boundary: Pairs, orders: tuple[int | None, ...], special: bool) -> Layout:
    """The :class:`Layout` of a size-keeping convolution (``special``: edge kernel or switch)."""
    plans = tuple(axis_plan(L, k, d, s, periodic=m[0] == "circular")
                  for L, k, d, s, m in zip(lengths, kernel_size, dilations, strides, boundary))
    axes = tuple(AxisGhosts.of(2 + a, ghost_operator(p.length, p.kernel_size, p.dilation, p.before, p.after,
                                                     boundary[a], orders[a], a))
                 for a, p in enumerate(plans))
    boxes = tuple((box, tuple(window(p, lo, hi) for p, (lo, hi) in zip(plans, box)))
                  for _, box in boundary_boxes(plans)) if special else ()
    return Layout(axes, strides, dilations, boxes=boxes)


@eager_cached
def transpose_layout(lengths: tuple[int, ...], kernel_size: tuple[int, ...], strides: tuple[int, ...],
                     padding: tuple[int, ...], output_padding: tuple[int, ...], dilations: tuple[int, ...],
                     boundary: Pairs, orders: tuple[int | None, ...]) -> Layout:
    """The :class:`Layout` of a transposed convolution. Each axis gets ``g = max(before, after)``
    ghosts on both sides (the side that needs fewer gets ghosts whose outputs fall outside the
    result), so raising the padding by ``g * stride`` crops exactly what they add."""
    axes, pads = [], []
    for a, args in enumerate(zip(lengths, kernel_size, strides, padding, output_padding, dilations)):
        t = transpose_axis_torch(*args)
        g = max(t.before, t.after)
        axes.append(AxisGhosts.of(2 + a, ghost_operator(t.length, t.nodes, t.lattice, g, g, boundary[a], orders[a], a)))
        pads.append(t.crop + g * t.stride)
    return Layout(tuple(axes), strides, dilations, transposed=True, padding=tuple(pads), output_padding=output_padding)


def choose_form(x: torch.Tensor, weight: torch.Tensor, lay: Layout, tensors: Sequence[torch.Tensor | None] = ()) -> str:
    """The form that runs a call: ``"plain"``, ``"padded"`` or ``"composite"`` (module docstring)."""
    if not lay.has_ghosts:
        return "plain"
    return "composite" if transformed(x, weight, *tensors) else "padded"


def _autocast(fn, input: torch.Tensor, tensors: Sequence[Any]):
    """``fn(*cast)`` with the floating ``tensors`` in autocast's convolution dtype and autocast off,
    so that the ghosts are computed in >= float32 and the saved tensors keep one dtype."""
    device_type = input.device.type
    dtype = torch.get_autocast_dtype(device_type)
    cast = [t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64
            else t for t in tensors]
    with torch.autocast(device_type, enabled=False):
        return fn(*cast)


def _run(input: torch.Tensor, weight: torch.Tensor, bias, edge_weight, edge_bias, nd: int, lay: Layout, groups: int,
         boundary_input_grad: bool) -> torch.Tensor:
    unbatched = input.dim() == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    form = choose_form(x, weight, lay, (bias, edge_weight, edge_bias))
    if form == "plain":
        out = convolve(x, weight, bias, lay, groups)
    elif form == "padded":
        out = GhostConv.apply(x, weight, bias, edge_weight, edge_bias, lay, groups, boundary_input_grad)
    else:
        out = layer(x, weight, bias, edge_weight, edge_bias, lay=lay, groups=groups,
                    boundary_input_grad=boundary_input_grad)
    return out.squeeze(0) if unbatched else out


def _spatial(input: torch.Tensor, nd: int) -> tuple[int, ...]:
    # int(): under torch.jit.trace sizes may come as traced values, under torch.export symbolic
    # ints; the geometry is fixed per shape, like the traced or exported graph itself.
    return tuple(int(n) for n in input.shape[-nd:])


def _checked_layout(nd: int, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    edge_weight: torch.Tensor | None, edge_bias: torch.Tensor | None, stride: Any, dilation: Any,
                    groups: int, boundary_input_grad: bool, boundary: BoundarySpec, order: Any) -> Layout:
    """Check a convNd call and return its :class:`Layout`."""
    strides, dils = validate_conv_args(
        nd, input, weight, bias, edge_weight, edge_bias, stride, dilation, groups, boundary_input_grad
    )
    ks = tuple(int(k) for k in weight.shape[2:])
    pairs = parse_boundary(boundary, nd)
    orders = parse_order(order, nd, [k - 1 for k in ks])
    special = edge_weight is not None or edge_bias is not None or not boundary_input_grad
    return conv_layout(_spatial(input, nd), ks, strides, dils, pairs, orders, special)


def _checked_transpose_layout(nd: int, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                              stride: Any, padding: Any, output_padding: Any, groups: int, dilation: Any,
                              boundary: BoundarySpec, order: Any) -> Layout:
    """Check a conv_transposeNd call and return its :class:`Layout`."""
    s, d = validate_conv_args(nd, input, weight, bias, None, None, stride, dilation, groups, True, transposed=True)
    p = as_tuple("padding", padding, nd, minimum=0)
    op = as_tuple("output_padding", output_padding, nd, minimum=0)
    if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
        raise ValueError(f"output_padding must be smaller than stride or dilation on each axis, got "
                         f"output_padding={op}, stride={s}, dilation={d}")
    ks = tuple(int(k) for k in weight.shape[2:])
    pairs = parse_boundary(boundary, nd)
    lengths = _spatial(input, nd)
    nodes = [transpose_axis_torch(*args).nodes for args in zip(lengths, ks, s, p, op, d)]
    orders = parse_order(order, nd, [m - 1 for m in nodes])
    return transpose_layout(lengths, ks, s, p, op, d, pairs, orders)


_LAYOUTS: dict = {}


def _layout(check, nd: int, tensors: tuple, *args) -> Layout:
    """``check(nd, *tensors, *args)``, remembered per call signature (shapes, dtypes and the
    other arguments) in eager mode: a layer called again with inputs of the same shapes skips
    the argument checks and the layout look-up, which cost more than its small maps' ghosts."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return check(nd, *tensors, *args)
    try:
        key = (check, nd, *(None if t is None else (type(t), t.shape, t.dtype) for t in tensors), *args)
        hit = _LAYOUTS.get(key)
    except (TypeError, AttributeError):          # unhashable arguments, non-tensors: check them
        return check(nd, *tensors, *args)
    if hit is None:
        hit = check(nd, *tensors, *args)
        if len(_LAYOUTS) > 4096:
            _LAYOUTS.clear()
        _LAYOUTS[key] = hit
    return hit


def _conv_nd(nd: int, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
             stride: int | Sequence[int], dilation: int | Sequence[int], groups: int,
             edge_weight: torch.Tensor | None, edge_bias: torch.Tensor | None, boundary_input_grad: bool,
             boundary: BoundarySpec, order: int | Sequence[int | None] | None) -> torch.Tensor:
    if isinstance(input, torch.Tensor) and autocast_enabled(input.device.type):
        return _autocast(lambda *t: _conv_nd(nd, t[0], t[1], t[2], stride, dilation, groups, t[3], t[4],
                                             boundary_input_grad, boundary, order),
                         input, (input, weight, bias, edge_weight, edge_bias))
    lay = _layout(_checked_layout, nd, (input, weight, bias, edge_weight, edge_bias), stride, dilation, groups,
                  boundary_input_grad, boundary, order)
    return _run(input, weight, bias, edge_weight, edge_bias, nd, lay, groups, boundary_input_grad)


def _conv_transpose_nd(nd: int, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       stride: Any, padding: Any, output_padding: Any, groups: int, dilation: Any,
                       boundary: BoundarySpec, order: int | Sequence[int | None] | None) -> torch.Tensor:
    if isinstance(input, torch.Tensor) and autocast_enabled(input.device.type):
        return _autocast(lambda *t: _conv_transpose_nd(nd, t[0], t[1], t[2], stride, padding, output_padding,
                                                       groups, dilation, boundary, order),
                         input, (input, weight, bias))
    lay = _layout(_checked_transpose_layout, nd, (input, weight, bias), stride, padding, output_padding, groups,
                  dilation, boundary, order)
    return _run(input, weight, bias, None, None, nd, lay, groups, True)


_CONV_DOC = """Size-keeping padding-free {nd}-d convolution.

    input: ``(N, C, *L)`` or unbatched ``(C, *L)`` with {nd} spatial dims (any lengths >= 1);
    weight: ``(O, C/groups, *k)``; returns ``(N, O, *ceil(L/stride))``. Like
    ``F.conv{nd}d(padding='same')`` at stride 1, but the border sees ghosts instead of zeros:
    ``boundary`` (default ``"diff"``: Lagrange ghosts; or ``"zeros"``, ``"reflect"``,
    ``"replicate"``, ``"circular"``; one mode, or one entry per spatial axis, each a mode or a
    ``(low, high)`` pair) and ``order`` (degree of the ``"diff"`` ghosts, ``0 .. k-1``; ``None``:
    ``k-1``). Outputs whose window reaches a non-circular ghost use ``edge_weight``/``edge_bias``
    when given, and pass no gradient to ``input`` when ``boundary_input_grad=False``.
    """

_TRANSPOSE_DOC = """``F.conv_transpose{nd}d`` with ghosts instead of missing inputs.

    input: ``(N, C_in, *L)`` or ``(C_in, *L)``; weight ``(C_in, C_out/groups, *k)``; returns
    torch's output shape. Near the border each output's sum also runs over the ghost inputs it
    reaches (``boundary``/``order`` as for ``conv{nd}d``; ``order`` from 0 to ``m - 1``,
    ``m = ceil(k * gcd(stride, dilation) / stride)``).
    """


def _make_conv(nd: int):
    def conv(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
             stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, groups: int = 1, *,
             edge_weight: torch.Tensor | None = None, edge_bias: torch.Tensor | None = None,
             boundary_input_grad: bool = True, boundary: BoundarySpec = "diff",
             order: int | Sequence[int | None] | None = None) -> torch.Tensor:
        return _conv_nd(nd, input, weight, bias, stride, dilation, groups, edge_weight, edge_bias,
                        boundary_input_grad, boundary, order)

    conv.__name__ = conv.__qualname__ = f"conv{nd}d"
    conv.__doc__ = _CONV_DOC.format(nd=nd)
    return conv


def _make_conv_transpose(nd: int):
    def conv_transpose(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                       stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                       output_padding: int | Sequence[int] = 0, groups: int = 1,
                       dilation: int | Sequence[int] = 1, *, boundary: BoundarySpec = "diff",
                       order: int | Sequence[int | None] | None = None) -> torch.Tensor:
        return _conv_transpose_nd(nd, input, weight, bias, stride, padding, output_padding, groups, dilation,
                                  boundary, order)

    conv_transpose.__name__ = conv_transpose.__qualname__ = f"conv_transpose{nd}d"
    conv_transpose.__doc__ = _TRANSPOSE_DOC.format(nd=nd)
    return conv_transpose


conv1d, conv2d, conv3d = (_make_conv(n) for n in (1, 2, 3))
conv_transpose1d, conv_transpose2d, conv_transpose3d = (_make_conv_transpose(n) for n in (1, 2, 3))
