"""The padded form: a transient ghost-padded buffer and a VALID convolution, in one autograd node.

Covers every layer (any dimension, stride, dilation, kernel, dtype, edge kernel and boundary
switch). Forward fills the buffer (:func:`fill_padded`) and convolves it; with an edge kernel or
the switch, the boundary output boxes (:func:`diffconv.plan.boundary_boxes`) are convolved
again from views of the buffer with the edge parameters and written over. Only ``x``, the
parameters and the last axis's ghosts (two thin slabs) are saved, what ``padding='same'``
saves plus a rim. Backward rebuilds the buffer for the weight gradient, frees it, and takes the
input gradient as the buffer's gradient (one transposed convolution) with its ghost part folded
onto the edge samples (:func:`fold_ghosts`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..plan import AxisPlan, Box, window
from ._ghosts import Side, add_edges, edges, extrapolate, fold

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

_ALL = (slice(None), slice(None))


def _data(plans: Sequence[AxisPlan]) -> tuple[slice, ...]:
    """Index of the data part of the padded buffer."""
    return _ALL + tuple(slice(p.before, p.before + p.length) for p in plans)


def padded_box(plans: Sequence[AxisPlan], box: Box) -> tuple[slice, ...]:
    """Index of the padded-input window that the outputs of ``box`` read."""
    return _ALL + tuple(slice(*window(p, lo, hi)) for p, (lo, hi) in zip(plans, box))


def out_box(box: Box) -> tuple[slice, ...]:
    """Index of ``box`` in the output."""
    return _ALL + tuple(slice(lo, hi) for lo, hi in box)


def _axis_view(buf: torch.Tensor, plans: Sequence[AxisPlan], a: int) -> torch.Tensor:
    """Buffer view for axis ``a``'s ghosts: data rows of the axes before ``a``, everything after."""
    return buf[_ALL + tuple(slice(q.before, q.before + q.length) for q in plans[:a])]


def _set_ghosts(view: torch.Tensor, dim: int, p: AxisPlan, ghosts: torch.Tensor) -> None:
    view.narrow(dim, 0, p.before).copy_(ghosts[:p.before].movedim(0, dim))
    view.narrow(dim, p.before + p.length, p.after).copy_(ghosts[p.before:].movedim(0, dim))


def _ghost_part(view: torch.Tensor, dim: int, p: AxisPlan) -> torch.Tensor:
    """The ghosts of ``view`` along ``dim``, stacked with the axis leading (as :func:`extrapolate` gives them)."""
    return torch.cat([view.narrow(dim, 0, p.before).movedim(dim, 0),
                      view.narrow(dim, p.before + p.length, p.after).movedim(dim, 0)])


def fill_padded(
    x: torch.Tensor, plans: Sequence[AxisPlan], kept: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ghost-padded input ``(N, C, *(before + L + after))`` of ``x`` ``(N, C, *L)``, and the
    last axis's ghosts (axis leading). Axes are padded last first, each over the data rows of
    the axes before it and the whole padded extent of those after, so corners are the tensor
    product. ``kept``: the last axis's ghosts of an earlier fill, copied instead of recomputed."""
    shape = list(x.shape[:2]) + [p.before + p.length + p.after for p in plans]
    fmt = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
    buf = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    buf[_data(plans)].copy_(x)
    last = None
    for a in reversed(range(len(plans))):
        p = plans[a]
        if not (p.before or p.after):
            continue
        view, dim = _axis_view(buf, plans, a), 2 + a
        if a == len(plans) - 1 and kept is not None:
            ghosts = kept
        else:
            ghosts = extrapolate(edges(view, dim, Side.of(p), p.before, p.length), Side.of(p))
        _set_ghosts(view, dim, p, ghosts)
        if a == len(plans) - 1:
            last = ghosts
    return buf, last


def fold_ghosts(grad: torch.Tensor, plans: Sequence[AxisPlan]) -> torch.Tensor:
    """Gradient on ``x`` from ``grad`` on its padded buffer: the transpose of :func:`fill_padded`,
    first axis first (so a corner's gradient travels through both its axes). In place; returns
    the data part of ``grad`` (a view)."""
    for a, p in enumerate(plans):
        if not (p.before or p.after):
            continue
        view, dim = _axis_view(grad, plans, a), 2 + a
        add_edges(view, dim, fold(_ghost_part(view, dim, p), Side.of(p)), Side.of(p), p.before, p.length)
    return grad[_data(plans)]


class PaddedConv(torch.autograd.Function):
    """``apply(x, weight, bias, edge_weight, edge_bias, geo, groups, boundary_input_grad, composite)``
    for batched ``x`` ``(N, C, *L)``; ``composite`` differentiates a second-order backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, edge_weight, edge_bias, geo, groups, boundary_input_grad, composite):
        buf, ctx.kept = fill_padded(x, geo.plans)
        y = CONV[x.dim() - 2](buf, weight, bias, geo.strides, 0, geo.dilations, groups)
        if geo.special:
            w_e = weight if edge_weight is None else edge_weight
            b_e = bias if edge_bias is None else edge_bias
            for _, box in geo.boxes:
                y[out_box(box)] = CONV[x.dim() - 2](buf[padded_box(geo.plans, box)], w_e, b_e, geo.strides, 0,
                                                    geo.dilations, groups)
        ctx.geo, ctx.groups, ctx.bgrad, ctx.composite = geo, groups, boundary_input_grad, composite
        ctx.save_for_backward(x, weight, bias, edge_weight, edge_bias)
        return y

    @staticmethod
    def backward(ctx, g):
        tensors = ctx.saved_tensors
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():
            grads = composite_grads(ctx.composite, tensors, needs, g)
        else:
            grads = _padded_grads(ctx, g.contiguous(), *tensors, needs)
        return (*grads, None, None, None, None)


def _padded_grads(ctx, g, x, w, b, we, be, needs):
    geo, groups, nd = ctx.geo, ctx.groups, x.dim() - 2
    need_x, need_w, need_b, need_we, need_be = needs
    kept, ctx.kept = ctx.kept, None           # a second backward (retain_graph) recomputes them
    buf, _ = fill_padded(x, geo.plans, kept)
    g_main, edge_parts = g, []
    dw = db = dwe = dbe = None
    if geo.special:
        # Boundary outputs came from the edge parameters: the main ones see the others only.
        g_main = g.clone()
        w_e, b_e = (w if we is None else we), (b if be is None else be)
        mask = [need_x and ctx.bgrad, need_we if we is not None else need_w,
                (need_be if be is not None else need_b) and b_e is not None]
        for _, box in geo.boxes:
            g_main[out_box(box)] = 0
            if any(mask):
                edge_parts.append((box, _conv_backward(g[out_box(box)], buf[padded_box(geo.plans, box)], w_e,
                                                       b_e is not None, geo, groups, mask)))
    if need_w or need_b:
        _, dw, db = _conv_backward(g_main, buf, w, b is not None, geo, groups, [False, need_w, need_b])
    for _, (_, gw, gb) in edge_parts:
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
    del buf
    dx = None
    if need_x:
        # A transposed convolution, not convolution_backward: that one wants an input tensor of
        # the buffer's shape (and makes even a placeholder for it contiguous).
        extra = [p.before + p.length + p.after - ((n - 1) * p.stride + p.dilation * (p.kernel_size - 1) + 1)
                 for p, n in zip(geo.plans, g.shape[2:])]
        d_buf = CONV_TRANSPOSE[nd](g_main, w, None, geo.strides, 0, extra, groups, geo.dilations)
        for box, (gx, _, _) in edge_parts:
            if gx is not None:
                d_buf[padded_box(geo.plans, box)] += gx
        dx = fold_ghosts(d_buf, geo.plans)
    return dx, dw, db, dwe, dbe


def _conv_backward(g, inp, w, bias: bool, geo, groups: int, mask):
    nd = inp.dim() - 2
    return torch.ops.aten.convolution_backward(
        g, inp, w, [w.shape[0]] if bias else None, list(geo.strides), [0] * nd, list(geo.dilations), False,
        [0] * nd, groups, mask,
    )


def composite_grads(composite, tensors, needs, g):
    """Differentiable gradients (for double backward): autograd through the composite form."""
    with torch.enable_grad():
        y = composite(*tensors)
    wanted = [t for t, n in zip(tensors, needs) if n and t is not None]
    found = iter(torch.autograd.grad(y, wanted, g, create_graph=True, allow_unused=True))
    return [next(found) if n and t is not None else None for t, n in zip(tensors, needs)]
