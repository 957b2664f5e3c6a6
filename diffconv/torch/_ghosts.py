"""The one ghost builder of the torch backend.

Every form gets its ghosts here. :func:`edges` stacks the ``span`` samples nearest each edge
of an axis with that axis leading; :func:`extrapolate` turns them into the axis's ghosts with
one matrix product by the weights of :func:`diffconv.coefficients.ghost_weights`; :func:`fold`
is its transpose and :func:`add_edges` puts a gradient on the edge samples back, for backward.
:func:`pad_axis` is the three of them as plain differentiable operations.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, TypeVar

import torch

from ..coefficients import ghost_weights
from ..plan import AxisPlan

_LOW_PRECISION = (torch.float16, torch.bfloat16)

T = TypeVar("T")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the ghosts are computed in: at least float32."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


class Side(NamedTuple):
    """What fixes one axis's ghosts: ``before``/``after`` ghosts extrapolated from the ``span``
    samples nearest each edge (``k*d``, fewer on a short axis)."""

    kernel_size: int
    dilation: int
    before: int
    after: int
    span: int

    @classmethod
    def of(cls, p: AxisPlan) -> "Side":
        return cls(p.kernel_size, p.dilation, p.before, p.after, p.span)


def eager_cached(build: Callable[..., T]) -> Callable[..., T]:
    """``build`` cached per arguments in eager mode, and called afresh while ``torch.compile`` or
    ``torch.jit.trace`` traces: its tensors then become graph constants instead of cached objects,
    and ``torch.jit.trace``'s check, which traces twice, records the same operations both times."""
    cached = functools.lru_cache(maxsize=256)(build)

    @functools.wraps(build)
    def get(*args):
        return build(*args) if torch.compiler.is_compiling() or torch.jit.is_tracing() else cached(*args)

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]

    return get


@torch.compiler.assume_constant_result
def _weight_lists(kernel_size: int, dilation: int, before: int, after: int, span: int) -> tuple[list, list]:
    """The ghost weights as nested Python lists (a constant for ``torch.compile``)."""
    g = ghost_weights(kernel_size, dilation, widths=(before, after), length=span)
    return g.low.tolist(), g.high.tolist()


@eager_cached
def operator(side: Side, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The ghost weights as :func:`lead_matmul` applies them to :func:`edges`: two side blocks
    stacked ``(2, p, span)`` (one batch of two products) when both sides have ``p`` ghosts, else
    one matrix ``(before or after, span)`` per side that has ghosts (never a block-diagonal
    matrix, whose zeros would carry a NaN or Inf from one edge to the other's ghosts). The
    weights are integers, exact in float32."""
    low, high = _weight_lists(*side)
    if side.before == side.after > 0:
        return (torch.tensor([low, high], device=device, dtype=dtype),)
    return tuple(torch.tensor(m, device=device, dtype=dtype) for m in (low, high) if m)


def lead_matmul(ms: tuple[torch.Tensor, ...], t: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """``m @ t`` over ``t``'s first dim as one long matrix product per side, whatever ``t``'s
    other dims (several times faster than a product per map, or a skinny one with the
    contraction last). ``ms``: an :func:`operator`; ``t`` holds the sides' rows one after the
    other. ``transpose``: by the transposed matrices."""
    if ms[0].dim() == 3:
        m = ms[0].mT if transpose else ms[0]
        return torch.bmm(m, t.reshape(2, m.shape[2], -1)).view(2 * m.shape[1], *t.shape[1:])
    outs, i = [], 0
    for m in ms:
        m = m.mT if transpose else m
        outs.append(torch.mm(m, t[i:i + m.shape[1]].reshape(m.shape[1], -1)).view(m.shape[0], *t.shape[1:]))
        i += m.shape[1]
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def edges(t: torch.Tensor, dim: int, side: Side, offset: int = 0, length: int | None = None) -> torch.Tensor:
    """The ``span`` first and ``span`` last data samples along ``dim`` (of the sides that have
    ghosts), stacked with that axis leading: ``(n*span, *rest)``. The data are the ``length``
    samples from ``offset`` (default: all of ``t``'s axis)."""
    length = t.shape[dim] - offset if length is None else length
    parts = []
    if side.before:
        parts.append(t.narrow(dim, offset, side.span).movedim(dim, 0))
    if side.after:
        parts.append(t.narrow(dim, offset + length - side.span, side.span).movedim(dim, 0))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def extrapolate(stacked: torch.Tensor, side: Side) -> torch.Tensor:
    """Ghosts ``(before + after, *rest)`` (low side outermost first, then high side) from
    :func:`edges`, computed in at least float32 and returned in ``stacked``'s dtype."""
    work = work_dtype(stacked.dtype)
    out = lead_matmul(operator(side, stacked.device, work), stacked.to(work))
    return out.to(stacked.dtype)


def fold(g_ghosts: torch.Tensor, side: Side) -> torch.Tensor:
    """Transpose of :func:`extrapolate`: gradient on the ghosts -> on the stacked edges."""
    work = work_dtype(g_ghosts.dtype)
    out = lead_matmul(operator(side, g_ghosts.device, work), g_ghosts.to(work), transpose=True)
    return out.to(g_ghosts.dtype)


def add_edges(t: torch.Tensor, dim: int, stacked: torch.Tensor, side: Side, offset: int, length: int) -> None:
    """Transpose of :func:`edges`: add ``stacked`` ``(n*span, *rest)`` onto the edge samples of
    ``t`` along ``dim`` in place (data at ``offset .. offset+length``; the two sides may overlap
    on a short axis)."""
    i = 0
    if side.before:
        t.narrow(dim, offset, side.span).add_(stacked[:side.span].movedim(0, dim))
        i = side.span
    if side.after:
        t.narrow(dim, offset + length - side.span, side.span).add_(stacked[i:].movedim(0, dim))


def pad_axis(t: torch.Tensor, dim: int, side: Side) -> torch.Tensor:
    """``t`` with its ghosts along ``dim`` (``before`` + data + ``after``), plain differentiable ops."""
    if not (side.before or side.after):
        return t
    ghosts = extrapolate(edges(t, dim, side), side).movedim(0, dim)
    return torch.cat([ghosts.narrow(dim, 0, side.before), t, ghosts.narrow(dim, side.before, side.after)], dim)
