"""Coefficient tensors for the torch backend, cached per (kernel size, dilation, widths, device, dtype)."""

from __future__ import annotations

import functools

import torch

from ..coefficients import ghost_weights

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the ghosts are computed in: at least float32."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


@torch.compiler.assume_constant_result
def _ghost_lists(kernel_size: int, dilation: int, before: int, after: int) -> tuple[list, list]:
    """The ghost weights as nested Python lists (a constant for ``torch.compile``)."""
    g = ghost_weights(kernel_size, dilation, widths=(before, after))
    return g.low.tolist(), g.high.tolist()


def _build(kernel_size: int, dilation: int, before: int, after: int, device: torch.device, dtype: torch.dtype):
    low, high = _ghost_lists(kernel_size, dilation, before, after)
    span = kernel_size * dilation
    # The weights are integers, so float32/float64 hold them exactly.
    return (
        torch.tensor(low, device=device, dtype=dtype).reshape(before, span if before else 0),
        torch.tensor(high, device=device, dtype=dtype).reshape(after, span if after else 0),
    )


_cached = functools.lru_cache(maxsize=256)(_build)


def ghost_tensors(
    kernel_size: int, dilation: int, before: int, after: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` ghost weight matrices of :func:`diffconv.coefficients.ghost_weights` as tensors.

    ``low``: ``(before, k*d)``, ``high``: ``(after, k*d)``. Cached in eager mode; built as graph
    constants while ``torch.compile`` traces.
    """
    if torch.compiler.is_compiling():
        return _build(kernel_size, dilation, before, after, device, dtype)
    return _cached(kernel_size, dilation, before, after, device, dtype)


def _build_operator(
    kernel_size: int, dilation: int, before: int, after: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    low, high = ghost_tensors(kernel_size, dilation, before, after, device, dtype)
    if before == after > 0:
        return torch.stack([low, high])
    return torch.block_diag(*(m for m in (low, high) if m.shape[0]))


_cached_operator = functools.lru_cache(maxsize=256)(_build_operator)


def ghost_operator(
    kernel_size: int, dilation: int, before: int, after: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Both sides' ghost weights of :func:`ghost_tensors`, in the form
    :func:`diffconv.torch._padded.lead_matmul` applies to the ``k*d`` first and the ``k*d``
    last samples (stacked) to give every ghost of the axis. Cached in eager mode; built as
    graph constants while ``torch.compile`` traces.

    Sides with as many ghosts ``p`` (odd extents): stacked ``(2, p, k*d)``, a batch of two
    products. Otherwise the block-diagonal matrix ``(before + after, n * k*d)``, ``n`` the
    sides that have ghosts. The batch does half the multiplications of the block-diagonal
    product, in a faster kernel: 0.08 vs 0.23 ms for the edge columns of 8x32x96x96, k=3."""
    if torch.compiler.is_compiling():
        return _build_operator(kernel_size, dilation, before, after, device, dtype)
    return _cached_operator(kernel_size, dilation, before, after, device, dtype)
