"""Coefficient tensors for the torch backend, cached per (kernel size, dilation, device, dtype)."""

from __future__ import annotations

import functools

import torch

from ..coefficients import ghost_weights


@functools.lru_cache(maxsize=256)
def ghost_tensors(
    kernel_size: int, dilation: int, before: int, after: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` ghost weight matrices of :func:`diffconv.coefficients.ghost_weights` as tensors."""
    g = ghost_weights(kernel_size, dilation, widths=(before, after))
    return (torch.tensor(g.low, device=device, dtype=dtype), torch.tensor(g.high, device=device, dtype=dtype))
