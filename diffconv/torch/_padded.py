"""The ghost-padded input as one preallocated buffer.

:func:`fill_padded` writes ``x`` into the middle of the buffer and the ghosts around it, axis by
axis: last axis first, over the data rows of the axes still to come; later passes extrapolate
whole padded rows, which fills the corners (the tensor product, as
:func:`diffconv.torch.padding.lagrange_pad` does).
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


def fill_padded(x: torch.Tensor, plans: Sequence[AxisPlan]) -> torch.Tensor:
    """The ghost-padded input ``(N, C, *(before + L + after))`` of ``x`` ``(N, C, *L)``.

    Float32/float64 only (the ghosts are computed in ``x``'s dtype)."""
    nd = len(plans)
    shape = list(x.shape[:2]) + [p.before + p.length + p.after for p in plans]
    out = x.new_empty(shape)
    _data_view(out, plans, nd).copy_(x)
    for a in reversed(range(nd)):
        p = plans[a]
        if p.before == 0 and p.after == 0:
            continue
        low, high = ghost_tensors(p.kernel_size, p.dilation, p.before, p.after, x.device, x.dtype)
        span = p.kernel_size * p.dilation
        t, dim = _data_view(out, plans, a), 2 + a            # later axes are padded already
        if p.before:
            t.narrow(dim, 0, p.before).copy_(contract(t.narrow(dim, p.before, span), low, dim, x.dtype))
        if p.after:
            t.narrow(dim, p.before + p.length, p.after).copy_(
                contract(t.narrow(dim, p.before + p.length - span, span), high, dim, x.dtype))
    return out
