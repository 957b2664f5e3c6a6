"""The oracle (tests/oracle.py) held to facts that do not come from it: the paper's published
transformation matrices, the worked ghost weights, polynomial exactness, ``numpy.pad`` and
torch's own convolutions (no diffconv import anywhere here)."""
from __future__ import annotations

import ast
import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from oracle import (boundary_mask, conv_transpose, dependency, diff_conv, ghost_amplification, ghost_row,
                    pad, parse_boundary, parse_order, same_widths, transpose_lattice, valid_conv)

DATA = Path(__file__).parent / "data" / "published_matrices"


def _published(n: int) -> np.ndarray:
    text = (DATA / f"kernel_transformation_matrix_{n}x{n}.txt").read_text()
    return np.array(ast.literal_eval(text.replace("{", "[").replace("}", "]")), dtype=np.int64)


def _frac(a) -> np.ndarray:
    return np.vectorize(Fraction, otypes=[object])(np.asarray(a))


# ----------------------------------------------------------------------------- ghost weights

def test_worked_weights():
    assert ghost_row(3, 1, 1, 3) == [3, -3, 1]
    assert ghost_row(5, 1, 2, 5) == [15, -40, 45, -24, 5]
    assert ghost_row(5, 1, 2, 8) == [15, -40, 45, -24, 5, 0, 0, 0]
    assert all(isinstance(w, Fraction) for w in ghost_row(5, 1, 2, 5))


def test_order_low_degrees():
    assert ghost_row(7, 1, 3, 9, order=0) == [1] + [0] * 8           # replicate
    assert ghost_row(7, 1, 1, 9, order=1) == [2, -1] + [0] * 7       # linear extrapolation
    assert ghost_row(7, 1, 2, 9, order=1) == [3, -2] + [0] * 7
    assert ghost_row(5, 1, 1, 9, order=2) == [3, -3, 1] + [0] * 6


def test_dilated_lattice_nodes():
    # k=3, d=2: the ghost at -1 lives on the odd lattice, the ghost at -2 on the even one.
    assert ghost_row(3, 2, 1, 7) == [0, 3, 0, -3, 0, 1, 0]
    assert ghost_row(3, 2, 2, 7) == [3, 0, -3, 0, 1, 0, 0]
    # d=3, ghost at -1: lattice 2, 5, 8
    assert ghost_row(3, 3, 1, 9) == [0, 0, 3, 0, 0, -3, 0, 0, 1]


def test_short_axes_and_empty_lattice():
    assert ghost_row(3, 1, 1, 2) == [2, -1]            # m = 2: linear
    assert ghost_row(5, 1, 2, 1) == [1]                # m = 1: the edge sample
    assert ghost_row(3, 2, 1, 4) == [0, 2, 0, -1]      # odd lattice holds 1, 3 only
    assert ghost_row(3, 3, 2, 1) == [1]                # lattice 1, 4, ... empty: the edge sample
    assert ghost_row(3, 3, 1, 2) == [1, 0]             # lattice 2, ... empty
    assert ghost_row(5, 1, 1, 3, order=1) == [2, -1, 0]
    assert ghost_row(5, 1, 1, 1, order=3) == [1]


def _poly(coeffs, t):
    return sum(Fraction(c) * Fraction(t) ** i for i, c in enumerate(coeffs))


@pytest.mark.parametrize("k,d,length,order", [(3, 1, 7, None), (5, 1, 9, None), (7, 1, 12, None), (4, 2, 11, None),
                                              (5, 3, 20, 2), (3, 2, 4, None), (6, 1, 3, None), (7, 2, 5, 4),
                                              (2, 1, 1, None), (3, 3, 2, None)])
def test_ghosts_reproduce_polynomials(k, d, length, order):
    rng = np.random.default_rng(k * 100 + d * 10 + length)
    for q in range(1, (k - 1) * d + 1):
        r = (-q) % d
        m = len(range(r, length, d))
        deg = (min(k if order is None else order + 1, m) - 1) if m else 0
        coeffs = [int(c) for c in rng.integers(-9, 10, deg + 1)]
        u = [_poly(coeffs, t) for t in range(length)]
        row = ghost_row(k, d, q, length, order)
        got = sum(w * v for w, v in zip(row, u))
        want = _poly(coeffs, -q) if m else u[0]
        assert got == want, (q, coeffs)
        if m:   # and the degree is the highest such: one more degree is not reproduced
            u2 = [_poly(coeffs + [1], t) for t in range(length)]
            assert sum(w * v for w, v in zip(row, u2)) != _poly(coeffs + [1], -q)


def test_ghost_amplification_matches_published_numbers():
    assert round(ghost_amplification(3), 1) == 4.4
    assert round(ghost_amplification(5)) == 67
    assert round(ghost_amplification(7)) == 1325
    assert ghost_amplification(7, order=0) == 1.0
    assert ghost_amplification(3, order=1) == pytest.approx(math.sqrt(5))


# ----------------------------------------------------------------------------- the paper's matrices

@pytest.mark.parametrize("n", [3, 5, 7])
def test_published_transformed_kernel_form(n):
    """out(x0) = sum_m (T K)_m u(window_m) for every output of an n x n image (one complete window)."""
    T = _published(n)
    rng = np.random.default_rng(n)
    u = rng.integers(-5, 6, (1, 1, n, n))
    K = rng.integers(-5, 6, (1, 1, n, n))
    got = diff_conv(_frac(u), _frac(K), exact=True)
    uf, Kf = u.reshape(-1), K.reshape(-1)
    for a, b in itertools.product(range(n), repeat=2):
        want = int(uf @ T[a][b] @ Kf)
        assert got[0, 0, a, b] == want, (a, b)


def test_published_form_on_a_larger_image():
    """On a 9 x 9 image the outputs near the top-left corner use the top-left complete window."""
    n = 3
    T = _published(n)
    rng = np.random.default_rng(1)
    u = rng.integers(-5, 6, (1, 1, 9, 9))
    K = rng.integers(-5, 6, (1, 1, n, n))
    got = diff_conv(u, K, exact=True)
    Kf = K.reshape(-1)
    win = u[0, 0, :n, :n].reshape(-1)
    for a, b in [(0, 0), (0, 1), (1, 0)]:
        assert got[0, 0, a, b] == int(win @ T[a][b] @ Kf)
    win = u[0, 0, -n:, -n:].reshape(-1)
    assert got[0, 0, 8, 8] == int(win @ T[2][2] @ Kf)


# ----------------------------------------------------------------------------- padding modes

_NP = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", list(_NP))
def test_pad_equals_numpy_pad(mode):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 5))
    widths = [(2, 1), (0, 3)]
    want = np.pad(x, [(0, 0), (0, 0)] + widths, mode=_NP[mode])
    np.testing.assert_array_equal(pad(x, widths, mode, (3, 4), 1), want)


def test_pad_mixed_sides_per_side_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 6, 7))
    got = pad(x, [(2, 1), (1, 2)], [("zeros", "reflect"), ("replicate", "zeros")], (3, 3), 1)
    step = np.pad(x, [(0, 0), (0, 0), (2, 0), (0, 0)])
    step = np.concatenate([step, np.pad(x, [(0, 0), (0, 0), (0, 1), (0, 0)], mode="reflect")[:, :, -1:]], axis=2)
    lo = np.pad(step, [(0, 0), (0, 0), (0, 0), (1, 0)], mode="edge")[..., :1]
    hi = np.zeros(step.shape[:3] + (2,))
    want = np.concatenate([lo, step, hi], axis=3)
    np.testing.assert_array_equal(got, want)


def test_pad_diff_one_side_other_mode():
    x = np.arange(1.0, 6.0).reshape(1, 1, 5) ** 2      # t^2 at t = 1..5
    got = pad(x, [(1, 2)], [("diff", "zeros")], 3, 1)
    np.testing.assert_array_equal(got[0, 0], [0.0, 1, 4, 9, 16, 25, 0, 0])    # ghost at t=0 is 0^2
    got = pad(x, [(1, 2)], [("replicate", "diff")], 3, 1)
    np.testing.assert_array_equal(got[0, 0], [1.0, 1, 4, 9, 16, 25, 36, 49])


def test_pad_corners_are_a_tensor_product_and_axes_commute():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 5, 6))
    widths = [(1, 2), (2, 1)]
    modes = [("diff", "reflect"), ("zeros", "diff")]
    a = pad(x, widths, modes, (3, 4), (1, 2), (None, 2))
    # the other axis first
    b = np.swapaxes(pad(np.swapaxes(x, 2, 3), widths[::-1], modes[::-1], (4, 3), (2, 1), (2, None)), 2, 3)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_polynomial_field_is_extended_exactly():
    """On a separable polynomial of degree < k per axis, every padded value is the polynomial."""
    k, d = (4, 3), (2, 1)
    L = (9, 5)
    widths = [same_widths(k[a], d[a]) for a in range(2)]
    f = lambda i, j: (2 * i ** 3 - i + 4) * (j ** 2 - 3 * j + 1)
    x = np.array([[f(i, j) for j in range(L[1])] for i in range(L[0])], dtype=object)[None, None]
    got = pad(x, widths, "diff", k, d, exact=True)
    want = np.array([[f(i, j) for j in range(-widths[1][0], L[1] + widths[1][1])]
                     for i in range(-widths[0][0], L[0] + widths[0][1])], dtype=object)
    assert (got[0, 0] == want).all()


def test_short_axis_errors_like_torch():
    x = np.zeros((1, 1, 2))
    with pytest.raises(ValueError):
        pad(x, [(2, 0)], "reflect")
    with pytest.raises(ValueError):
        pad(x, [(3, 0)], "circular")
    pad(x, [(1, 0)], "reflect")
    pad(x, [(2, 0)], "circular")


# ----------------------------------------------------------------------------- convolutions vs torch

@pytest.mark.parametrize("nd", [1, 2, 3])
def test_valid_conv_equals_torch(nd):
    rng = np.random.default_rng(nd)
    L = (9, 7, 6)[:nd]
    x = rng.standard_normal((2, 4, *L))
    w = rng.standard_normal((6, 2, *(3, 2, 2)[:nd]))
    s, d = (2, 1, 3)[:nd], (1, 2, 1)[:nd]
    conv = (tF.conv1d, tF.conv2d, tF.conv3d)[nd - 1]
    want = conv(torch.tensor(x), torch.tensor(w), None, s, 0, d, 2).numpy()
    np.testing.assert_allclose(valid_conv(x, w, s, d, 2), want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("k,d", [(3, 1), (4, 1), (2, 3), (5, 2)])
def test_zeros_boundary_is_same_padding(k, d):
    rng = np.random.default_rng(k + d)
    x = rng.standard_normal((2, 3, 8, 9))
    w = rng.standard_normal((4, 3, k, 3))
    b = rng.standard_normal(4)
    want = tF.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), padding="same", dilation=d).numpy()
    np.testing.assert_allclose(diff_conv(x, w, b, dilation=d, boundary="zeros"), want, rtol=1e-13, atol=1e-13)
    # stride s: the stride-1 result sampled every s
    np.testing.assert_allclose(diff_conv(x, w, b, stride=(2, 3), dilation=d, boundary="zeros"),
                               want[:, :, ::2, ::3], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_torch_padding_modes(mode):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 6, 7))
    w = rng.standard_normal((3, 2, 3, 4))
    want = tF.conv2d(tF.pad(torch.tensor(x), (1, 2, 1, 1), mode=mode), torch.tensor(w)).numpy()
    np.testing.assert_allclose(diff_conv(x, w, boundary=mode), want, rtol=1e-13, atol=1e-13)


def test_order_zero_is_replicate():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 2, 6, 7))
    w = rng.standard_normal((3, 2, 5, 3))
    np.testing.assert_array_equal(diff_conv(x, w, order=0), diff_conv(x, w, boundary="replicate"))


def test_exact_and_float_agree():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 5, 6))
    w = rng.standard_normal((2, 1, 3, 4))
    np.testing.assert_allclose(diff_conv(x, w, groups=2, dilation=(1, 2)),
                               diff_conv(x, w, groups=2, dilation=(1, 2), exact=True), rtol=1e-12, atol=1e-12)


def test_edge_kernel_and_mask():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 6, 7))
    w, ew = rng.standard_normal((2, 3, 2, 3, 3))
    b, eb = rng.standard_normal((2, 3))
    mask = boundary_mask((6, 7), (3, 3), 1, 1, ["diff", "circular"])
    assert mask[:, 1:-1].any() and mask[0].all() and mask[-1].all() and not mask[1:-1].any()
    y = diff_conv(x, w, b, boundary=["diff", "circular"])
    ye = diff_conv(x, ew, eb, boundary=["diff", "circular"])
    got = diff_conv(x, w, b, boundary=["diff", "circular"], edge_weight=ew, edge_bias=eb)
    np.testing.assert_array_equal(got, np.where(mask, ye, y))
    # stride 2, even kernel: widths (1, 2), outputs 0, 2, 4, 6 read [o-1, o+2] of 0..6
    assert boundary_mask((7,), (4,), 2, 1).tolist() == [True, False, False, True]
    assert boundary_mask((8,), (4,), 2, 1).tolist() == [True, False, False, True]
    assert boundary_mask((7,), (4,), 2, 1, "circular").tolist() == [False] * 4


def test_parse_boundary_and_order():
    assert parse_boundary("reflect", 2) == (("reflect", "reflect"),) * 2
    assert parse_boundary(["diff", ("zeros", "replicate")], 2) == (("diff", "diff"), ("zeros", "replicate"))
    for bad in ("nope", ["diff"], [("circular", "diff"), "diff"], [("diff",), "diff"]):
        with pytest.raises(ValueError):
            parse_boundary(bad, 2)
    assert parse_order(None, 2, (2, 4)) == (None, None)
    assert parse_order((1, 4), 2, (2, 4)) == (1, 4)
    with pytest.raises(ValueError):
        parse_order(3, 2, (2, 4))


# ----------------------------------------------------------------------------- transposed

@pytest.mark.parametrize("s,p,op,d", [(1, 0, 0, 1), (2, 1, 1, 1), (2, 0, 0, 2), (3, 2, 1, 2),
                                      ((2, 1), (0, 1), (1, 0), (1, 3))])
def test_transpose_zeros_is_torch(s, p, op, d):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 5, 4))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(6)
    want = tF.conv_transpose2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), s, p, op, 2, d).numpy()
    np.testing.assert_allclose(conv_transpose(x, w, b, s, p, op, 2, d, boundary="zeros"), want,
                               rtol=1e-13, atol=1e-13)


def test_transpose_without_ghosts_is_torch():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 2, 5, 3))
    w = rng.standard_normal((2, 3, 2, 3))
    want = tF.conv_transpose2d(torch.tensor(x), torch.tensor(w), None, (2, 3)).numpy()
    np.testing.assert_allclose(conv_transpose(x, w, None, (2, 3)), want, rtol=1e-13, atol=1e-13)


def test_transpose_lattice():
    assert transpose_lattice(3, 1, 1) == (3, 1)
    assert transpose_lattice(4, 2, 1) == (2, 1)
    assert transpose_lattice(3, 2, 2) == (3, 1)
    assert transpose_lattice(5, 3, 2) == (2, 2)
    assert transpose_lattice(3, 4, 2) == (2, 1)


@pytest.mark.parametrize("k,s,d", [(3, 1, 1), (5, 1, 2), (3, 1, 2)])
def test_transpose_at_stride_one_is_flipped_diff_conv(k, s, d):
    """At s = 1 the transposed ghosts are DiffConv's: with padding (e-1)//2 on an odd extent the
    transposed layer is the size-keeping correlation with the flipped kernel."""
    e = (k - 1) * d + 1
    if e % 2 == 0:
        pytest.skip("the flip swaps the asymmetric widths")
    rng = np.random.default_rng(k + d)
    x = rng.standard_normal((1, 3, 9))
    w = rng.standard_normal((3, 2, k))
    want = diff_conv(x, np.swapaxes(w, 0, 1)[..., ::-1], dilation=d)
    np.testing.assert_allclose(conv_transpose(x, w, None, 1, (e - 1) // 2, 0, 1, d), want, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("k,s,p,op,d", [(3, 2, 1, 1, 1), (4, 2, 0, 0, 1), (5, 2, 2, 1, 2), (3, 3, 0, 2, 1)])
def test_transpose_polynomial_exactness(k, s, p, op, d):
    """On a polynomial of degree < m the result is torch's transposed convolution of the polynomial
    sampled on a wider input grid, cropped."""
    m, _ = transpose_lattice(k, s, d)
    L, ext = 6, 6
    f = lambda t: 3 * t ** (m - 1) - t + 2 if m > 1 else 5.0
    x = np.array([f(t) for t in range(L)], dtype=np.float64)[None, None]
    xw = np.array([f(t) for t in range(-ext, L + ext)], dtype=np.float64)[None, None]
    rng = np.random.default_rng(k * s)
    w = rng.standard_normal((1, 1, k))
    got = conv_transpose(x, w, None, s, p, op, 1, d)
    full = tF.conv_transpose1d(torch.tensor(xw), torch.tensor(w), None, s, 0, 0, 1, d).numpy()
    start = ext * s + p
    np.testing.assert_allclose(got, full[..., start:start + got.shape[-1]], rtol=1e-11, atol=1e-9)


# ----------------------------------------------------------------------------- dependency sets

def test_dependency_by_impulse():
    """The structural dependency equals the non-zero pattern of the oracle on impulses with
    positive integer weights (no cancellation possible in the taps' sums only where the ghost
    weights share a sign; so compare on |ghost| via order 0 and on the diff rule separately)."""
    L, k = (6, 5), (3, 4)
    for pos in [(0, 0), (1, 4), (5, 2), (3, 3)]:
        x = np.zeros((1, 1, *L))
        x[(0, 0) + pos] = 1
        w = np.ones((1, 1, *k))
        for order in (0, None):
            dep = dependency(L, k, pos, order=order)
            y = diff_conv(x, w, order=order, exact=True)[0, 0]
            assert ((y != 0) <= dep).all()          # no output without a path
            if order == 0:
                assert ((y != 0) == dep).all()
