"""Ghost padding for JAX arrays, axis after axis (corners are the tensor product).

What each ghost is comes from :class:`diffconv.boundary.GhostOperator` (any boundary mode and
order); here the operators are applied. Per axis: a gather of the samples that the ghosts read,
the ghosts made from them (a small matrix product, or the gathered samples themselves where a
side only copies samples: reflect, replicate, circular, order 0), then one concatenation
``[low ghosts, x, high ghosts]``.

Why this shape (measured on XLA:CPU, docs/jax.md): the gather's transpose is one scatter-add
into the input gradient, where slices of the edges would leave XLA a full-size padded cotangent
per side to hold (1.5x the memory of a zero-padded layer whose input is a concatenation); the
matrix product is a library call, where per-term weighted slices make large fused kernels that
XLA compiles slowly.

Where both sides are products over different samples, each side has its own gather and product,
but both keep the shape of one product over both sides' samples: the matrix holds both sides'
rows and each side's gather leaves the other side's samples out (zeros). A NaN or inf near one
edge so never reaches the other edge's ghosts through a zero weight, and the default's ghosts
are bit for bit those of the single product it used before boundaries per side existed (XLA's
product kernels round differently for other shapes). A side whose ghosts each read only some
samples of the run (a dilated kernel's lattice) gathers, per ghost, just those
(:meth:`~diffconv.boundary.GhostOperator.taps`) and sums them weighted, for the same reason.
"""

from __future__ import annotations

import dataclasses
import functools
import string
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..boundary import GhostOperator

__all__ = ["ghost_pad", "pad_axis", "with_crop_row", "work_dtype"]

_LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def work_dtype(dtype: jnp.dtype) -> np.dtype:
    """Dtype the ghosts are computed in: at least float32."""
    return np.dtype(np.float32) if jnp.dtype(dtype) in _LOW_PRECISION else np.dtype(dtype)


class _Side(NamedTuple):
    """Where one side's ``width`` ghosts come from: ``"zeros"``; ``"copy"``: the samples
    ``[start, start + width)`` of gather 0; ``"product"``: rows ``[start, start + width)`` of the
    product over gather ``gather``; ``"taps"``: the samples each ghost reads, gathered apart and
    weighted (``_Recipe.taps[start]``), where a product over the run would carry a NaN into
    ghosts that do not read it."""

    width: int
    source: str
    start: int = 0
    gather: int = 0


class _Recipe(NamedTuple):
    gathers: tuple              # per gather: an int32 index (length ``op.length`` or more: zeros), or None: all of x
    matrix: np.ndarray | None   # (rows, n): the product over the first n gathered samples
    low: _Side
    high: _Side
    taps: tuple = (None, None)  # per side: GhostOperator.taps, for a side whose source is "taps"


def _both_products(op: GhostOperator) -> tuple[tuple, np.ndarray]:
    """The two gathers and the one matrix of two product sides (see the module docstring)."""
    lo_run = np.arange(op.low_start, op.low_start + op.low.shape[1])
    hi_run = np.arange(op.high_start, op.high_start + op.high.shape[1])
    if np.array_equal(lo_run, hi_run):                              # the same samples: one product
        return (lo_run,), np.vstack([op.low, op.high])
    if lo_run[-1] < hi_run[0] or hi_run[-1] < lo_run[0]:            # apart: both runs, in turn
        cols = np.concatenate([lo_run, hi_run])
        lo_cols, hi_cols = np.arange(len(lo_run)), len(lo_run) + np.arange(len(hi_run))
    else:                                                           # overlapping: the samples they span
        first = min(lo_run[0], hi_run[0])
        cols = np.arange(first, max(lo_run[-1], hi_run[-1]) + 1)
        lo_cols, hi_cols = lo_run - first, hi_run - first
    m = np.zeros((op.before + op.after, len(cols)))
    m[:op.before, lo_cols] = op.low
    m[op.before:, hi_cols] = op.high
    own = np.zeros((2, len(cols)), bool)
    own[0, lo_cols] = own[1, hi_cols] = True
    return tuple(np.where(mine, cols, op.length) for mine in own), m      # index length: out of bounds, a zero


@functools.lru_cache(maxsize=1024)
def _recipe(op: GhostOperator) -> _Recipe:
    """The gathers and products that apply ``op`` (cached per operator object)."""
    parts = ((op.before, op.low_start, op.low), (op.after, op.high_start, op.high))
    copies = [op.copies(i == 1) if width else None for i, (width, _, _) in enumerate(parts)]
    taps = [op.taps(i == 1) if width and m.shape[1] and copies[i] is None else None
            for i, (width, _, m) in enumerate(parts)]
    products = [bool(width and m.shape[1]) and c is None and t is None
                for (width, _, m), c, t in zip(parts, copies, taps)]
    sides = [_Side(width, "taps", i) if t is not None else _Side(width, "zeros")
             for i, ((width, _, _), t) in enumerate(zip(parts, taps))]
    matrix = None
    if all(products):
        gathers, matrix = _both_products(op)
        sides = [_Side(op.before, "product", 0, 0), _Side(op.after, "product", op.before, len(gathers) - 1)]
    else:
        runs = []
        for i, (width, start, m) in enumerate(parts):
            if products[i]:
                matrix, sides[i] = m, _Side(width, "product")
                runs.append(np.arange(start, start + m.shape[1]))
        offset = sum(len(r) for r in runs)
        for i, c in enumerate(copies):
            if c is not None:
                sides[i] = _Side(len(c), "copy", offset)
                runs.append(c)
                offset += len(c)
        gathers = (np.concatenate(runs),) if runs else ()
    gathers = tuple(None if np.array_equal(g, np.arange(op.length)) else g.astype(np.int32) for g in gathers)
    if matrix is not None:
        matrix = np.array(matrix)
        matrix.setflags(write=False)
    taps = tuple(None if t is None else (t[0].ravel().astype(np.int32), t[1]) for t in taps)
    return _Recipe(gathers, matrix, sides[0], sides[1], taps)


def _gather(x: jax.Array, axis: int, index: np.ndarray | None) -> jax.Array:
    """``x[index]`` along ``axis`` (``None``: ``x``; indices past the end: zeros)."""
    if index is None:
        return x
    if (index < x.shape[axis]).all():
        sorted_unique = bool((np.diff(index) > 0).all())
        return jnp.take(x, index, axis=axis, mode="clip", unique_indices=sorted_unique,
                        indices_are_sorted=sorted_unique)
    return jnp.take(x, index, axis=axis, mode="fill", fill_value=0)


def _product(src: jax.Array, axis: int, matrix: np.ndarray) -> jax.Array:
    """``matrix`` applied along ``axis`` to ``src[:n]``."""
    n = matrix.shape[1]
    part = src if n == src.shape[axis] else lax.slice_in_dim(src, 0, n, axis=axis)
    letters = string.ascii_letters[: src.ndim]
    out = letters[:axis] + "Z" + letters[axis + 1:]
    return jnp.einsum(f"{letters},Z{letters[axis]}->{out}", part, jnp.asarray(matrix, src.dtype),
                      precision=lax.Precision.HIGHEST)


def pad_axis(x: jax.Array, axis: int, op: GhostOperator) -> jax.Array:
    """``x`` with ``op``'s ghosts along ``axis`` (``x`` in the dtype the ghosts are computed in).
    Position ``i`` of the result is ``x[i - op.before]`` inside the data."""
    if op.is_identity:
        return x
    if x.shape[axis] != op.length:
        raise ValueError(f"axis {axis} of x has length {x.shape[axis]}, the ghost operator was built for {op.length}")
    r = _recipe(op)
    srcs = [_gather(x, axis, index) for index in r.gathers]
    products = {g: _product(srcs[g], axis, r.matrix) for g in {s.gather for s in (r.low, r.high)
                                                               if s.width and s.source == "product"}}

    def ghosts(side: _Side) -> jax.Array | None:
        if not side.width:
            return None
        if side.source == "zeros":
            return jnp.zeros(x.shape[:axis] + (side.width,) + x.shape[axis + 1:], x.dtype)
        if side.source == "taps":
            index, weights = r.taps[side.start]
            picked = _gather(x, axis, index).reshape(x.shape[:axis] + weights.shape + x.shape[axis + 1:])
            w = jnp.asarray(weights.reshape(weights.shape + (1,) * (x.ndim - axis - 1)), x.dtype)
            return jnp.sum(picked * w, axis=axis + 1)
        base = srcs[0] if side.source == "copy" else products[side.gather]
        return lax.slice_in_dim(base, side.start, side.start + side.width, axis=axis)

    parts = [ghosts(r.low), x, ghosts(r.high)]
    return jnp.concatenate([p for p in parts if p is not None], axis=axis)


def ghost_pad(x: jax.Array, axes: Sequence[int], ops: Sequence[GhostOperator]) -> jax.Array:
    """``x`` ghost-padded along each of ``axes`` in turn by ``ops`` (one operator per axis), the
    ghosts computed in at least float32 and the result returned in ``x``'s dtype."""
    dtype = x.dtype
    out = x.astype(work_dtype(dtype))
    for axis, op in zip(axes, ops):
        out = pad_axis(out, axis, op)
    return out.astype(dtype)


@functools.lru_cache(maxsize=256)
def with_crop_row(op: GhostOperator) -> GhostOperator:
    """``op`` with one more ghost after the high ones, for a convolution that crops it again
    (:func:`diffconv.jax.functional.uses_extra_row`): a copy of the last high ghost, a zero after
    zero ghosts, or the edge sample where there are no high ghosts (a zero row alone would be
    folded into the convolution's padding by XLA, leaving it unpadded)."""
    high, start = op.high, op.high_start
    if op.after and high.shape[1]:
        high = np.concatenate([high, high[-1:]])
    elif op.after:
        high = np.zeros((op.after + 1, 0))
    else:
        high, start = np.ones((1, 1)), op.length - 1
    high.setflags(write=False)
    return dataclasses.replace(op, after=op.after + 1, high=high, high_start=start)
