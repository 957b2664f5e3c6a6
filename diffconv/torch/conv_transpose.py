"""Padding-free transposed convolution for PyTorch (in progress: not yet implemented)."""

from __future__ import annotations

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "DiffConvTranspose1d", "DiffConvTranspose2d", "DiffConvTranspose3d"]


def _todo(*args, **kwargs):
    raise NotImplementedError("DiffConvTranspose is being implemented")


conv_transpose1d = conv_transpose2d = conv_transpose3d = _todo
DiffConvTranspose1d = DiffConvTranspose2d = DiffConvTranspose3d = _todo
