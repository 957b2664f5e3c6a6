"""Per-axis geometry of a size-keeping convolution: ghost widths, output length, boundary outputs.

Framework-neutral; both backends build their padding, masks and boundary strips from
:func:`axis_plan` so the two agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from .coefficients import ghost_widths, min_length

__all__ = ["AxisPlan", "axis_plan"]


@dataclass(frozen=True)
class AxisPlan:
    """Geometry of one spatial axis.

    ``before``/``after``: ghost samples added at each edge; ``out_len = ceil(length/stride)``;
    output ``i`` reads input positions ``i*stride - before + j*dilation`` (``j < kernel_size``);
    outputs ``[0, n_low)`` and ``[out_len - n_high, out_len)`` reach a ghost (the boundary).
    """

    length: int
    kernel_size: int
    dilation: int
    stride: int
    before: int
    after: int
    out_len: int
    n_low: int
    n_high: int

    @property
    def interior(self) -> tuple[int, int]:
        """Half-open range of outputs whose window lies inside the data."""
        return self.n_low, self.out_len - self.n_high


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def axis_plan(length: int, kernel_size: int, dilation: int = 1, stride: int = 1, *, axis: int | str = 0) -> AxisPlan:
    """Plan one axis; raises ``ValueError`` naming ``axis`` when it is too short for the ghosts."""
    before, after = ghost_widths(kernel_size, dilation)
    need = min_length(kernel_size, dilation)
    if length < need:
        raise ValueError(
            f"spatial axis {axis} has length {length}, but kernel_size={kernel_size} with "
            f"dilation={dilation} needs at least {need} samples (kernel_size*dilation) to "
            f"extrapolate its border"
        )
    out_len = _ceil_div(length, stride)
    n_low = min(out_len, _ceil_div(before, stride))              # i*stride < before
    first_high = _ceil_div(length - after, stride)                # i*stride > length-1-after
    n_high = max(0, out_len - max(first_high, n_low))
    return AxisPlan(length, kernel_size, dilation, stride, before, after, out_len, n_low, n_high)
