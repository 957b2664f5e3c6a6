"""Exact Lagrange coefficients: the mathematics of diffconv, in one place.

Framework-neutral (NumPy and :mod:`fractions` only). Two views of one rule, "near a border the
kernel acts on the degree-(k-1) polynomial through the k samples nearest that border":

* **ghost weights** (the fast padding form): each ghost sample outside an edge is a fixed
  integer combination of the samples nearest that edge, on the ghost's own dilation lattice;
* **transformation matrices** (the paper's form): the transformed kernel ``K' = T K`` applied
  to the nearest complete window, ``T[m, j] = L_m(shift + j)``.

Everything is exact rational arithmetic, cached, and handed out as read-only ``float64``
arrays (or object arrays of :class:`~fractions.Fraction` with ``exact=True``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

__all__ = [
    "GhostWeights",
    "ghost_widths",
    "ghost_weights",
    "lagrange_basis",
    "source_span",
    "transformation_matrix",
    "transformation_matrix_1d",
    "published_matrices",
]


def _as_array(rows: Sequence[Sequence[Fraction]], exact: bool, shape: tuple[int, ...]) -> np.ndarray:
    if exact:
        out = np.empty(shape, dtype=object)
        for idx, value in np.ndenumerate(np.asarray(rows, dtype=object).reshape(shape)):
            out[idx] = value
    else:
        out = np.array([[float(v) for v in row] for row in rows], dtype=np.float64).reshape(shape)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def _basis(nodes: tuple[int, ...], points: tuple[Fraction, ...]) -> tuple[tuple[Fraction, ...], ...]:
    rows = []
    for m, xm in enumerate(nodes):
        row = []
        for x in points:
            value = Fraction(1)
            for i, xi in enumerate(nodes):
                if i != m:
                    value *= Fraction(x - xi, xm - xi)
            row.append(value)
        rows.append(tuple(row))
    return tuple(rows)


def lagrange_basis(nodes: Sequence[int], points: Sequence[int | Fraction], *, exact: bool = False) -> np.ndarray:
    """Lagrange basis on ``nodes`` evaluated at ``points``.

    Returns ``B`` of shape ``(len(nodes), len(points))`` with ``B[m, j] = L_m(points[j])``, so a
    polynomial of degree ``< len(nodes)`` with values ``u`` at the nodes has value ``u @ B`` at
    the points.
    """
    nodes_t = tuple(int(n) for n in nodes)
    if len(set(nodes_t)) != len(nodes_t):
        raise ValueError(f"lagrange_basis: nodes must be distinct, got {nodes_t}")
    rows = _basis(nodes_t, tuple(Fraction(p) for p in points))
    return _as_array(rows, exact, (len(nodes_t), len(points)))


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def ghost_widths(kernel_size: int, dilation: int = 1) -> tuple[int, int]:
    """Ghost samples needed ``(before, after)`` one axis: ``((e-1)//2, e//2)``, ``e=(k-1)d+1``."""
    k = _check_positive_int("kernel_size", kernel_size)
    d = _check_positive_int("dilation", dilation)
    extent = (k - 1) * d + 1
    return (extent - 1) // 2, extent // 2


def source_span(kernel_size: int, dilation: int = 1, length: int | None = None) -> int:
    """Edge samples one side's ghosts are extrapolated from: ``k*d``, or the whole axis when it
    is shorter (``length``)."""
    k = _check_positive_int("kernel_size", kernel_size)
    d = _check_positive_int("dilation", dilation)
    if length is not None:
        _check_positive_int("length", length)
    span = k * d
    return span if length is None else min(span, int(length))


@dataclass(frozen=True)
class GhostWeights:
    """Ghost weights for one axis.

    ``low``: shape ``(before, m_low)``; row ``i`` is the ghost at position ``i - before``
    (outermost first), columns the samples ``x[0 : m_low]``.
    ``high``: shape ``(after, m_high)``; row ``i`` is the ghost at position ``L + i``,
    columns the samples ``x[L - m_high : L]``.
    So ``concat(low @ x[:m_low], x, high @ x[-m_high:])`` is the padded axis.
    """

    low: np.ndarray
    high: np.ndarray


@functools.lru_cache(maxsize=None)
def _ghost_rows(k: int, d: int, width: int, span: int) -> tuple[tuple[Fraction, ...], ...]:
    """Rows for ghosts at distance q = width..1 before sample 0, over the samples ``x[:span]``.

    A ghost's lattice (step ``d``) holds ``m = min(k, samples of x[:span] on it)`` nodes; the
    ghost is the degree-``m-1`` polynomial through them. An empty lattice takes ``x[0]``."""
    rows = []
    for q in range(width, 0, -1):
        r = (-q) % d                     # residue of the ghost position on its lattice
        row = [Fraction(0)] * span
        m = min(k, -(-(span - r) // d)) if r < span else 0
        if m == 0:
            row[0] = Fraction(1)
        else:
            steps = (q + r) // d         # ghost sits `steps` lattice steps before node 0 (= r)
            for j, w in enumerate(lagrange_basis(range(m), [-steps], exact=True)[:, 0]):
                row[r + j * d] = w
        rows.append(tuple(row))
    return tuple(rows)


@functools.lru_cache(maxsize=None)
def _ghost_weights(k: int, d: int, before: int, after: int, span: int, exact: bool) -> GhostWeights:
    low_rows = _ghost_rows(k, d, before, span)
    # The high edge is the low edge of the reversed axis: reverse rows and columns.
    high_rows = [tuple(reversed(row)) for row in reversed(_ghost_rows(k, d, after, span))]
    return GhostWeights(
        low=_as_array(low_rows, exact, (before, span if before else 0)),
        high=_as_array(high_rows, exact, (after, span if after else 0)),
    )


def ghost_weights(
    kernel_size: int,
    dilation: int = 1,
    *,
    widths: tuple[int, int] | None = None,
    length: int | None = None,
    exact: bool = False,
) -> GhostWeights:
    """Ghost weights for one axis of a size-keeping convolution (the README's Semantics).

    A ghost at distance ``q`` outside an edge takes the value of the degree-``k-1``
    polynomial through the ``k`` samples nearest that edge on its own dilation lattice.
    For ``k=3, d=1`` the single low ghost is ``3*u0 - 3*u1 + u2``. ``widths`` =
    ``(before, after)`` ghosts, by default :func:`ghost_widths` (the size-keeping ones).
    ``length``: the axis length; on an axis shorter than ``k*d`` a lattice with ``m < k``
    samples gives the degree-``m-1`` polynomial through them all, an empty one the edge
    sample (docs/design.md, "Short axes"). The matrices have :func:`source_span` columns.
    """
    k = _check_positive_int("kernel_size", kernel_size)
    d = _check_positive_int("dilation", dilation)
    before, after = ghost_widths(k, d) if widths is None else widths
    for name, w in (("widths[0]", before), ("widths[1]", after)):
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 0:
            raise ValueError(f"ghost_weights: {name} must be an int >= 0, got {w!r}")
    span = source_span(k, d, length) if before or after else 0
    return _ghost_weights(k, d, int(before), int(after), span, bool(exact))


def transformation_matrix_1d(kernel_size: int, shift: int, *, exact: bool = False) -> np.ndarray:
    """Paper's 1-D kernel transformation ``T[m, j] = L_m(shift + j)``, shape ``(k, k)``.

    Nodes are the nearest complete window ``0..k-1`` (in lattice steps); the output whose
    taps start ``shift`` steps from the window's first node uses ``K' = T @ K`` on it.
    ``shift = 0`` is the identity.
    """
    k = _check_positive_int("kernel_size", kernel_size)
    return lagrange_basis(range(k), [int(shift) + j for j in range(k)], exact=exact)


def transformation_matrix(kernel_size: Sequence[int], shift: Sequence[int], *, exact: bool = False) -> np.ndarray:
    """N-D transformation: Kronecker product of the per-axis 1-D matrices (row-major flattening)."""
    if len(kernel_size) != len(shift):
        raise ValueError(f"kernel_size {tuple(kernel_size)} and shift {tuple(shift)} differ in length")
    out = np.ones((1, 1), dtype=object if exact else np.float64)
    for k, s in zip(kernel_size, shift):
        out = np.kron(out, transformation_matrix_1d(k, s, exact=exact))
    out.setflags(write=False)
    return out


def published_matrices(n: int, *, exact: bool = False) -> np.ndarray:
    """The paper's published layout, shape ``(n, n, n*n, n*n)``: ``[a][b]`` is ``T`` for the
    output at offset ``(a - n//2, b - n//2)`` from the centre of its nearest complete window."""
    n = _check_positive_int("n", n)
    c = n // 2
    out = np.empty((n, n, n * n, n * n), dtype=object if exact else np.float64)
    for a in range(n):
        for b in range(n):
            out[a, b] = transformation_matrix((n, n), (a - c, b - c), exact=exact)
    out.setflags(write=False)
    return out
