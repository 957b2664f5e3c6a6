"""diffconv.coefficients against the published matrices, exact polynomial extrapolation and the stated ghost weights."""

from __future__ import annotations

import ast
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from diffconv.coefficients import (
    ghost_weights,
    ghost_widths,
    lagrange_basis,
    source_span,
    published_matrices,
    transformation_matrix,
    transformation_matrix_1d,
)

PUBLISHED = Path(__file__).parent / "data" / "published_matrices"


def _load_published(n: int) -> list:
    path = PUBLISHED / f"kernel_transformation_matrix_{n}x{n}.txt"
    return ast.literal_eval(path.read_text().replace("{", "[").replace("}", "]"))


@pytest.mark.parametrize("n", [3, 5, 7])
def test_published_matrices_reproduced_exactly(n):
    published = np.array(_load_published(n), dtype=object)     # Python ints
    ours = published_matrices(n, exact=True)                     # Fractions
    assert published.shape == ours.shape == (n, n, n * n, n * n)
    mismatches = np.argwhere(ours != published)                  # exact comparison, entry by entry
    assert mismatches.size == 0, mismatches[:5].tolist()
    assert np.array_equal(published_matrices(n), published.astype(np.float64))


def _random_poly(degree: int, rng: random.Random) -> list[Fraction]:
    return [Fraction(rng.randint(-50, 50), rng.randint(1, 9)) for _ in range(degree + 1)]


def _eval(coef: list[Fraction], x: int) -> Fraction:
    return sum((c * Fraction(x) ** i for i, c in enumerate(coef)), Fraction(0))


@pytest.mark.parametrize("k", range(2, 12))
@pytest.mark.parametrize("d", [1, 2, 3])
def test_ghosts_extrapolate_polynomials_exactly(k, d):
    rng = random.Random(100 * k + d)
    g = ghost_weights(k, d, exact=True)
    before, after = ghost_widths(k, d)
    span = source_span(k, d)
    length = span + 3
    for degree in range(k):
        coef = _random_poly(degree, rng)
        u = [_eval(coef, x) for x in range(length)]
        for i in range(before):
            assert sum(g.low[i, c] * u[c] for c in range(span)) == _eval(coef, i - before)
        for i in range(after):
            assert sum(g.high[i, c] * u[length - span + c] for c in range(span)) == _eval(coef, length + i)


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_ghosts_do_not_reproduce_degree_k(k):
    """Guard for the test above: one degree more is not extrapolated exactly."""
    g = ghost_weights(k, 1, exact=True)
    u = [Fraction(x) ** k for x in range(k)]
    assert sum(g.high[-1, c] * u[c] for c in range(k)) != Fraction(k + ghost_widths(k)[1] - 1) ** k


def test_design_integer_ghost_weights():
    assert list(ghost_weights(3, exact=True).low[0]) == [3, -3, 1]
    assert list(ghost_weights(3, exact=True).high[0]) == [1, -3, 3]
    assert list(ghost_weights(5, exact=True).low[0]) == [15, -40, 45, -24, 5]      # two steps out
    assert list(ghost_weights(5, exact=True).high[-1]) == [5, -24, 45, -40, 15]
    assert list(ghost_weights(5, exact=True).low[1]) == [5, -10, 10, -5, 1]        # one step out


def test_ghost_weights_are_integers_and_float_view_matches():
    for k in range(2, 12):
        for d in (1, 2, 3):
            g = ghost_weights(k, d, exact=True)
            for rows, floats in ((g.low, ghost_weights(k, d).low), (g.high, ghost_weights(k, d).high)):
                assert all(v.denominator == 1 for v in rows.flat)
                assert np.array_equal(np.array(rows, dtype=np.float64), floats)
                assert not floats.flags.writeable


@pytest.mark.parametrize("k,d", [(k, d) for k in range(1, 12) for d in (1, 2, 3)])
def test_ghost_widths_and_source_span(k, d):
    extent = (k - 1) * d + 1
    assert ghost_widths(k, d) == ((extent - 1) // 2, extent // 2)
    assert sum(ghost_widths(k, d)) == extent - 1                # size-keeping
    if k % 2 and d == 1:
        assert ghost_widths(k, d) == (k // 2, k // 2)           # nn.Conv2d(padding=k//2)
    assert source_span(k, d) == k * d
    assert source_span(k, d, 2) == min(2, k * d)
    g = ghost_weights(k, d)
    assert g.low.shape == (ghost_widths(k, d)[0], source_span(k, d) if g.low.shape[0] else 0)
    assert g.high.shape[0] == ghost_widths(k, d)[1]


@pytest.mark.parametrize("k", range(2, 8))
@pytest.mark.parametrize("d", [1, 2, 3])
def test_short_axis_ghosts_take_the_highest_degree_the_lattice_holds(k, d):
    """Short axes (docs/design.md): on an axis of L < k*d samples a ghost's lattice holds m samples;
    the ghost is exact for every polynomial of degree < min(m, k) on that lattice, reads no other
    sample, and an empty lattice copies the nearest edge sample."""
    rng = random.Random(1000 * k + d)
    before, after = ghost_widths(k, d)
    for length in range(1, k * d):
        g = ghost_weights(k, d, length=length, exact=True)
        assert g.low.shape == (before, length if before else 0) and g.high.shape == (after, length if after else 0)
        ghosts = [(i - before, g.low[i]) for i in range(before)] + [(length + i, g.high[i]) for i in range(after)]
        for pos, row in ghosts:
            lattice = [x for x in range(length) if (x - pos) % d == 0]
            nearest = sorted(lattice, key=lambda x: abs(x - pos))[:k]
            if not nearest:
                edge = 0 if pos < 0 else length - 1
                assert [int(v) for v in row] == [int(x == edge) for x in range(length)]
                continue
            assert all(row[x] == 0 for x in range(length) if x not in nearest)
            for degree in range(len(nearest)):
                coef = _random_poly(degree, rng)
                assert sum(row[x] * _eval(coef, x) for x in range(length)) == _eval(coef, pos)
    # L >= k*d: the ordinary weights, unchanged.
    for length in (k * d, k * d + 5):
        g = ghost_weights(k, d, length=length, exact=True)
        assert np.array_equal(g.low, ghost_weights(k, d, exact=True).low)
        assert np.array_equal(g.high, ghost_weights(k, d, exact=True).high)


def test_kernel_size_one_ghosts_are_the_nearest_sample_on_their_lattice():
    """Degree 0 (the transposed convolution's m = 1): each ghost copies the sample nearest it
    on its own lattice, or the edge sample when the lattice is empty."""
    g = ghost_weights(1, 3, widths=(4, 2), length=2, exact=True)
    # low ghosts at -4..-1 (lattices 2, 0, 1, 2 mod 3), high ghosts at 2, 3 (lattices 2, 0)
    assert [list(r) for r in g.low] == [[1, 0], [1, 0], [0, 1], [1, 0]]
    assert [list(r) for r in g.high] == [[0, 1], [1, 0]]


def test_ghosts_stay_on_their_dilation_lattice():
    # k=3, d=2: the ghost at -1 (odd lattice) uses samples 1, 3, 5; the one at -2 uses 0, 2, 4.
    g = ghost_weights(3, 2, exact=True)
    assert [list(r) for r in g.low] == [[3, 0, -3, 0, 1, 0], [0, 3, 0, -3, 0, 1]]


def test_arbitrary_widths():
    rng = random.Random(7)
    coef = _random_poly(3, rng)
    g = ghost_weights(4, 1, widths=(6, 2), exact=True)
    u = [_eval(coef, x) for x in range(4)]
    assert [sum(r[c] * u[c] for c in range(4)) for r in g.low] == [_eval(coef, x) for x in range(-6, 0)]


@pytest.mark.parametrize("k", range(1, 12))
def test_transformation_at_zero_shift_is_identity(k):
    T = transformation_matrix_1d(k, 0, exact=True)
    assert all(T[m, j] == (1 if m == j else 0) for m in range(k) for j in range(k))
    assert np.array_equal(transformation_matrix((k, 2), (0, 0)), np.eye(2 * k))


@pytest.mark.parametrize("k", range(1, 12))
def test_transformation_matrix_moves_polynomials(k):
    """``sum_m T[m, j] u(m) = u(shift + j)`` for every polynomial u of degree < k."""
    rng = random.Random(k)
    coef = _random_poly(k - 1, rng)
    for shift in (-3, -1, 1, 2):
        T = transformation_matrix_1d(k, shift, exact=True)
        for j in range(k):
            assert sum(T[m, j] * _eval(coef, m) for m in range(k)) == _eval(coef, shift + j)


def test_nd_transformation_is_kronecker_product():
    T = transformation_matrix((3, 2), (-1, 1))
    assert np.array_equal(T, np.kron(transformation_matrix_1d(3, -1), transformation_matrix_1d(2, 1)))


@pytest.mark.parametrize("nodes", [[0, 1, 2], [0, 2, 4, 6], [-3, 1, 2, 7, 8]])
def test_lagrange_basis_partition_of_unity_and_kronecker_delta(nodes):
    points = [Fraction(-5, 3), Fraction(1, 2), 4, 11]
    B = lagrange_basis(nodes, points, exact=True)
    assert B.shape == (len(nodes), len(points))
    assert all(sum(B[:, j]) == 1 for j in range(len(points)))
    D = lagrange_basis(nodes, nodes, exact=True)
    assert all(D[m, j] == (m == j) for m in range(len(nodes)) for j in range(len(nodes)))


@pytest.mark.parametrize("call,exc,msg", [
    (lambda: ghost_widths(0), ValueError, r"kernel_size must be an int >= 1, got 0"),
    (lambda: ghost_widths(2.5), ValueError, r"kernel_size must be an int >= 1, got 2.5"),
    (lambda: ghost_widths(True), ValueError, r"kernel_size must be an int >= 1, got True"),
    (lambda: source_span(3, 0), ValueError, r"dilation must be an int >= 1, got 0"),
    (lambda: ghost_weights(3, widths=(-1, 1)), ValueError, r"widths\[0\] must be an int >= 0, got -1"),
    (lambda: ghost_weights(3, widths=(1, 1.5)), ValueError, r"widths\[1\] must be an int >= 0, got 1.5"),
    (lambda: lagrange_basis([0, 1, 1], [0]), ValueError, r"nodes must be distinct, got \(0, 1, 1\)"),
    (lambda: transformation_matrix((3, 3), (0,)), ValueError, r"kernel_size \(3, 3\) and shift \(0,\) differ in length"),
    (lambda: published_matrices(0), ValueError, r"n must be an int >= 1, got 0"),
])
def test_error_messages(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()
