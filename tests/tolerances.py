"""Test tolerances derived from the numbers, as jax's own tests derive theirs.

An output of a size-keeping convolution is a sum of ``reduction_length = (C/groups) * prod(k)``
products, each of a weight and a padded value; a padded value near the border is a ghost, a
combination of samples whose weights have l2 norm up to the *ghost amplification* (the largest
over the ghosts of an axis, the product over axes for corners: a tensor product's norm is the
product of the norms). The rounding error of such a sum is bounded, up to a small constant, by
``eps(dtype) * ghost_amplification * reduction_length * scale`` with ``scale`` the size of the
terms (``max|x| * max|w|``). Ghost amplification comes from the oracle (exact weights).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from oracle import ghost_amplification as _amp_1d

_EPS = {"float64": 2.0 ** -52, "float32": 2.0 ** -23, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}


def _name(dtype) -> str:
    s = str(dtype)
    for prefix in ("torch.", "<class 'numpy.", "jnp."):
        s = s.replace(prefix, "")
    s = s.rstrip("'>")
    if s in _EPS:
        return s
    return np.dtype(dtype).name


def eps(dtype) -> float:
    """Machine epsilon (spacing of 1.0) of a numpy, torch or jax dtype, or its name."""
    return _EPS[_name(dtype)]


def _seq(v, n):
    return (v,) * n if v is None or isinstance(v, int) else tuple(v)


def ghost_amplification(kernel_size: int | Sequence[int], order=None, dilation=1) -> float:
    """The largest l2 norm of a (corner) ghost's weights: the product of the per-axis ones."""
    ks = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    return math.prod(_amp_1d(k, d, p) for k, d, p in zip(ks, _seq(dilation, len(ks)), _seq(order, len(ks))))


def conv_tol(dtype, kernel_size, in_per_group: int = 1, *, order=None, dilation=1, scale: float = 1.0,
             boundary: str = "diff") -> float:
    """Absolute tolerance for one output of a size-keeping convolution in ``dtype``.

    ``eps(dtype) * ghost_amplification(k, order) * reduction_length * scale``; with a boundary
    that makes no combinations (zeros, reflect, replicate, circular) the amplification is 1."""
    ks = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    amp = ghost_amplification(ks, order, dilation) if boundary == "diff" else 1.0
    return eps(dtype) * amp * in_per_group * math.prod(ks) * scale


def scale_of(*arrays) -> float:
    """``prod(max|a|)``: the size of one product term (ignores None)."""
    return math.prod(float(np.max(np.abs(np.asarray(a, dtype=np.float64)))) or 1.0
                     for a in arrays if a is not None)
