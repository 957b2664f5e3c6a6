"""Per-axis geometry of a size-keeping convolution: ghost widths, output length, boundary outputs.

Framework-neutral; both backends take their ghost widths, output lengths and the boundary
output boxes (where the edge kernel and the boundary gradient switch act) from :func:`axis_plan`,
:func:`boundary_boxes` and :func:`window`, so the two agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .coefficients import ghost_widths, source_span

__all__ = ["AxisPlan", "axis_plan", "boundary_boxes", "window"]


@dataclass(frozen=True)
class AxisPlan:
    """Geometry of one spatial axis.

    ``before``/``after``: ghost samples added at each edge; ``span``: the samples nearest each
    edge the ghosts are extrapolated from (``k*d``, or the whole axis when it is shorter);
    ``out_len = ceil(length/stride)``; output ``i`` reads input positions
    ``i*stride - before + j*dilation`` (``j < kernel_size``); outputs ``[0, n_low)`` and
    ``[out_len - n_high, out_len)`` reach a ghost (the boundary).
    """

    length: int
    kernel_size: int
    dilation: int
    stride: int
    before: int
    after: int
    span: int
    out_len: int
    n_low: int
    n_high: int

    @property
    def interior(self) -> tuple[int, int]:
        """Half-open range of outputs whose window lies inside the data."""
        return self.n_low, self.out_len - self.n_high


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def axis_plan(length: int, kernel_size: int, dilation: int = 1, stride: int = 1, periodic: bool = False) -> AxisPlan:
    """Plan one axis of ``length >= 1`` samples (short axes take lower-order ghosts, docs/design.md).
    ``periodic``: a circular axis, whose outputs never count as boundary outputs."""
    if length < 1:
        raise ValueError(f"a spatial axis has length {length}; a convolution needs at least one sample")
    before, after = ghost_widths(kernel_size, dilation)
    span = source_span(kernel_size, dilation, length)
    out_len = _ceil_div(length, stride)
    n_low = min(out_len, _ceil_div(before, stride))              # i*stride < before
    first_high = _ceil_div(length - after, stride)                # i*stride > length-1-after
    n_high = max(0, out_len - max(first_high, n_low))
    if periodic:
        n_low = n_high = 0
    return AxisPlan(length, kernel_size, dilation, stride, before, after, span, out_len, n_low, n_high)


Box = tuple[tuple[int, int], ...]


def boundary_boxes(plans: Sequence[AxisPlan]) -> list[tuple[int, Box]]:
    """Disjoint output boxes ``(a, ((lo, hi) per axis))`` covering every output whose window
    reaches a ghost. Box for axis ``a``: its low or high boundary outputs on axis ``a``, the
    interior on the axes before ``a`` (covered there already) and everything on the axes after."""
    boxes = []
    for a, p in enumerate(plans):
        for lo, hi in ((0, p.n_low), (p.out_len - p.n_high, p.out_len)):
            box = tuple(
                (lo, hi) if b == a else (q.interior if b < a else (0, q.out_len)) for b, q in enumerate(plans)
            )
            if all(h > l for l, h in box):
                boxes.append((a, box))
    return boxes


def window(p: AxisPlan, lo: int, hi: int) -> tuple[int, int]:
    """Positions ``[start, stop)`` of the ghost-padded axis that outputs ``lo..hi-1`` read."""
    return lo * p.stride, (hi - 1) * p.stride + (p.kernel_size - 1) * p.dilation + 1
