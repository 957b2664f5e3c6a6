"""The ghost-padded input as one preallocated buffer, and the transpose of building it.

:func:`fill_padded` writes ``x`` into the middle of the buffer and the ghosts around it, axis by
axis: last axis first, over the data rows of the axes still to come; later passes extrapolate
whole padded rows, which fills the corners (the tensor product, as
:func:`diffconv.torch.padding.lagrange_pad` does). Each axis takes three operations: gather
its edge slabs (both sides), one matrix product with the ghost weights of both sides, scatter
the ghosts. It also returns the ghosts it wrote, so that a second fill of the same input copies
them instead of extrapolating again. :func:`fold_ghosts` is its transpose: it turns a gradient
on the padded buffer into the gradient on ``x``. The indices are computed once per geometry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from ..plan import AxisPlan
from ._coeffs import ghost_operator


@dataclass(frozen=True)
class _Axis:
    """One padded axis: the buffer's view it works in, and positions along the axis."""

    dim: int                     # tensor dim of the axis
    lead: tuple[slice, ...]      # restricts the axes before it to their data positions
    source: tuple[int, ...]      # the k*d samples each side's ghosts come from (low, then high)
    ghosts: tuple[int, ...]      # where the ghosts go (low side, then high)


@functools.lru_cache(maxsize=512)
def _axes(plans: tuple[AxisPlan, ...]) -> tuple[_Axis, ...]:
    """The padded axes in fill order (last axis first)."""
    out = []
    for a in reversed(range(len(plans))):
        p = plans[a]
        if not (p.before or p.after):
            continue
        span, high = p.kernel_size * p.dilation, p.before + p.length
        lead = (slice(None), slice(None)) + tuple(slice(q.before, q.before + q.length) for q in plans[:a])
        source = (tuple(range(p.before, p.before + span)) if p.before else ()) + (
            tuple(range(high - span, high)) if p.after else ())
        ghosts = tuple(range(p.before)) + tuple(range(high, high + p.after))
        out.append(_Axis(2 + a, lead, source, ghosts))
    return tuple(out)


@functools.lru_cache(maxsize=512)
def _index(positions: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``positions`` as an index tensor on ``device`` (built once)."""
    return torch.tensor(positions, device=device)


def _weights(p: AxisPlan, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The axis's :func:`ghost_operator`."""
    return ghost_operator(p.kernel_size, p.dilation, p.before, p.after, device, dtype)


@functools.lru_cache(maxsize=512)
def _data_index(plans: tuple[AxisPlan, ...]) -> tuple[slice, ...]:
    """Index of the data (non-ghost) part of the buffer."""
    return (slice(None), slice(None)) + tuple(slice(p.before, p.before + p.length) for p in plans)


def padded_shape(x: torch.Tensor, plans: Sequence[AxisPlan]) -> list[int]:
    """Shape of the ghost-padded buffer of ``x`` ``(N, C, *L)``."""
    return list(x.shape[:2]) + [p.before + p.length + p.after for p in plans]


def lead_matmul(m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``m @ t`` over ``t``'s first dim, as one long matrix product (whatever ``t``'s other
    dims; a strided ``t`` is copied first). Several times faster than a product per map, or a
    skinny one with the contracted axis last.

    ``m``: a matrix ``(a, b)``, or two side blocks ``(2, a, b)`` (a block-diagonal matrix as a
    batch of two products; :func:`~diffconv.torch._coeffs.ghost_operator`), with ``t``
    ``(b, ...)`` or ``(2b, ...)``. Transpose either form with ``m.mT``."""
    if m.dim() == 3:
        return torch.bmm(m, t.reshape(2, m.shape[2], -1)).view(2 * m.shape[1], *t.shape[1:])
    return torch.mm(m, t.reshape(t.shape[0], -1)).view(m.shape[0], *t.shape[1:])


def fill_padded(
    x: torch.Tensor, plans: Sequence[AxisPlan], ghosts: Sequence[torch.Tensor | None] | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The ghost-padded input ``(N, C, *(before + L + after))`` of ``x`` ``(N, C, *L)``, and its
    ghosts, one tensor per padded axis in fill order (last axis first), the axis leading.

    ``ghosts``: those of an earlier fill of the same ``x``, copied in instead of computed again
    (the backward pass rebuilds the buffer this way); ``None`` entries are computed.
    Float32/float64 only (the ghosts are computed in ``x``'s dtype)."""
    plans = tuple(plans)
    out = x.new_empty(padded_shape(x, plans))
    out[_data_index(plans)].copy_(x)
    made = []
    for i, axis in enumerate(_axes(plans)):
        view = out[axis.lead].movedim(axis.dim, 0)
        source, where = _index(axis.source, x.device), _index(axis.ghosts, x.device)
        block = ghosts[i] if ghosts is not None else None
        if block is None:
            block = lead_matmul(_weights(plans[axis.dim - 2], x.device, x.dtype), view.index_select(0, source))
        view.index_copy_(0, where, block)
        made.append(block)
    return out, made


def fold_ghosts(grad: torch.Tensor, plans: Sequence[AxisPlan]) -> torch.Tensor:
    """Gradient on ``x`` from ``grad`` on its ghost-padded buffer ``(N, C, *(before + L + after))``.

    Adds each ghost's gradient onto the edge samples it was extrapolated from, in place, axis by
    axis in the reverse order of :func:`fill_padded` (first axis first, so that a corner's
    gradient travels through both of its axes); returns the data part of ``grad`` (a view).
    """
    plans = tuple(plans)
    for axis in reversed(_axes(plans)):
        view = grad[axis.lead].movedim(axis.dim, 0)
        source, where = _index(axis.source, grad.device), _index(axis.ghosts, grad.device)
        m = _weights(plans[axis.dim - 2], grad.device, grad.dtype)
        view.index_add_(0, source, lead_matmul(m.mT, view.index_select(0, where)))
    return grad[_data_index(plans)]
