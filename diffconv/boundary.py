"""Boundary rules per axis and side, and the ghost order: what every ghost of an axis is.

Framework-neutral (NumPy only). A boundary spec is one mode for every side, or one entry per
spatial axis, each a mode or a ``(low, high)`` pair (docs/design.md, "Boundaries"):

* ``"diff"``: Lagrange ghosts, the degree-``p`` polynomial through the ``p + 1`` samples nearest
  the edge on the ghost's own dilation lattice (``order`` ``p``, default ``k - 1``: the paper);
* ``"zeros"``, ``"reflect"`` (no repeated edge sample), ``"replicate"``, ``"circular"`` (both
  sides of an axis or neither): what ``torch.nn.functional.pad`` and ``numpy.pad`` do.

Every rule is linear in the data, and each side's ghosts read one contiguous run of samples, so
one :class:`GhostOperator` per axis holds any of them: ``low = L @ x[a:a+n]``,
``high = H @ x[b:b+m]``. The backends apply these matrices and nothing else.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from .coefficients import ghost_weights

__all__ = [
    "MODES",
    "BoundarySpec",
    "GhostOperator",
    "boundary_from_well",
    "ghost_operator",
    "parse_boundary",
    "parse_order",
]

MODES = ("diff", "zeros", "reflect", "replicate", "circular")

#: What a user may pass: a mode, or one entry per spatial axis (a mode or a ``(low, high)`` pair).
BoundarySpec = Union[str, Sequence[Union[str, Sequence[str]]]]


def _check_mode(mode: object, where: str) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"boundary{where} must be one of {list(MODES)}, got {mode!r}")
    return mode


def parse_boundary(boundary: BoundarySpec, nd: int) -> tuple[tuple[str, str], ...]:
    """``boundary`` as ``nd`` ``(low, high)`` mode pairs, spatial axes in the input's order.

    Raises ``ValueError`` for an unknown mode, a spec with other than ``nd`` entries, or an axis
    that is circular on one side only."""
    if isinstance(boundary, str):
        mode = _check_mode(boundary, "")
        pairs = ((mode, mode),) * nd
    else:
        try:
            entries = tuple(boundary)
        except TypeError:
            raise TypeError(f"boundary must be a mode or one entry per spatial axis, got {boundary!r}") from None
        if len(entries) != nd:
            raise ValueError(
                f"boundary must be one mode or one entry per spatial axis ({nd} for a {nd}-d convolution), "
                f"got {len(entries)} entries: {boundary!r}"
            )
        out = []
        for a, entry in enumerate(entries):
            if isinstance(entry, str):
                mode = _check_mode(entry, f"[{a}]")
                out.append((mode, mode))
                continue
            try:
                low, high = entry
            except (TypeError, ValueError):
                raise ValueError(f"boundary[{a}] must be a mode or a (low, high) pair of modes, got {entry!r}") from None
            out.append((_check_mode(low, f"[{a}][0]"), _check_mode(high, f"[{a}][1]")))
        pairs = tuple(out)
    for a, (low, high) in enumerate(pairs):
        if (low == "circular") != (high == "circular"):
            raise ValueError(
                f"boundary on spatial axis {a} is circular on one side only ({low!r}, {high!r}); "
                "a circular axis wraps around, so both of its sides must be 'circular'"
            )
    return pairs


def parse_order(order: int | Sequence[int | None] | None, nd: int,
                max_orders: Sequence[int]) -> tuple[int | None, ...]:
    """``order`` as ``nd`` entries (``None``: the highest, ``max_orders[a]``), each checked to lie
    in ``0 .. max_orders[a]`` (``k - 1`` for a convolution, ``m - 1`` for a transposed one)."""
    if order is None or isinstance(order, numbers.Integral):
        entries: tuple = (order,) * nd
    else:
        try:
            entries = tuple(order)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"order must be None, an int or one per spatial axis, got {order!r}") from None
        if len(entries) != nd:
            raise ValueError(f"order must be None, an int or one per spatial axis ({nd}), got {order!r}")
    for a, (p, top) in enumerate(zip(entries, max_orders)):
        if p is None:
            continue
        if isinstance(p, bool) or not isinstance(p, numbers.Integral):
            raise TypeError(f"order must contain ints or None, got {order!r}")
        if not 0 <= p <= top:
            raise ValueError(
                f"order {p} on spatial axis {a} is out of range: the ghosts of this kernel take a polynomial "
                f"of degree 0 to {top}"
            )
    return tuple(None if p is None else int(p) for p in entries)


@dataclass(frozen=True, eq=False)   # compared and hashed by identity: ghost_operator caches them
class GhostOperator:
    """The ghosts of one axis of ``length`` samples, as two matrices over runs of samples.

    ``low`` ``(before, n)`` over ``x[low_start : low_start + n]``, rows outermost ghost first
    (positions ``-before .. -1``); ``high`` ``(after, m)`` over ``x[high_start : high_start + m]``
    (positions ``length .. length + after - 1``). Read-only float64 arrays; a side with no
    ghosts, or whose ghosts are zeros, has no columns."""

    length: int
    before: int
    after: int
    low_start: int
    low: np.ndarray
    high_start: int
    high: np.ndarray

    @property
    def is_identity(self) -> bool:
        """No ghosts at all: padding leaves the axis as it is."""
        return not (self.before or self.after)

    def copies(self, high: bool) -> np.ndarray | None:
        """Where each ghost of one side is one sample copied (reflect, replicate, circular, order
        0): the absolute index of that sample, per ghost (outermost first). ``None`` otherwise,
        and for a side with no ghosts or zero ghosts."""
        start, m = (self.high_start, self.high) if high else (self.low_start, self.low)
        if m.size == 0 or not np.isin(m, (0.0, 1.0)).all() or not (m.sum(axis=1) == 1).all():
            return None
        return start + np.argmax(m, axis=1)

    def taps(self, high: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """Where each ghost of one side reads only some samples of its run (reflect, replicate,
        circular, order 0, a dilated kernel's lattice): ``(index, weights)``, the absolute
        indices ``(ghosts, count)`` of the samples each ghost reads and their weights, a ghost
        that reads fewer repeating one of its own with weight 0. A backend that gathers these
        keeps a NaN or inf out of the ghosts that do not read it (a product over the whole run
        carries it in as 0 * NaN). ``None`` where every ghost reads the whole run, or a ghost
        reads nothing."""
        start, m = (self.high_start, self.high) if high else (self.low_start, self.low)
        rows = [np.flatnonzero(r) for r in m]
        if not rows or all(len(r) == m.shape[1] for r in rows) or any(len(r) == 0 for r in rows):
            return None
        count = max(len(r) for r in rows)
        cols = np.array([np.concatenate([r, np.full(count - len(r), r[0])]) for r in rows])
        weights = np.take_along_axis(m, cols, axis=1)
        for i, r in enumerate(rows):
            weights[i, len(r):] = 0.0
        return start + cols, weights

    def dense(self) -> np.ndarray:
        """The whole padding as one ``(before + length + after, length)`` matrix (for tests and small axes)."""
        out = np.zeros((self.before + self.length + self.after, self.length))
        out[:self.before, self.low_start:self.low_start + self.low.shape[1]] = self.low
        out[self.before:self.before + self.length] = np.eye(self.length)
        out[self.before + self.length:, self.high_start:self.high_start + self.high.shape[1]] = self.high
        return out


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _side(mode: str, width: int, length: int, kernel_size: int, dilation: int, order: int | None,
          high: bool, axis: int) -> tuple[int, np.ndarray]:
    """``(start, matrix)`` of one side's ghosts, built for the low side (rows outermost first,
    columns from the edge inward) and mirrored for the high side."""
    if width == 0 or mode == "zeros":
        return (length if high else 0), np.zeros((width, 0))
    side, start = ("high" if high else "low"), 0
    if mode == "diff":
        nodes = kernel_size if order is None else order + 1
        m = ghost_weights(nodes, dilation, widths=(width, 0), length=length).low     # (width, span)
    elif mode == "replicate":
        m = np.ones((width, 1))
    elif mode == "reflect":
        if width > length - 1:
            raise ValueError(
                f"boundary 'reflect' on spatial axis {axis} ({side} side) mirrors {width} ghost samples without "
                f"repeating the edge, so it needs at least {width + 1} samples; the axis has {length}"
            )
        start, m = 1, np.eye(width)[::-1]                 # ghost -q reads x[q], q = width .. 1
    else:  # circular
        if width > length:
            raise ValueError(
                f"boundary 'circular' on spatial axis {axis} ({side} side) wraps {width} ghost samples around, "
                f"so it needs at least {width} samples; the axis has {length}"
            )
        # Low ghost -q reads x[L - q]: the last `width` samples in order; high ghost L + i reads x[i].
        return (0 if high else length - width), np.eye(width)
    if high:                        # the high edge is the low edge of the reversed axis
        return length - start - m.shape[1], m[::-1, ::-1]
    return start, m


@functools.lru_cache(maxsize=1024)
def ghost_operator(length: int, kernel_size: int, dilation: int, before: int, after: int,
                   modes: tuple[str, str] = ("diff", "diff"), order: int | None = None,
                   axis: int = 0) -> GhostOperator:
    """The :class:`GhostOperator` of one axis: ``before``/``after`` ghosts by the ``(low, high)``
    ``modes``; ``"diff"`` ghosts of degree ``order`` (``None``: ``kernel_size - 1``) on lattices of
    step ``dilation`` (short axes: lower degrees, docs/design.md). ``axis`` names the axis in
    errors (reflect or circular on an axis too short for them)."""
    if length < 1:
        raise ValueError(f"spatial axis {axis} has length {length}; a convolution needs at least one sample")
    lo_start, lo = _side(modes[0], before, length, kernel_size, dilation, order, False, axis)
    hi_start, hi = _side(modes[1], after, length, kernel_size, dilation, order, True, axis)
    return GhostOperator(length, before, after, lo_start, _readonly(lo), hi_start, _readonly(hi))


_WELL = {"PERIODIC": "circular", "WALL": "diff", "OPEN": "diff"}


def boundary_from_well(conditions: Sequence[object]) -> tuple[str, ...]:
    """A boundary spec from The Well's per-axis boundary types (``PERIODIC``, ``WALL``, ``OPEN``;
    names, or enum members whose ``name`` is one of those), one per spatial axis in order:
    periodic axes become ``"circular"``, walls and open sides ``"diff"``."""
    spec = []
    for a, c in enumerate(conditions):
        name = getattr(c, "name", c)
        key = name.upper() if isinstance(name, str) else name
        if key not in _WELL:
            raise ValueError(f"boundary condition {c!r} on axis {a} is not one of {list(_WELL)}")
        spec.append(_WELL[key])
    return tuple(spec)
