"""The one ghost builder of the torch backend.

Each padded axis is an :class:`AxisGhosts`: the tensor dim it acts on and the matrices of the
axis's :class:`diffconv.boundary.GhostOperator` (two small ones, each over one run of edge
samples, and the transposed padding for backward) as plain Python values.
:func:`pad` extends a tensor axis after axis, each axis as ``cat([low @ run, t, high @ run])``
(plain differentiable operations: autograd, ``torch.compile`` and ``torch.func`` see through
it); :func:`fold` is its transpose, in place, for hand-written backwards. Ghosts are computed
in at least float32 and returned in the input's dtype.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence, TypeVar

import numpy as np
import torch

from ..boundary import GhostOperator

_LOW_PRECISION = (torch.float16, torch.bfloat16)

T = TypeVar("T")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the ghosts are computed in: at least float32."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


Matrix = tuple[tuple[float, ...], ...]

#: Longest axis with a dense transposed padding (``L x (L + ghosts)``) for :func:`fold`.
DENSE_FOLD_MAX = 32

#: Largest map (positions per sample and channel) that counts as small: there the operations'
#: count, not their arithmetic, makes a layer's time. :func:`fold` takes a small map's ghost
#: gradients with one dense product per axis (where the axis has one) instead of the four small
#: operations of the sparse fold, whose ``O(1)`` work per sample wins on larger maps.
SMALL_MAP_MAX = 6144


class Taps(NamedTuple):
    """:meth:`diffconv.boundary.GhostOperator.taps` of one side: ``index`` the samples each ghost
    reads, flattened, rows outermost ghost first; ``weights`` ``(ghosts, count)``, empty where each
    ghost is one sample copied."""

    index: tuple[int, ...]
    weights: Matrix


def _taps(op: GhostOperator, high: bool) -> Taps | None:
    copied = op.copies(high)
    if copied is not None:
        return Taps(tuple(int(i) for i in copied), ())
    found = op.taps(high)
    if found is None:
        return None
    index, weights = found
    return Taps(tuple(int(i) for i in index.ravel()), _matrix(weights))


class AxisGhosts(NamedTuple):
    """The ghosts of tensor dim ``dim`` (plain Python values: ``torch.compile`` takes them as
    constants). ``low`` ``(before, n)`` over ``t[low_start : low_start + n]``, ``high`` likewise;
    ``fold``: the transposed padding, block-diagonal ``(n + m, before + after)`` with ``sources``
    (the samples the ghosts read) and ``ghosts`` (their positions in the padded axis); ``dense``:
    the transposed padding ``(length, before + length + after)``, on axes short enough to take
    part in a small map (else empty)."""

    dim: int
    length: int
    before: int
    after: int
    low_start: int
    low: Matrix
    high_start: int
    high: Matrix
    fold: Matrix
    sources: tuple[int, ...]
    ghosts: tuple[int, ...]
    dense: Matrix
    low_taps: Taps | None = None
    high_taps: Taps | None = None

    @classmethod
    def of(cls, dim: int, op: GhostOperator) -> "AxisGhosts":
        L, n, m = op.length, op.low.shape[1], op.high.shape[1]
        fold = np.zeros((n + m, op.before + op.after))
        fold[:n, :op.before], fold[n:, op.before:] = op.low.T, op.high.T
        sources = tuple(range(op.low_start, op.low_start + n)) + tuple(range(op.high_start, op.high_start + m))
        ghosts = tuple(range(op.before)) + tuple(range(op.before + L, op.before + L + op.after))
        dense = _matrix(op.dense().T) if L <= DENSE_FOLD_MAX else ()
        return cls(dim, L, op.before, op.after, op.low_start, _matrix(op.low), op.high_start, _matrix(op.high),
                   _matrix(fold), sources, ghosts, dense, _taps(op, False), _taps(op, True))

    @property
    def is_identity(self) -> bool:
        return not (self.before or self.after)


def _matrix(a: np.ndarray) -> Matrix:
    return tuple(tuple(float(v) for v in row) for row in a)


def eager_cached(build: Callable[..., T]) -> Callable[..., T]:
    """``build`` cached per arguments in eager mode. While ``torch.compile`` traces, it runs as a
    constant (``assume_constant_result``: dynamo takes its plain-Python result without tracing
    into it); while ``torch.jit.trace`` traces, afresh, so that the trace check, which traces
    twice, records the same operations both times."""
    cached = functools.lru_cache(maxsize=512)(build)
    constant = torch.compiler.assume_constant_result(build)

    @functools.wraps(build)
    def get(*args):
        if torch.compiler.is_compiling():
            return constant(*args)
        return build(*args) if torch.jit.is_tracing() else cached(*args)

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return get


class _Matrices(NamedTuple):
    """Each matrix with its transpose (both contiguous: along the last dim a product takes the transpose)."""

    low: tuple[torch.Tensor, torch.Tensor]
    high: tuple[torch.Tensor, torch.Tensor]
    fold: tuple[torch.Tensor, torch.Tensor]
    sources: torch.Tensor
    ghosts: torch.Tensor
    dense: tuple[torch.Tensor, torch.Tensor] | None
    low_taps: tuple[torch.Tensor, torch.Tensor | None] | None
    high_taps: tuple[torch.Tensor, torch.Tensor | None] | None


def _tensor(m: Matrix, rows: int, cols: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.tensor(m, device=device, dtype=dtype).reshape(rows, cols)
    return t, t.T.contiguous()


def matrices(g: AxisGhosts, device: torch.device, dtype: torch.dtype) -> _Matrices:
    """The tensors :func:`pad` and :func:`fold` apply for ``g``, cached per device and dtype in
    eager mode (built afresh, as graph constants, while PyTorch traces)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return _build_matrices(g, device, dtype)
    # Keyed by identity (hashing the matrices on every call would cost more than the products);
    # the layouts that hold ``g`` are cached, and the entry keeps ``g`` so its id stays its own.
    key = (id(g), device, dtype)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not g:
        if len(_CACHE) > 2048:
            _CACHE.clear()
        hit = _CACHE[key] = (g, _build_matrices(g, device, dtype))
    return hit[1]


def _build_matrices(g: AxisGhosts, device: torch.device, dtype: torch.dtype) -> _Matrices:
    n, m = len(g.low[0]) if g.low else 0, len(g.high[0]) if g.high else 0
    padded = g.before + g.length + g.after
    index = [torch.tensor(v, device=device, dtype=torch.long) for v in (g.sources, g.ghosts)]
    return _Matrices(_tensor(g.low, g.before, n, device, dtype), _tensor(g.high, g.after, m, device, dtype),
                     _tensor(g.fold, n + m, g.before + g.after, device, dtype), *index,
                     _tensor(g.dense, g.length, padded, device, dtype) if g.dense else None,
                     _tap_tensors(g.low_taps, device, dtype), _tap_tensors(g.high_taps, device, dtype))


def _tap_tensors(taps: Taps | None, device: torch.device, dtype: torch.dtype):
    if taps is None:
        return None
    weights = torch.tensor(taps.weights, device=device, dtype=dtype) if taps.weights else None
    return torch.tensor(taps.index, device=device, dtype=torch.long), weights


_CACHE: dict = {}


def _along(m: tuple[torch.Tensor, torch.Tensor], t: torch.Tensor, dim: int) -> torch.Tensor:
    """``m[0] @ t`` along ``t``'s dim ``dim`` (``m``: a matrix ``(rows, t.shape[dim])`` and its
    transpose): one matrix product whatever ``dim`` is; the result keeps ``t``'s dim order."""
    last = t.dim() - 1
    if dim == last:
        return torch.matmul(t, m[1])
    if dim == last - 1:
        return torch.matmul(m[0], t)
    idx = "abcdefgh"[:t.dim()]
    return torch.einsum(f"z{idx[dim]},{idx}->{idx[:dim]}z{idx[dim + 1:]}", m[0], t)


def _side(t: torch.Tensor, g: AxisGhosts, start: int, m: tuple[torch.Tensor, torch.Tensor],
          taps: tuple[torch.Tensor, torch.Tensor | None] | None, work: torch.dtype) -> torch.Tensor:
    """One side's ghosts ``m @ t[start : start + n]`` along ``g.dim``; zeros where ``m`` has no
    columns; from the gathered samples each ghost reads where the side has ``taps``."""
    rows, n = m[0].shape
    if n == 0:
        shape = list(t.shape)
        shape[g.dim] = rows
        return t.new_zeros(shape)
    if taps is not None:
        index, weights = taps
        picked = t.index_select(g.dim, index)
        if weights is None:
            return picked
        shape = weights.shape + (1,) * (t.dim() - g.dim - 1)
        ghosts = (picked.to(work).unflatten(g.dim, weights.shape) * weights.view(shape)).sum(g.dim + 1)
        return ghosts.to(t.dtype)
    run = t.narrow(g.dim, start, n)
    if run.dtype != work:
        return _along(m, run.to(work), g.dim).to(t.dtype)
    return _along(m, run, g.dim)


def ghost_sides(t: torch.Tensor, g: AxisGhosts) -> tuple[torch.Tensor, torch.Tensor]:
    """The low and high ghosts of ``t`` along ``g.dim`` (``before`` and ``after`` entries)."""
    mats = matrices(g, t.device, work_dtype(t.dtype))
    work = mats.low[0].dtype
    return (_side(t, g, g.low_start, mats.low, mats.low_taps, work),
            _side(t, g, g.high_start, mats.high, mats.high_taps, work))


def pad(t: torch.Tensor, axes: Sequence[AxisGhosts], sides: list | None = None) -> torch.Tensor:
    """``t`` with its ghosts along every axis, last axis first (so each axis's ghosts cover the
    ghosts already added along the later ones: corners are the tensor product). ``sides``, when
    given, receives each padded axis's ``(low, high)`` ghosts, for :func:`repad`."""
    for g in reversed(axes):
        if not g.is_identity:
            low, high = ghost_sides(t, g)
            if sides is not None:
                sides.append((low, high))
            t = torch.cat([low, t, high], g.dim)
    return t


def repad(t: torch.Tensor, axes: Sequence[AxisGhosts], sides: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`pad` again from the ghosts it gave to ``sides`` (flattened): one ``cat`` per axis."""
    it = iter(sides)
    for g in reversed(axes):
        if not g.is_identity:
            t = torch.cat([next(it), t, next(it)], g.dim)
    return t


def fold(grad: torch.Tensor, axes: Sequence[AxisGhosts]) -> torch.Tensor:
    """Transpose of :func:`pad`: the gradient on the padded tensor carried onto the data, first
    axis first. Small maps: one dense product per axis; larger ones: the ghosts' gradient,
    gathered, through the (block-diagonal) transposed ghost matrices and added onto the samples
    they came from, in place on ``grad``. Returns a tensor shaped like the data."""
    small = math.prod(grad.shape[2:]) <= SMALL_MAP_MAX
    for g in axes:
        if g.is_identity:
            continue
        mats = matrices(g, grad.device, work_dtype(grad.dtype))
        dense = small and mats.dense is not None
        part = grad if dense else grad.index_select(g.dim, mats.ghosts)
        m = mats.dense if dense else mats.fold
        if part.dtype != m[0].dtype:
            part = part.to(m[0].dtype)
        back = _along(m, part, g.dim)
        if back.dtype != grad.dtype:
            back = back.to(grad.dtype)
        if dense:
            grad = back
        else:
            grad = grad.narrow(g.dim, g.before, g.length).index_add_(g.dim, mats.sources, back)
    return grad
