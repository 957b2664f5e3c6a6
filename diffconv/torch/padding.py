"""Lagrange ghost padding for torch tensors."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .._checks import as_tuple, check_float_dtype
from ..coefficients import source_span
from ._coeffs import ghost_tensors, work_dtype
from ._validate import dtype_name

__all__ = ["contract", "lagrange_pad", "pad_axis"]


def contract(src: torch.Tensor, rows: torch.Tensor, dim: int, out_dtype: torch.dtype) -> torch.Tensor:
    """``rows @ src`` along ``dim``: ``src`` has ``rows.shape[1]`` entries there, the result
    ``rows.shape[0]``. Computed in ``rows.dtype`` (>= float32), returned as ``out_dtype``."""
    if torch.is_autocast_enabled(src.device.type):
        # Autocast would run this matmul in bfloat16/float16.
        with torch.autocast(src.device.type, enabled=False):
            return contract(src, rows, dim, out_dtype)
    if src.dtype != rows.dtype:
        src = src.to(rows.dtype)
    nd = src.dim()
    dim = dim % nd
    if dim == nd - 1 and src.is_contiguous():
        out = F.linear(src, rows)
    elif dim == nd - 2:
        out = torch.matmul(rows, src)
    else:
        # A batched ``rows @ src`` reads strided operands in place; moving ``dim`` last for
        # ``F.linear`` made a strided copy first (2-4x slower on thin edge slices).
        out = torch.matmul(rows, src.movedim(dim, -2)).movedim(-2, dim)
    return out if out.dtype == out_dtype else out.to(out_dtype)


def pad_axis(x: torch.Tensor, dim: int, kernel_size: int, dilation: int, before: int, after: int) -> torch.Tensor:
    """Append ``before``/``after`` ghosts to ``x`` along ``dim`` (ghosts computed in >= float32)."""
    if before == 0 and after == 0:
        return x
    length = x.shape[dim]
    span = source_span(kernel_size, dilation, length)
    low_w, high_w = ghost_tensors(kernel_size, dilation, before, after, x.device, work_dtype(x.dtype), span)
    parts = []
    if before:
        parts.append(contract(x.narrow(dim, 0, span), low_w, dim, x.dtype))
    parts.append(x)
    if after:
        parts.append(contract(x.narrow(dim, length - span, span), high_w, dim, x.dtype))
    return torch.cat(parts, dim=dim)


def lagrange_pad(
    input: torch.Tensor,
    pad: Sequence[int],
    *,
    kernel_size: int | Sequence[int] | None = None,
    dilation: int | Sequence[int] = 1,
) -> torch.Tensor:
    """Pad with polynomial-extrapolated ghosts; ``pad`` as in :func:`torch.nn.functional.pad`.

    ``pad = (last_lo, last_hi, second_last_lo, second_last_hi, ...)``. For each padded axis the
    ghosts follow the degree-``k-1`` polynomial through the ``k`` samples nearest each edge on
    the ghost's dilation lattice; ``kernel_size`` defaults to ``(lo + hi) // dilation + 1``,
    the kernel that this padding makes size-keeping. Ghost widths may not exceed those of
    that kernel. Axes are padded last-first, corners by tensor product.
    """
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
    # Low precision: pad in float32 throughout, so corner ghosts are rounded once, at the end.
    out = input.to(work_dtype(input.dtype))
    for i in range(n):
        dim = input.dim() - 1 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        if lo == 0 and hi == 0:
            continue
        if ks[i] == 1:
            raise ValueError(f"pad ({lo}, {hi}) on dim {dim} needs kernel_size >= 2 to extrapolate, got 1")
        if input.shape[dim] < 1:
            raise ValueError(f"dim {dim} has length 0; there is no sample to extrapolate ghosts from")
        out = pad_axis(out, dim, ks[i], dils[i], lo, hi)
    return out.to(input.dtype)
