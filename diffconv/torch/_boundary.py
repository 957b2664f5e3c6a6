"""Boundary geometry of the lean torch path: thin boxes of the ghost-padded input.

A *box* is a block of the padded input ``P`` (data at positions ``0..L-1`` of each axis,
ghosts outside), described per spatial axis by a position range and what it keeps:
``"full"`` (data and ghosts, as in ``P``), ``"data"`` (ghosts replaced by zeros, as in the
zero-padded input) or ``"ghost"`` (data replaced by zeros: ``P`` minus the zero-padded input).
Boxes are built from narrow views of ``x`` and stay thin; :func:`box_adjoint` is the
transpose of :func:`build_box`, for the backward pass.

Two families of regions are used:

* **corrections** (plain layers): ``P = Z + D`` with ``Z`` the zero-padded input and ``D``
  the ghosts alone. ``conv(P) = conv_same_zero(x) + conv(D)``, and ``conv(D)`` is non-zero
  only on boundary outputs. ``D`` is split into disjoint slabs, one per axis and side (ghost
  positions along that axis, data along earlier axes, anything along later ones); each is
  convolved with just the kernel taps that can reach it.
* **edge regions** (edge kernel / boundary switch): the boundary outputs split into disjoint
  blocks (boundary along one axis, interior along earlier axes), each computed from its own
  box of ``P``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from ..plan import AxisPlan, axis_plan
from ._coeffs import ghost_tensors, work_dtype
from .padding import contract

FULL, DATA, GHOST = "full", "data", "ghost"


@dataclass(frozen=True)
class AxisRange:
    """Positions ``lo..hi`` (inclusive) of one padded axis, and what of them the box keeps."""

    lo: int
    hi: int
    keep: str


@dataclass(frozen=True)
class Region:
    """A box of ``P`` and the output block it produces.

    ``ranges``: one :class:`AxisRange` per spatial axis; ``out``: ``(start, count)`` per axis;
    ``taps``: ``(axis, start, count)`` when only those kernel taps along ``axis`` are used.
    """

    ranges: tuple[AxisRange, ...]
    out: tuple[tuple[int, int], ...]
    taps: tuple[int, int, int] | None = None
    padding: tuple[int, ...] | None = None   # zero padding the convolution adds to the box


@dataclass(frozen=True)
class Geometry:
    """Everything shape-dependent about one call: per-axis plans and the boundary regions."""

    plans: tuple[AxisPlan, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    lean: bool                      # symmetric zero padding `before` gives the right output size
    corrections: tuple[Region, ...]
    edge_regions: tuple[Region, ...]

    @property
    def padding(self) -> tuple[int, ...]:
        return tuple(p.before for p in self.plans)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _positions(p: AxisPlan, start: int, count: int) -> tuple[int, int]:
    """Padded-axis positions read by outputs ``start .. start+count-1``."""
    extent = (p.kernel_size - 1) * p.dilation + 1
    return start * p.stride - p.before, (start + count - 1) * p.stride - p.before + extent - 1


def _corrections(plans: Sequence[AxisPlan]) -> tuple[Region, ...]:
    regions = []
    for a, p in enumerate(plans):
        k, d, s = p.kernel_size, p.dilation, p.stride
        sides = []
        if p.before:
            m = _ceil_div(p.before, d)                       # taps that can reach a low ghost
            sides.append((0, p.n_low, 0, m))
        if p.after:
            m = _ceil_div(p.after, d)
            first = max(0, _ceil_div(p.length - p.after, s))  # first output reaching a high ghost
            if first < p.out_len:
                sides.append((first, p.out_len - first, k - m, m))
        for start, count, t0, m in sides:
            lo = start * s - p.before + t0 * d
            hi = (start + count - 1) * s - p.before + (t0 + m - 1) * d
            ranges, out, padding = [], [], []
            for b, q in enumerate(plans):
                if b == a:
                    ranges.append(AxisRange(lo, hi, GHOST))
                    out.append((start, count))
                elif b < a:          # data only: the convolution's own zero padding supplies the rest
                    ranges.append(AxisRange(0, q.length - 1, DATA))
                    out.append((0, q.out_len))
                else:
                    ranges.append(AxisRange(*_positions(q, 0, q.out_len), FULL))
                    out.append((0, q.out_len))
                padding.append(q.before if b < a else 0)
            regions.append(Region(tuple(ranges), tuple(out), (a, t0, m), tuple(padding)))
    return tuple(regions)


def _edge_regions(plans: Sequence[AxisPlan]) -> tuple[Region, ...]:
    regions = []
    for a, p in enumerate(plans):
        interior = [(q.n_low, q.out_len - q.n_high - q.n_low) for q in plans[:a]]
        if any(count <= 0 for _, count in interior):
            continue
        for start, count in ((0, p.n_low), (p.out_len - p.n_high, p.n_high)):
            if count <= 0:
                continue
            out = tuple(interior) + ((start, count),) + tuple((0, q.out_len) for q in plans[a + 1:])
            ranges = tuple(AxisRange(*_positions(q, *o), FULL) for q, o in zip(plans, out))
            regions.append(Region(ranges, out))
    return tuple(regions)


@functools.lru_cache(maxsize=512)
def geometry(
    lengths: tuple[int, ...], kernel_size: tuple[int, ...], strides: tuple[int, ...], dilations: tuple[int, ...]
) -> Geometry:
    """Plans and regions of a convolution over spatial ``lengths`` (raises on too-short axes)."""
    plans = tuple(axis_plan(L, k, d, s) for L, k, d, s in zip(lengths, kernel_size, dilations, strides))
    lean = all(
        (p.length + 2 * p.before - (p.kernel_size - 1) * p.dilation - 1) // p.stride + 1 == p.out_len for p in plans
    )
    return Geometry(plans, strides, dilations, lean, _corrections(plans), _edge_regions(plans))


# ------------------------------------------------------------------------------- building boxes


def _window(r: AxisRange, p: AxisPlan) -> tuple[int, int]:
    """Data positions ``[w0, w1)`` a box axis reads (ghost sources included)."""
    span = p.kernel_size * p.dilation
    lo_, hi_ = [], []
    if r.lo < 0 and r.keep != DATA:
        lo_.append(0), hi_.append(span)
    d0, d1 = max(r.lo, 0), min(r.hi, p.length - 1)
    if d1 >= d0 and r.keep != GHOST:
        lo_.append(d0), hi_.append(d1 + 1)
    if r.hi >= p.length and r.keep != DATA:
        lo_.append(p.length - span), hi_.append(p.length)
    return (min(lo_), max(hi_)) if lo_ else (0, 0)


def _pieces(r: AxisRange, p: AxisPlan):
    """``(kind, count, arg)`` pieces of a box axis in order: ghosts (rows of a ghost matrix), data, zeros."""
    out = []
    if r.lo < 0:
        n = min(r.hi, -1) - r.lo + 1
        out.append(("zeros", n, None) if r.keep == DATA else ("low", n, r.lo + p.before))
    d0, d1 = max(r.lo, 0), min(r.hi, p.length - 1)
    if d1 >= d0:
        out.append(("zeros", d1 - d0 + 1, None) if r.keep == GHOST else ("data", d1 - d0 + 1, d0))
    if r.hi >= p.length:
        s0 = max(r.lo, p.length)
        out.append(("zeros", r.hi - s0 + 1, None) if r.keep == DATA else ("high", r.hi - s0 + 1, s0 - p.length))
    return out


def _sized(t: torch.Tensor, dim: int, n: int) -> list[int]:
    shape = list(t.shape)
    shape[dim] = n
    return shape


@dataclass(frozen=True)
class _Recipe:
    """Per-region constants of :func:`build_box` / :func:`box_adjoint`, computed once."""

    windows: tuple[tuple[int, int], ...]
    window_index: tuple[slice, ...]
    out_index: tuple[slice, ...]
    order: tuple[int, ...]                   # thinnest axis first keeps every intermediate small
    pieces: tuple[tuple, ...]


@functools.lru_cache(maxsize=2048)
def _recipe(region: Region, plans: tuple[AxisPlan, ...]) -> _Recipe:
    windows = tuple(_window(r, p) for r, p in zip(region.ranges, plans))
    whole = (slice(None), slice(None))
    return _Recipe(
        windows,
        whole + tuple(slice(w0, w1) for w0, w1 in windows),
        whole + tuple(slice(start, start + count) for start, count in region.out),
        tuple(sorted(range(len(plans)), key=lambda a: region.ranges[a].hi - region.ranges[a].lo)),
        tuple(tuple(_pieces(r, p)) for r, p in zip(region.ranges, plans)),
    )


@functools.lru_cache(maxsize=2048)
def _ghost_rows(p: AxisPlan, side: str, start: int, count: int, device: torch.device, dtype: torch.dtype,
                transposed: bool) -> torch.Tensor:
    low, high = ghost_tensors(p.kernel_size, p.dilation, p.before, p.after, device, dtype)
    rows = (low if side == "low" else high)[start:start + count]
    return (rows.T if transposed else rows).contiguous()


def build_box(
    x: torch.Tensor, region: Region, plans: Sequence[AxisPlan], dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The box of ``region`` from ``x`` ``(N, C, *L)``, in ``dtype`` (default ``x.dtype``);
    also returns the data window origins."""
    dtype = x.dtype if dtype is None else dtype
    plans = tuple(plans)
    rec = _recipe(region, plans)
    t = x[rec.window_index].to(dtype)
    work = work_dtype(dtype)
    for a in rec.order:
        p, w0, dim = plans[a], rec.windows[a][0], 2 + a
        span = p.kernel_size * p.dilation
        parts = []
        for kind, n, arg in rec.pieces[a]:
            if kind == "zeros":
                parts.append(t.new_zeros(_sized(t, dim, n)))
            elif kind == "data":
                parts.append(t.narrow(dim, arg - w0, n))
            else:
                src = t.narrow(dim, -w0 if kind == "low" else p.length - span - w0, span)
                parts.append(contract(src, _ghost_rows(p, kind, arg, n, x.device, work, False), dim, dtype))
        t = torch.cat(parts, dim) if len(parts) > 1 else parts[0]
    return t, tuple(w0 for w0, _ in rec.windows)


def box_adjoint(g: torch.Tensor, region: Region, plans: Sequence[AxisPlan]) -> torch.Tensor:
    """Transpose of :func:`build_box`: gradient on the box -> gradient on the data window."""
    plans = tuple(plans)
    rec = _recipe(region, plans)
    work = work_dtype(g.dtype)
    for a in reversed(rec.order):
        p, (w0, w1), dim = plans[a], rec.windows[a], 2 + a
        pieces = rec.pieces[a]
        if len(pieces) == 1 and pieces[0][0] == "data" and pieces[0][1] == w1 - w0:
            continue                                   # the box axis is the data window itself
        span = p.kernel_size * p.dilation
        out = g.new_zeros(_sized(g, dim, w1 - w0))
        offset = 0
        for kind, n, arg in pieces:
            piece = g.narrow(dim, offset, n)
            offset += n
            if kind == "data":
                out.narrow(dim, arg - w0, n).add_(piece)
            elif kind != "zeros":
                rows_t = _ghost_rows(p, kind, arg, n, g.device, work, True)
                out.narrow(dim, -w0 if kind == "low" else p.length - span - w0, span).add_(
                    contract(piece, rows_t, dim, g.dtype))
        g = out
    return g


def window_view(t: torch.Tensor, region: Region, plans: Sequence[AxisPlan]) -> torch.Tensor:
    """The part of ``t`` (shaped like ``x``) that :func:`box_adjoint` returns a gradient for."""
    return t[_recipe(region, tuple(plans)).window_index]


def out_view(y: torch.Tensor, region: Region) -> torch.Tensor:
    """The output block of ``region`` in ``y`` ``(N, O, *out)`` (a view)."""
    return y[(slice(None), slice(None)) + tuple(slice(start, start + count) for start, count in region.out)]


def region_weight(w: torch.Tensor, region: Region) -> torch.Tensor:
    """The kernel taps a region uses (a view of ``w``)."""
    if region.taps is None:
        return w
    a, t0, m = region.taps
    return w.narrow(2 + a, t0, m)
