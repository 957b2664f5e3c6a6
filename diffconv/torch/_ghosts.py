"""The one ghost builder of the torch backend.

Each padded axis is an :class:`AxisGhosts`: the axis's :class:`diffconv.boundary.GhostOperator`
(two small matrices, each over one run of edge samples) and the tensor dim it acts on.
:func:`pad` extends a tensor axis after axis, each axis as ``cat([low @ run, t, high @ run])``
(plain differentiable operations: autograd, ``torch.compile`` and ``torch.func`` see through
it); :func:`fold` is its transpose, in place, for hand-written backwards. Ghosts are computed
in at least float32 and returned in the input's dtype.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence, TypeVar

import numpy as np
import torch

from ..boundary import GhostOperator

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_LETTERS = "abcdefgh"

T = TypeVar("T")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the ghosts are computed in: at least float32."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


class AxisGhosts(NamedTuple):
    """The ghosts of tensor dim ``dim``, as :attr:`op` describes them."""

    dim: int
    op: GhostOperator


def eager_cached(build: Callable[..., T]) -> Callable[..., T]:
    """``build`` cached per arguments in eager mode, and called afresh while ``torch.compile`` or
    ``torch.jit.trace`` traces: its tensors then become graph constants instead of cached objects,
    and ``torch.jit.trace``'s check, which traces twice, records the same operations both times."""
    cached = functools.lru_cache(maxsize=512)(build)

    @functools.wraps(build)
    def get(*args):
        return build(*args) if torch.compiler.is_compiling() or torch.jit.is_tracing() else cached(*args)

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return get


#: Longest axis whose ghost gradients :func:`fold` takes with one dense product (the transposed
#: padding matrix, ``L x (L + ghosts)``): on short axes one product costs less than the four
#: small operations of the sparse fold; on long ones its ``O(L)`` work per sample costs more.
DENSE_FOLD_MAX = 64


class _Matrices(NamedTuple):
    """Each matrix with its transpose (both contiguous: along the last dim a product takes the transpose)."""

    low: tuple[torch.Tensor, torch.Tensor]    # (before, n): low ghosts from x[low_start : low_start + n]
    high: tuple[torch.Tensor, torch.Tensor]   # (after, m)
    fold: tuple[torch.Tensor, torch.Tensor]   # dense (L, before + L + after) or block-diagonal (n + m, before + after)
    sources: torch.Tensor | None    # sparse fold: the samples the ghosts read (index_add_ target)
    ghosts: torch.Tensor | None     # sparse fold: the ghosts' positions in the padded axis


def _fold_matrix(op: GhostOperator) -> np.ndarray:
    if op.length <= DENSE_FOLD_MAX:
        return op.dense().T
    n, m = op.low.shape[1], op.high.shape[1]
    out = np.zeros((n + m, op.before + op.after))
    out[:n, :op.before] = op.low.T
    out[n:, op.before:] = op.high.T
    return out


@torch.compiler.assume_constant_result
def _lists(op: GhostOperator) -> tuple[list, list, list]:
    """The matrices as nested lists (a constant for ``torch.compile``)."""
    return op.low.tolist(), op.high.tolist(), _fold_matrix(op).tolist()


@eager_cached
def matrices(op: GhostOperator, device: torch.device, dtype: torch.dtype) -> _Matrices:
    """The tensors :func:`pad` and :func:`fold` apply for ``op`` (contiguous, so no product copies them)."""
    low, high, fold_m = ((t, t.T.contiguous()) for t in (
        torch.tensor(m, device=device, dtype=dtype).reshape(s)
        for m, s in zip(_lists(op), (op.low.shape, op.high.shape, _fold_matrix(op).shape))))
    if op.length <= DENSE_FOLD_MAX:
        return _Matrices(low, high, fold_m, None, None)
    n, m, L = op.low.shape[1], op.high.shape[1], op.length
    sources = torch.cat([torch.arange(op.low_start, op.low_start + n), torch.arange(op.high_start, op.high_start + m)])
    ghosts = torch.cat([torch.arange(op.before), torch.arange(op.before + L, op.before + L + op.after)])
    return _Matrices(low, high, fold_m, sources.to(device), ghosts.to(device))


def _along(m: tuple[torch.Tensor, torch.Tensor], t: torch.Tensor, dim: int) -> torch.Tensor:
    """``m[0] @ t`` along ``t``'s dim ``dim`` (``m``: a matrix ``(rows, t.shape[dim])`` and its
    transpose): one matrix product whatever ``dim`` is; the result keeps ``t``'s dim order."""
    if dim == t.dim() - 1:
        return torch.matmul(t, m[1])
    idx = _LETTERS[:t.dim()]
    return torch.einsum(f"z{idx[dim]},{idx}->{idx[:dim]}z{idx[dim + 1:]}", m[0], t)


def _side(t: torch.Tensor, g: AxisGhosts, start: int, m: tuple[torch.Tensor, torch.Tensor],
          work: torch.dtype) -> torch.Tensor:
    """One side's ghosts ``m @ t[start : start + n]`` along ``g.dim``; zeros where ``m`` has no columns."""
    rows, n = m[0].shape
    if n == 0:
        shape = list(t.shape)
        shape[g.dim] = rows
        return t.new_zeros(shape)
    run = t.narrow(g.dim, start, n)
    if run.dtype != work:
        return _along(m, run.to(work), g.dim).to(t.dtype)
    return _along(m, run, g.dim)


def ghost_sides(t: torch.Tensor, g: AxisGhosts) -> tuple[torch.Tensor, torch.Tensor]:
    """The low and high ghosts of ``t`` along ``g.dim`` (``before`` and ``after`` entries)."""
    low, high, _, _, _ = matrices(g.op, t.device, work_dtype(t.dtype))
    work = low[0].dtype
    return _side(t, g, g.op.low_start, low, work), _side(t, g, g.op.high_start, high, work)


def pad(t: torch.Tensor, axes: Sequence[AxisGhosts], saved: list | None = None) -> torch.Tensor:
    """``t`` with its ghosts along every axis, last axis first (so each axis's ghosts cover the
    ghosts already added along the later ones: corners are the tensor product). ``saved``: if
    given, each axis's ``(low, high)`` ghosts are appended to it (for :func:`rebuild`)."""
    for g in reversed(axes):
        if g.op.is_identity:
            continue
        low, high = ghost_sides(t, g)
        if saved is not None:
            saved.append((low, high))
        t = torch.cat([low, t, high], g.dim)
    return t


def rebuild(t: torch.Tensor, axes: Sequence[AxisGhosts], saved: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """:func:`pad` from ghosts it saved earlier (no products)."""
    it = iter(saved)
    for g in reversed(axes):
        if not g.op.is_identity:
            low, high = next(it)
            t = torch.cat([low, t, high], g.dim)
    return t


def fold(grad: torch.Tensor, axes: Sequence[AxisGhosts]) -> torch.Tensor:
    """Transpose of :func:`pad`: the gradient on the padded tensor carried onto the data, first
    axis first. Short axes: one dense product; long ones: the ghosts' gradient, gathered, through
    the (block-diagonal) transposed ghost matrices and added onto the samples they came from, in
    place on ``grad``. Returns a tensor shaped like the data."""
    for g in axes:
        op = g.op
        if op.is_identity:
            continue
        mats = matrices(op, grad.device, work_dtype(grad.dtype))
        part = grad if mats.ghosts is None else grad.index_select(g.dim, mats.ghosts)
        if part.dtype != mats.fold[0].dtype:
            part = part.to(mats.fold[0].dtype)
        back = _along(mats.fold, part, g.dim)
        if back.dtype != grad.dtype:
            back = back.to(grad.dtype)
        if mats.ghosts is None:
            grad = back
        else:
            grad = grad.narrow(g.dim, op.before, op.length).index_add_(g.dim, mats.sources, back)
    return grad
