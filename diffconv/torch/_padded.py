"""The ghost-padded input as one preallocated buffer, and the transpose of building it.

:func:`fill_padded` writes ``x`` into the middle of the buffer and the ghosts around it, axis by
axis: last axis first, over the data rows of the axes still to come; later passes extrapolate
whole padded rows, which fills the corners (the tensor product, as
:func:`diffconv.torch.padding.lagrange_pad` does). It also returns the ghost blocks it wrote,
so that a second fill of the same input copies them instead of extrapolating again. :func:`fold_ghosts` is its transpose: it
turns a gradient on the padded buffer into the gradient on ``x``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..plan import AxisPlan
from ._coeffs import ghost_tensors
from .padding import contract


def _data_view(t: torch.Tensor, plans: Sequence[AxisPlan], upto: int) -> torch.Tensor:
    """``t`` restricted to the data positions of spatial axes ``< upto``."""
    for a in range(upto):
        t = t.narrow(2 + a, plans[a].before, plans[a].length)
    return t


def padded_shape(x: torch.Tensor, plans: Sequence[AxisPlan]) -> list[int]:
    """Shape of the ghost-padded buffer of ``x`` ``(N, C, *L)``."""
    return list(x.shape[:2]) + [p.before + p.length + p.after for p in plans]


def fill_padded(
    x: torch.Tensor, plans: Sequence[AxisPlan], ghosts: Sequence[torch.Tensor] | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The ghost-padded input ``(N, C, *(before + L + after))`` of ``x`` ``(N, C, *L)``, and its
    ghost blocks (per padded axis, last first: the low block, then the high one).

    ``ghosts``: the blocks of an earlier fill of the same ``x``, copied in instead of computed
    again (the backward pass rebuilds the buffer this way); ``None`` entries are computed. Float32/float64 only (the ghosts
    are computed in ``x``'s dtype)."""
    nd = len(plans)
    out = x.new_empty(padded_shape(x, plans))
    _data_view(out, plans, nd).copy_(x)
    given = iter(ghosts) if ghosts is not None else None
    made = []
    for a in reversed(range(nd)):
        p = plans[a]
        span = p.kernel_size * p.dilation
        t, dim = _data_view(out, plans, a), 2 + a            # later axes are padded already
        # (first ghost position, ghost count, first source position, which ghost matrix)
        for start, width, src, side in ((0, p.before, p.before, 0),
                                        (p.before + p.length, p.after, p.before + p.length - span, 1)):
            if width == 0:
                continue
            block = next(given) if given is not None else None
            if block is None:
                rows = ghost_tensors(p.kernel_size, p.dilation, p.before, p.after, x.device, x.dtype)[side]
                block = contract(t.narrow(dim, src, span), rows, dim, x.dtype)
            t.narrow(dim, start, width).copy_(block)
            made.append(block)
    return out, made


def fold_ghosts(grad: torch.Tensor, plans: Sequence[AxisPlan]) -> torch.Tensor:
    """Gradient on ``x`` from ``grad`` on its ghost-padded buffer ``(N, C, *(before + L + after))``.

    Adds each ghost's gradient onto the edge samples it was extrapolated from, in place, axis by
    axis in the reverse order of :func:`fill_padded` (first axis first, so that a corner's
    gradient travels through both of its axes); returns the data part of ``grad`` (a view).
    """
    for a, p in enumerate(plans):
        if p.before == 0 and p.after == 0:
            continue
        low, high = ghost_tensors(p.kernel_size, p.dilation, p.before, p.after, grad.device, grad.dtype)
        span = p.kernel_size * p.dilation
        t, dim = _data_view(grad, plans, a), 2 + a
        if p.before:
            t.narrow(dim, p.before, span).add_(contract(t.narrow(dim, 0, p.before), low.T, dim, grad.dtype))
        if p.after:
            t.narrow(dim, p.before + p.length - span, span).add_(
                contract(t.narrow(dim, p.before + p.length, p.after), high.T, dim, grad.dtype))
    return _data_view(grad, plans, len(plans))
