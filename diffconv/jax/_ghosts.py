"""Lagrange ghost samples for JAX arrays: any window of the ghost-padded axis, computed lazily.

The ghost weights come from :func:`diffconv.coefficients.ghost_weights`; here they are only
contracted with the ``k*d`` samples nearest each edge (one small ``einsum`` per edge).
"""

from __future__ import annotations

import functools
import string

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..coefficients import ghost_weights, source_span

_LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def work_dtype(dtype: jnp.dtype) -> np.dtype:
    """Dtype the ghosts are computed in: at least float32."""
    return np.dtype(np.float32) if jnp.dtype(dtype) in _LOW_PRECISION else np.dtype(dtype)


@functools.lru_cache(maxsize=512)
def _weights(k: int, d: int, before: int, after: int, span: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    g = ghost_weights(k, d, widths=(before, after), length=span)
    return g.low.astype(dtype), g.high.astype(dtype)


def _extrapolate(edge: jnp.ndarray, axis: int, rows: np.ndarray, dtype: jnp.dtype) -> jnp.ndarray:
    """``rows @ edge`` along ``axis``: ``edge`` has ``rows.shape[1]`` samples there, the result ``rows.shape[0]``."""
    letters = string.ascii_letters[: edge.ndim]
    out = letters[:axis] + "Z" + letters[axis + 1:]
    work = work_dtype(edge.dtype)
    ghosts = jnp.einsum(
        f"{letters},Z{letters[axis]}->{out}", edge.astype(work), rows, precision=lax.Precision.HIGHEST
    )
    return ghosts.astype(dtype)


def padded_window(
    x: jnp.ndarray, axis: int, kernel_size: int, dilation: int, before: int, after: int, start: int, stop: int
) -> jnp.ndarray:
    """Positions ``[start, stop)`` along ``axis`` of ``x`` padded with ``before``/``after`` ghosts.

    Position ``p`` of the padded axis is ``x[p - before]`` inside the data and a ghost outside;
    only the ghosts inside the window are computed. ``x`` must hold the whole axis.
    """
    length = x.shape[axis]
    if start == 0 and stop == before + length + after and before == 0 and after == 0:
        return x
    # A slab that holds only edge samples holds at least the k*d ghost sources of its edge.
    span = source_span(kernel_size, dilation, length)
    low, high = _weights(kernel_size, dilation, before, after, span, work_dtype(x.dtype))
    parts = []
    if start < before:
        edge = lax.slice_in_dim(x, 0, span, axis=axis)
        parts.append(_extrapolate(edge, axis, low[start:min(stop, before)], x.dtype))
    lo, hi = max(start - before, 0), min(stop - before, length)
    if hi > lo:
        parts.append(x if (lo, hi) == (0, length) else lax.slice_in_dim(x, lo, hi, axis=axis))
    if stop > before + length:
        edge = lax.slice_in_dim(x, length - span, length, axis=axis)
        parts.append(_extrapolate(edge, axis, high[max(start - before - length, 0):stop - before - length], x.dtype))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=axis)
