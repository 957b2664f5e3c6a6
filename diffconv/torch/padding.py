"""Lagrange ghost padding for torch tensors (the public :func:`lagrange_pad`)."""

from __future__ import annotations

from typing import Sequence

import torch

from .._checks import as_tuple, check_float_dtype
from ..boundary import ghost_operator, parse_order
from ._ghosts import AxisGhosts, work_dtype
from ._ghosts import pad as ghost_pad
from ._validate import dtype_name

__all__ = ["lagrange_pad"]


def lagrange_pad(
    input: torch.Tensor,
    pad: Sequence[int],
    *,
    kernel_size: int | Sequence[int] | None = None,
    dilation: int | Sequence[int] = 1,
    order: int | Sequence[int | None] | None = None,
) -> torch.Tensor:
    """Pad with polynomial-extrapolated ghosts; ``pad`` as in :func:`torch.nn.functional.pad`.

    ``pad = (last_lo, last_hi, second_last_lo, second_last_hi, ...)``, any widths >= 0. For each
    padded axis the ghosts follow the degree-``k-1`` polynomial through the ``k`` samples nearest
    each edge on the ghost's dilation lattice (fewer on an axis shorter than ``k*d``:
    docs/design.md); ``kernel_size`` defaults to ``(lo + hi) // dilation + 1``, the kernel that
    this padding makes size-keeping. ``order`` (int, or one per padded axis in ``pad``'s order,
    last axis first; ``0 .. k-1``) lowers the degree to ``order``. Corners are the tensor
    product; ghosts are computed in at least float32.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > input.dim():
        raise ValueError(f"pad must have an even length of at most 2*input.dim()={2 * input.dim()}, got {pad}")
    n = len(pad) // 2
    for v in pad:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"pad must contain ints >= 0, got {pad}")
    check_float_dtype("input", dtype_name(input.dtype))
    dils = as_tuple("dilation", dilation, n)
    if kernel_size is None:
        ks = tuple((pad[2 * i] + pad[2 * i + 1]) // dils[i] + 1 for i in range(n))
    else:
        ks = as_tuple("kernel_size", kernel_size, n)
    orders = parse_order(order, n, [k - 1 for k in ks])
    axes = []
    for i in range(n):
        dim = input.dim() - 1 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        if lo == 0 and hi == 0:
            continue
        if ks[i] == 1:
            raise ValueError(f"pad ({lo}, {hi}) on dim {dim} needs kernel_size >= 2 to extrapolate, got 1")
        if input.shape[dim] < 1:
            raise ValueError(f"dim {dim} has length 0; there is no sample to extrapolate ghosts from")
        axes.append(AxisGhosts.of(dim, ghost_operator(int(input.shape[dim]), ks[i], dils[i], lo, hi, ("diff", "diff"),
                                                   orders[i], dim)))
    # Low precision: pad in float32 throughout, so corner ghosts are rounded once, at the end.
    axes.sort(key=lambda g: g.dim)
    return ghost_pad(input.to(work_dtype(input.dtype)), axes).to(input.dtype)
