"""The eager form: the ghost-padded input and one convolution, in one autograd node.

:class:`GhostConv` runs any layer (convolution or transposed, any dimension, stride, dilation,
kernel, dtype, boundary, edge kernel and boundary switch). Forward pads ``x`` with its ghosts
and runs the framework's own convolution on it, unpadded (a transposed one with the padding
raised by the ghosts it added). It saves what the convolution with ``padding='same'`` saves:
``x`` and the parameters. Backward pads ``x`` again, takes the gradients from
``convolution_backward`` and folds the padded input's gradient onto ``x``. The padding and its
fold are one C++ pass each on the CPU (:mod:`~diffconv.torch._native`), else the PyTorch
operations of :mod:`~diffconv.torch._ghosts`. With an edge kernel or the switch, the boundary
output boxes are convolved again from views of the padded input with the edge parameters and
written over. A transposed layer on the C++ kernels runs the plain layer plus its ghost ring
instead (:mod:`~diffconv.torch._ring`), the same values without the padded input.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import _native
from ._ghosts import SMALL_MAP_MAX, AxisGhosts, fold, pad, repad
from ._ring import plain_padding, ring_for, ring_forward, ring_grads

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

_ALL = (slice(None), slice(None))


Span = tuple[tuple[int, int], ...]


class Layout(NamedTuple):
    """Everything shape-dependent about one call (plain Python values: ``torch.compile`` takes a
    layout as a constant): the ghosts of each axis, the convolution that runs on the padded
    input (``padding``/``output_padding`` only for a transposed one), and, for an edge kernel or
    the switch (``special``), the boundary output boxes with the padded-input window each reads."""

    axes: tuple[AxisGhosts, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    transposed: bool = False
    padding: tuple[int, ...] = ()
    output_padding: tuple[int, ...] = ()
    boxes: tuple[tuple[Span, Span], ...] = ()

    @property
    def special(self) -> bool:
        return bool(self.boxes)

    @property
    def has_ghosts(self) -> bool:
        return any(not g.is_identity for g in self.axes)


def convolve(buf: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, lay: Layout, groups: int) -> torch.Tensor:
    """The framework's convolution of the padded input ``buf``."""
    nd = buf.dim() - 2
    if lay.transposed:
        return CONV_TRANSPOSE[nd](buf, w, b, lay.strides, lay.padding, lay.output_padding, groups, lay.dilations)
    return CONV[nd](buf, w, b, lay.strides, 0, lay.dilations, groups)


def _index(span: Span) -> tuple[slice, ...]:
    return _ALL + tuple(slice(lo, hi) for lo, hi in span)


def layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, we: torch.Tensor | None, be: torch.Tensor | None,
          *, lay: Layout, groups: int, boundary_input_grad: bool) -> torch.Tensor:
    """The layer from plain differentiable operations (the composite form, and what a second
    derivative differentiates): ghost padding, the convolution, and the edge boxes written over."""
    return _on_padded(pad(x, lay.axes), w, b, we, be, lay, groups, boundary_input_grad)


def _on_padded(buf: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, we: torch.Tensor | None,
               be: torch.Tensor | None, lay: Layout, groups: int, boundary_input_grad: bool) -> torch.Tensor:
    y = convolve(buf, w, b, lay, groups)
    if lay.special:
        src = buf if boundary_input_grad else buf.detach()
        w_e, b_e = (w if we is None else we), (b if be is None else be)
        for box, window in lay.boxes:
            y[_index(box)] = convolve(src[_index(window)], w_e, b_e, lay, groups)
    return y


class GhostConv(torch.autograd.Function):
    """``apply(x, weight, bias, edge_weight, edge_bias, layout, groups, boundary_input_grad)`` for
    batched ``x`` ``(N, C, *L)``."""

    @staticmethod
    def forward(ctx, x, w, b, we, be, lay, groups, boundary_input_grad):
        ctx.lay, ctx.groups, ctx.bgrad = lay, groups, boundary_input_grad
        plan = _native.plan_for(x, lay.axes)
        if plan is not None and lay.transposed:          # the plain layer and its ghost ring
            ctx.save_for_backward(x, w, b, we, be)
            y = CONV_TRANSPOSE[x.dim() - 2](x, w, b, lay.strides, plain_padding(lay), lay.output_padding, groups,
                                            lay.dilations)
            return ring_forward(y, x, w, ring_for(lay, tuple(w.shape[2:]), tuple(y.shape[2:])), groups)
        sides: list = []
        buf = plan.pad(x) if plan is not None else pad(x, lay.axes, sides)
        if not _small(buf, lay):
            sides = []
        ctx.save_for_backward(x, w, b, we, be, *(t for side in sides for t in side))
        return _on_padded(buf, w, b, we, be, lay, groups, boundary_input_grad)

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors
        tensors, sides = saved[:5], saved[5:]
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():          # a second derivative: differentiate the composite form
            grads = _composite_grads(ctx, tensors, needs, g)
        else:
            grads = _grads(ctx.lay, ctx.groups, ctx.bgrad, g, *tensors, sides, needs)
        return (*grads, None, None, None)


# On small maps (:data:`~diffconv.torch._ghosts.SMALL_MAP_MAX`) forward keeps the ghosts, so that
# backward pads again with one ``cat`` per axis; on larger ones backward computes them again.
# On maps up to JOINT_BACKWARD_MAX[nd] positions one ``convolution_backward`` gives every
# gradient; on larger ones the padded input is freed before its gradient comes (from a transposed
# convolution), so that backward holds no more than zero padding's. In 3-D the transposed
# convolution itself holds more than the joint backward up to 16^3 maps (MONAI's DynUNet: peak
# 0.95x zero padding's joint, 1.27x split). Transposed layers on the PyTorch operations take
# neither: a decoder's maps are all small, and both raised its peak memory.
JOINT_BACKWARD_MAX = {1: 1024, 2: 1024, 3: 6144}


def _small(buf: torch.Tensor, lay: Layout) -> bool:
    return not lay.transposed and math.prod(buf.shape[2:]) <= SMALL_MAP_MAX


def _joint(buf: torch.Tensor, lay: Layout) -> bool:
    return not lay.transposed and math.prod(buf.shape[2:]) <= JOINT_BACKWARD_MAX[buf.dim() - 2]


def _conv_backward(g, inp, w, bias: bool, lay: Layout, groups: int, mask):
    nd = inp.dim() - 2
    return torch.ops.aten.convolution_backward(
        g, inp, w, [w.shape[1] * groups if lay.transposed else w.shape[0]] if bias else None, list(lay.strides),
        list(lay.padding) if lay.transposed else [0] * nd, list(lay.dilations), lay.transposed,
        list(lay.output_padding) if lay.transposed else [0] * nd, groups, mask,
    )


def _grads(lay: Layout, groups: int, bgrad: bool, g, x, w, b, we, be, sides, needs):
    need_x, need_w, need_b, need_we, need_be = needs
    plan = _native.plan_for(x, lay.axes)
    if plan is not None and lay.transposed:
        return (*ring_grads(g, x, w, b is not None, lay, groups, (need_x, need_w, need_b)), None, None)
    if plan is not None:
        buf, unpad = plan.pad(x), plan.fold
    else:
        buf = repad(x, lay.axes, sides) if sides else pad(x, lay.axes)
        unpad = functools.partial(fold, axes=lay.axes)
    if not lay.special and _joint(buf, lay):
        d_buf, dw, db = _conv_backward(g, buf, w, b is not None, lay, groups, [need_x, need_w, need_b])
        return (unpad(d_buf) if need_x else None), dw, db, None, None
    if not lay.special:
        # The parameters' gradients first, then the padded input goes before its gradient comes:
        # the two are never alive together, so backward holds what zero padding's holds.
        _, dw, db = _conv_backward(g, buf, w, b is not None, lay, groups, [False, need_w, need_b])
        shape = buf.shape
        del buf
        return (unpad(_input_grad(g, w, lay, groups, shape)) if need_x else None), dw, db, None, None
    # Boundary outputs came from the edge parameters: the main ones see the others' gradient only.
    g_main = g.clone()
    w_e, b_e = (w if we is None else we), (b if be is None else be)
    mask = [need_x and bgrad, need_we if we is not None else need_w,
            (need_be if be is not None else need_b) and b_e is not None]
    edge_parts = []
    for box, window in lay.boxes:
        g_main[_index(box)] = 0
        if any(mask):
            edge_parts.append((window, _conv_backward(g[_index(box)], buf[_index(window)], w_e,
                                                      b_e is not None, lay, groups, mask)))
    d_buf, dw, db = _conv_backward(g_main, buf, w, b is not None, lay, groups, [need_x, need_w, need_b])
    dwe = dbe = None
    for window, (gx, gw, gb) in edge_parts:
        if gx is not None:
            d_buf[_index(window)] += gx
        if gw is not None:
            if we is not None:
                dwe = gw if dwe is None else dwe + gw
            else:
                dw = dw + gw
        if gb is not None:
            if be is not None:
                dbe = gb if dbe is None else dbe + gb
            else:
                db = db + gb
    return (unpad(d_buf) if need_x else None), dw, db, dwe, dbe


def _input_grad(g: torch.Tensor, w: torch.Tensor, lay: Layout, groups: int, shape: torch.Size) -> torch.Tensor:
    """The gradient on the padded input ``(N, C, *shape[2:])``: the convolution's transpose.
    (``convolution_backward`` would want the padded input itself, or a placeholder it makes
    contiguous.)"""
    nd = g.dim() - 2
    if lay.transposed:
        # An output_padding of at least the stride (allowed where the dilation is larger) adds
        # output rows that no input reaches: the convolution then returns rows past the input.
        d_buf = CONV[nd](g, w, None, lay.strides, lay.padding, lay.dilations, groups)
        for a, n in enumerate(shape[2:]):
            if d_buf.shape[2 + a] != n:
                d_buf = d_buf.narrow(2 + a, 0, n)
        return d_buf
    extra = [n - ((m - 1) * s + d * (k - 1) + 1)
             for n, m, s, d, k in zip(shape[2:], g.shape[2:], lay.strides, lay.dilations, w.shape[2:])]
    return CONV_TRANSPOSE[nd](g, w, None, lay.strides, 0, extra, groups, lay.dilations)


def _composite_grads(ctx, tensors, needs, g):
    """Differentiable gradients (for double backward): autograd through :func:`layer`."""
    with torch.enable_grad():
        y = layer(*tensors, lay=ctx.lay, groups=ctx.groups, boundary_input_grad=ctx.bgrad)
    wanted = [t for t, n in zip(tensors, needs) if n and t is not None]
    found = iter(torch.autograd.grad(y, wanted, g, create_graph=True, allow_unused=True))
    return [next(found) if n and t is not None else None for t, n in zip(tensors, needs)]
