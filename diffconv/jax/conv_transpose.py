"""Padding-free transposed convolution for JAX (in progress: not yet implemented)."""

from __future__ import annotations

__all__ = ["conv_transpose"]


def conv_transpose(*args, **kwargs):
    raise NotImplementedError("conv_transpose is being implemented")
