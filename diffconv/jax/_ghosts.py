"""Lagrange ghost padding for JAX arrays, axis after axis (corners are the tensor product).

The ghost weights come from :func:`diffconv.coefficients.ghost_weights`; here they are applied.
Each axis takes the samples nearest both edges with one gather and turns them into both sides'
ghosts with one small matrix product, then concatenates ``[low ghosts, x, high ghosts]``.

Why this shape (measured on XLA:CPU, docs/jax.md): the gather's transpose is one scatter-add
into the input gradient, where slices of the edges would leave XLA a full-size padded cotangent
per side to hold (1.5x the memory of a zero-padded layer whose input is a concatenation); the
matrix product is a library call, where per-term weighted slices make large fused kernels that
XLA compiles slowly.
"""

from __future__ import annotations

import functools
import string
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..coefficients import ghost_weights, source_span

_LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def work_dtype(dtype: jnp.dtype) -> np.dtype:
    """Dtype the ghosts are computed in: at least float32."""
    return np.dtype(np.float32) if jnp.dtype(dtype) in _LOW_PRECISION else np.dtype(dtype)


@functools.lru_cache(maxsize=512)
def _sources(k: int, d: int, before: int, after: int, length: int) -> tuple[np.ndarray | None, np.ndarray]:
    """``(index, W)``: the samples ``x[index]`` (``None``: the whole axis) that the ghosts of an
    axis of ``length`` samples come from, and ``W`` ``(before + after, len(index))`` with
    ``ghosts = W @ x[index]`` (low ghosts outermost first, then the high ones)."""
    g = ghost_weights(k, d, widths=(before, after), length=length)
    span = source_span(k, d, length)
    if 2 * span < length:
        index = np.r_[0:span, length - span:length].astype(np.int32)   # int32 also under enable_x64
        low_cols, high_cols = slice(0, span), slice(span, 2 * span)
    else:                                       # the two edges' samples overlap: take the whole axis
        index = None
        low_cols, high_cols = slice(0, span), slice(length - span, length)
    w = np.zeros((before + after, length if index is None else 2 * span))
    if before:
        w[:before, low_cols] = g.low
    if after:
        w[before:, high_cols] = g.high
    w.setflags(write=False)
    return index, w


def pad_axis(x: jax.Array, axis: int, kernel_size: int, dilation: int, before: int, after: int) -> jax.Array:
    """``x`` with ``before``/``after`` ghosts along ``axis`` (``x`` in the dtype the ghosts are
    computed in). Position ``i`` of the result is ``x[i - before]`` inside the data."""
    if not (before or after):
        return x
    length = x.shape[axis]
    index, w = _sources(kernel_size, dilation, before, after, length)
    src = x if index is None else jnp.take(x, index, axis=axis, mode="clip", unique_indices=True,
                                                    indices_are_sorted=True)
    letters = string.ascii_letters[: x.ndim]
    out = letters[:axis] + "Z" + letters[axis + 1:]
    ghosts = jnp.einsum(f"{letters},Z{letters[axis]}->{out}", src, jnp.asarray(w, x.dtype),
                        precision=lax.Precision.HIGHEST)
    parts = [x]
    if before:
        parts.insert(0, lax.slice_in_dim(ghosts, 0, before, axis=axis))
    if after:
        parts.append(lax.slice_in_dim(ghosts, before, before + after, axis=axis))
    return jnp.concatenate(parts, axis=axis)


def ghost_pad(
    x: jax.Array, axes: Sequence[int], kernel_sizes: Sequence[int], dilations: Sequence[int],
    widths: Sequence[tuple[int, int]],
) -> jax.Array:
    """``x`` ghost-padded along each of ``axes`` in turn (``widths[i]`` ghosts before/after), the
    ghosts computed in at least float32 and the result returned in ``x``'s dtype."""
    dtype = x.dtype
    out = x.astype(work_dtype(dtype))
    for axis, k, d, (before, after) in zip(axes, kernel_sizes, dilations, widths):
        out = pad_axis(out, axis, k, d, before, after)
    return out.astype(dtype)
