"""The ghost-padded input as one preallocated buffer, and the transpose of building it.

:func:`fill_padded` writes ``x`` into the middle of the buffer and the ghosts around it, axis by
axis: last axis first, over the data rows of the axes still to come; later passes extrapolate
whole padded rows, which fills the corners (the tensor product, as
:func:`diffconv.torch.padding.lagrange_pad` does). It also returns the ghost blocks it wrote,
so that a second fill of the same input copies them instead of extrapolating again.
:func:`fold_ghosts` is its transpose: it turns a gradient on the padded buffer into the
gradient on ``x``. The index of every block is computed once per geometry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from ..plan import AxisPlan
from ._coeffs import ghost_tensors
from .padding import contract


@dataclass(frozen=True)
class _Block:
    """One ghost block of the buffer: its axis and side, where it goes, what it is made from."""

    axis: int
    side: int                    # 0: low (before the data), 1: high (after it)
    block: tuple[slice, ...]     # index of the block in the buffer
    source: tuple[slice, ...]    # index of the k*d samples it is extrapolated from


@functools.lru_cache(maxsize=512)
def _blocks(plans: tuple[AxisPlan, ...]) -> tuple[_Block, ...]:
    """The ghost blocks in fill order: last axis first, low side then high; each spans the data
    positions of earlier axes and the whole padded extent of later ones."""
    out = []
    for a in reversed(range(len(plans))):
        p = plans[a]
        span = p.kernel_size * p.dilation
        lead = (slice(None), slice(None)) + tuple(slice(q.before, q.before + q.length) for q in plans[:a])
        high = p.before + p.length
        for side, start, width, src in ((0, 0, p.before, p.before), (1, high, p.after, high - span)):
            if width:
                out.append(_Block(a, side, lead + (slice(start, start + width),), lead + (slice(src, src + span),)))
    return tuple(out)


@functools.lru_cache(maxsize=512)
def _fold_order(plans: tuple[AxisPlan, ...]) -> tuple[_Block, ...]:
    """The blocks in the order :func:`fold_ghosts` folds them: first axis first."""
    return tuple(sorted(_blocks(plans), key=lambda b: (b.axis, b.side)))


@functools.lru_cache(maxsize=512)
def _data_index(plans: tuple[AxisPlan, ...]) -> tuple[slice, ...]:
    """Index of the data (non-ghost) part of the buffer."""
    return (slice(None), slice(None)) + tuple(slice(p.before, p.before + p.length) for p in plans)


def padded_shape(x: torch.Tensor, plans: Sequence[AxisPlan]) -> list[int]:
    """Shape of the ghost-padded buffer of ``x`` ``(N, C, *L)``."""
    return list(x.shape[:2]) + [p.before + p.length + p.after for p in plans]


def fill_padded(
    x: torch.Tensor, plans: Sequence[AxisPlan], ghosts: Sequence[torch.Tensor | None] | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The ghost-padded input ``(N, C, *(before + L + after))`` of ``x`` ``(N, C, *L)``, and its
    ghost blocks (per padded axis, last first: the low block, then the high one).

    ``ghosts``: the blocks of an earlier fill of the same ``x``, copied in instead of computed
    again (the backward pass rebuilds the buffer this way); ``None`` entries are computed.
    Float32/float64 only (the ghosts are computed in ``x``'s dtype)."""
    plans = tuple(plans)
    out = x.new_empty(padded_shape(x, plans))
    out[_data_index(plans)].copy_(x)
    made = []
    for i, b in enumerate(_blocks(plans)):
        block = ghosts[i] if ghosts is not None else None
        if block is None:
            p = plans[b.axis]
            rows = ghost_tensors(p.kernel_size, p.dilation, p.before, p.after, x.device, x.dtype)[b.side]
            block = contract(out[b.source], rows, 2 + b.axis, x.dtype)
        out[b.block].copy_(block)
        made.append(block)
    return out, made


def fold_ghosts(grad: torch.Tensor, plans: Sequence[AxisPlan]) -> torch.Tensor:
    """Gradient on ``x`` from ``grad`` on its ghost-padded buffer ``(N, C, *(before + L + after))``.

    Adds each ghost's gradient onto the edge samples it was extrapolated from, in place, axis by
    axis in the reverse order of :func:`fill_padded` (first axis first, so that a corner's
    gradient travels through both of its axes); returns the data part of ``grad`` (a view).
    """
    plans = tuple(plans)
    for b in _fold_order(plans):
        p = plans[b.axis]
        rows = ghost_tensors(p.kernel_size, p.dilation, p.before, p.after, grad.device, grad.dtype)[b.side]
        grad[b.source].add_(contract(grad[b.block], rows.T, 2 + b.axis, grad.dtype))
    return grad[_data_index(plans)]
