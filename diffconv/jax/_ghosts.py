"""Ghost padding for JAX arrays, axis after axis (corners are the tensor product).

What each ghost is comes from :class:`diffconv.boundary.GhostOperator` (any boundary mode and
order); here the operators are applied. Per axis: one gather of the samples that the ghosts
read, the ghosts made from them (a small matrix product, or the gathered samples themselves
where a side only copies samples: reflect, replicate, circular, order 0), then one
concatenation ``[low ghosts, x, high ghosts]``.

Why this shape (measured on XLA:CPU, docs/jax.md): the gather's transpose is one scatter-add
into the input gradient, where slices of the edges would leave XLA a full-size padded cotangent
per side to hold (1.5x the memory of a zero-padded layer whose input is a concatenation); the
matrix product is a library call, where per-term weighted slices make large fused kernels that
XLA compiles slowly.

Where both sides are products over different samples, both sides' rows stay one matrix over the
samples of both (the products' shapes, and so their rounding, are those of the default since the
first release), but each side's product sees the other side's samples as zeros: a NaN or inf
near one edge never reaches the other edge's ghosts through a zero weight.
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
    """Where one side's ``width`` ghosts come from: ``"zeros"``; ``"copy"``: the gathered samples
    ``src[start : start + width]``; ``"product"``: rows ``start : start + width`` of product
    ``product`` of the recipe."""

    width: int
    source: str
    start: int = 0
    product: int = 0


class _Recipe(NamedTuple):
    index: np.ndarray | None        # the gather (None: the whole axis as it is)
    sorted_unique: bool
    matrix: np.ndarray | None       # (rows, n) over the gathered src[:n]
    masks: tuple                    # one per product: None, or the (n,) columns it reads (others: zeros)
    low: _Side
    high: _Side


def _copies(start: int, m: np.ndarray) -> np.ndarray | None:
    """Absolute sample indices if every row of ``m`` copies one sample (a 0/1 row summing to 1)."""
    if m.size == 0 or not np.isin(m, (0.0, 1.0)).all() or not (m.sum(axis=1) == 1).all():
        return None
    return start + np.argmax(m, axis=1)


def _products(op: GhostOperator, low: bool, high: bool) -> tuple[np.ndarray, np.ndarray, tuple, list[_Side]]:
    """``(columns, matrix, masks, sides)`` of the product sides ``low``/``high`` of ``op``: the
    sample indices the matrix reads, the matrix, one mask per product and the sides' rows."""
    lo_run = np.arange(op.low_start, op.low_start + op.low.shape[1])
    hi_run = np.arange(op.high_start, op.high_start + op.high.shape[1])
    if not (low and high):
        cols, m = (lo_run, op.low) if low else (hi_run, op.high)
        return cols, m, (None,), [_Side(m.shape[0], "product")]
    if np.array_equal(lo_run, hi_run):
        return lo_run, np.vstack([op.low, op.high]), (None,), \
            [_Side(op.before, "product"), _Side(op.after, "product", op.before)]
    if lo_run[-1] < hi_run[0] or hi_run[-1] < lo_run[0]:          # the two runs apart: both, in turn
        cols = np.concatenate([lo_run, hi_run])
        lo_cols, hi_cols = np.arange(len(lo_run)), len(lo_run) + np.arange(len(hi_run))
    else:                                                           # overlapping: the samples they span
        first = min(lo_run[0], hi_run[0])
        cols = np.arange(first, max(lo_run[-1], hi_run[-1]) + 1)
        lo_cols, hi_cols = lo_run - first, hi_run - first
    m = np.zeros((op.before + op.after, len(cols)))
    m[:op.before, lo_cols] = op.low
    m[op.before:, hi_cols] = op.high
    masks = tuple(None if mask.all() else mask for mask in (np.isin(np.arange(len(cols)), lo_cols),
                                                             np.isin(np.arange(len(cols)), hi_cols)))
    return cols, m, masks, [_Side(op.before, "product", 0, 0), _Side(op.after, "product", op.before, 1)]


@functools.lru_cache(maxsize=1024)
def _recipe(op: GhostOperator) -> _Recipe:
    """The gather and products that apply ``op`` (cached per operator object)."""
    parts = ((op.before, op.low_start, op.low), (op.after, op.high_start, op.high))
    copies = [_copies(start, m) if width else None for width, start, m in parts]
    is_product = [bool(width and m.shape[1]) and c is None for (width, _, m), c in zip(parts, copies)]
    sides = [_Side(width, "zeros") for width, _, _ in parts]
    runs, matrix, masks = [], None, ()
    if any(is_product):
        cols, matrix, masks, made = _products(op, *is_product)
        runs.append(cols)
        for i in (0, 1):
            if is_product[i]:
                sides[i] = made.pop(0)
    offset = sum(len(r) for r in runs)
    for i, c in enumerate(copies):
        if c is not None:
            sides[i] = _Side(len(c), "copy", offset)
            runs.append(c)
            offset += len(c)
    index = np.concatenate(runs).astype(np.int32) if runs else None     # int32 also under enable_x64
    if index is not None and np.array_equal(index, np.arange(op.length)):
        index = None                                                    # the whole axis, as it is
    sorted_unique = index is not None and bool((np.diff(index) > 0).all())
    if matrix is not None:
        matrix.setflags(write=False)
    return _Recipe(index, sorted_unique, matrix, masks, sides[0], sides[1])


def _product(src: jax.Array, axis: int, matrix: np.ndarray, mask: np.ndarray | None) -> jax.Array:
    """``matrix`` applied along ``axis`` to ``src[:n]`` (the columns outside ``mask`` as zeros)."""
    n = matrix.shape[1]
    part = src if n == src.shape[axis] else lax.slice_in_dim(src, 0, n, axis=axis)
    if mask is not None:
        shape = [1] * src.ndim
        shape[axis] = n
        part = jnp.where(jnp.asarray(mask.reshape(shape)), part, jnp.zeros((), part.dtype))
    letters = string.ascii_letters[: src.ndim]
    out = letters[:axis] + "Z" + letters[axis + 1:]
    return jnp.einsum(f"{letters},Z{letters[axis]}->{out}", part, jnp.asarray(matrix, src.dtype),
                      precision=lax.Precision.HIGHEST)


def _ghosts(x: jax.Array, src: jax.Array, products: list[jax.Array], axis: int, side: _Side) -> jax.Array | None:
    if not side.width:
        return None
    if side.source == "zeros":
        shape = list(x.shape)
        shape[axis] = side.width
        return jnp.zeros(shape, x.dtype)
    base = src if side.source == "copy" else products[side.product]
    return lax.slice_in_dim(base, side.start, side.start + side.width, axis=axis)


def pad_axis(x: jax.Array, axis: int, op: GhostOperator) -> jax.Array:
    """``x`` with ``op``'s ghosts along ``axis`` (``x`` in the dtype the ghosts are computed in).
    Position ``i`` of the result is ``x[i - op.before]`` inside the data."""
    if op.is_identity:
        return x
    if x.shape[axis] != op.length:
        raise ValueError(f"axis {axis} of x has length {x.shape[axis]}, the ghost operator was built for {op.length}")
    r = _recipe(op)
    src = x if r.index is None else jnp.take(x, r.index, axis=axis, mode="clip", unique_indices=r.sorted_unique,
                                             indices_are_sorted=r.sorted_unique)
    products = [] if r.matrix is None else [_product(src, axis, r.matrix, mask) for mask in r.masks]
    parts = [_ghosts(x, src, products, axis, r.low), x, _ghosts(x, src, products, axis, r.high)]
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
    (:func:`diffconv.jax.functional.uses_extra_row`): a copy of the last high ghost, or a zero."""
    high = op.high
    if op.after and high.shape[1]:
        high = np.concatenate([high, high[-1:]])
    else:
        high = np.zeros((op.after + 1, 0))
    high.setflags(write=False)
    return dataclasses.replace(op, after=op.after + 1, high=high)
