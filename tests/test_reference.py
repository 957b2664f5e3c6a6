"""The numpy reference form (diffconv.reference) held to independent truths: scipy's VALID
correlation on polynomials and the oracle (tests/oracle.py) on random data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.signal import correlate

import oracle
from diffconv.reference import reference_conv
from tolerances import conv_tol, scale_of


def _widths(k: int, d: int) -> tuple[int, int]:
    e = (k - 1) * d + 1
    return (e - 1) // 2, e // 2


def _polynomial(lengths, ks, dils, rng):
    """A random polynomial of degree < k per axis on the data grid and on the extended grid."""
    pads = [_widths(k, d) for k, d in zip(ks, dils)]
    axes = [(np.arange(-lo, L + hi) - L / 2) / L for L, (lo, hi) in zip(lengths, pads)]
    coef = rng.standard_normal(tuple(ks))
    ext = np.zeros(tuple(len(a) for a in axes))
    for powers in itertools.product(*[range(k) for k in ks]):
        term = coef[powers]
        for a, p in enumerate(powers):
            shape = [1] * len(ks)
            shape[a] = -1
            term = term * (axes[a] ** p).reshape(shape)
        ext = ext + term
    inner = ext[tuple(slice(lo, lo + L) for L, (lo, _) in zip(lengths, pads))]
    return inner, ext


def _dilate(kernel: np.ndarray, dils) -> np.ndarray:
    out = np.zeros(tuple((k - 1) * d + 1 for k, d in zip(kernel.shape, dils)))
    out[tuple(slice(None, None, d) for d in dils)] = kernel
    return out


def _scipy_valid(ext_channels, weight, dils, strides):
    """``(C, *ext) x (O, C, *k) -> (O, *out)`` by scipy VALID correlation, then stride sampling."""
    out = []
    for o in range(weight.shape[0]):
        acc = sum(correlate(ext_channels[c], _dilate(weight[o, c], dils), mode="valid") for c in range(weight.shape[1]))
        out.append(acc[tuple(slice(None, None, s) for s in strides)])
    return np.stack(out)


CASES = [
    # lengths, kernel, dilation, stride
    ((9,), (3,), (1,), (1,)),
    ((11,), (4,), (2,), (3,)),
    ((12,), (6,), (1,), (2,)),
    ((8, 7), (3, 2), (1, 1), (1, 1)),
    ((9, 10), (5, 3), (1, 2), (2, 1)),
    ((7, 12), (2, 4), (3, 3), (3, 2)),
    ((6, 5, 7), (3, 2, 3), (1, 1, 2), (1, 2, 3)),
    ((4, 6, 5), (4, 1, 2), (1, 1, 1), (2, 1, 1)),
]


@pytest.mark.parametrize("lengths,ks,dils,strides", CASES)
def test_reference_exact_on_polynomials(lengths, ks, dils, strides):
    rng = np.random.default_rng(sum(lengths))
    channels = [_polynomial(lengths, ks, dils, rng) for _ in range(2)]
    x = np.stack([c[0] for c in channels])[None]
    ext = np.stack([c[1] for c in channels])
    w = rng.standard_normal((3, 2) + ks)
    y = reference_conv(x, w, stride=strides, dilation=dils)[0]
    truth = _scipy_valid(ext, w, dils, strides)
    assert y.shape == truth.shape == (3,) + tuple(-(-L // s) for L, s in zip(lengths, strides))
    assert np.abs(y - truth).max() <= 1e-10 * np.abs(truth).max()


def test_reference_not_exact_one_degree_higher():
    """Guard: a polynomial of degree k is not reproduced at the border."""
    t = np.arange(-1, 9) / 8.0
    ext = t ** 3
    w = np.array([[[1.0, -2.0, 1.0]]])
    y = reference_conv(ext[1:-1][None, None], w)[0, 0]
    truth = correlate(ext, w[0, 0], mode="valid")
    assert np.allclose(y[1:-1], truth[1:-1], rtol=1e-12, atol=1e-14)
    assert not np.isclose(y[0], truth[0], rtol=1e-6)


RANDOM = CASES + [
    # axes of exactly k*d samples, even kernels with dilation, strides longer than the axis' ghosts
    ((3,), (3,), (1,), (1,)),
    ((9,), (3,), (3,), (2,)),
    ((8, 9), (4, 3), (2, 3), (1, 2)),
    ((5, 4), (5, 4), (1, 1), (1, 3)),
    ((7, 8), (6, 2), (1, 4), (2, 1)),
]
# (the transformed-kernel form needs a complete window on every lattice: short axes are the
# oracle's and the backends' business, see test_reference_rejects_short_axes)


def test_reference_rejects_short_axes():
    for lengths, ks, dils in [((2,), (3,), (1,)), ((5,), (3,), (3,)), ((3, 9), (4, 3), (2, 3))]:
        with pytest.raises(ValueError, match="complete window"):
            reference_conv(np.zeros((1, 1, *lengths)), np.zeros((1, 1, *ks)), dilation=dils)


@pytest.mark.parametrize("lengths,ks,dils,strides", RANDOM)
@pytest.mark.parametrize("groups", [1, 2])
def test_reference_equals_oracle_on_random_data(lengths, ks, dils, strides, groups):
    rng = np.random.default_rng(sum(lengths) * 7 + sum(ks) + groups)
    x = rng.standard_normal((2, 4, *lengths))
    w = rng.standard_normal((6, 4 // groups, *ks))
    b = rng.standard_normal(6)
    got = reference_conv(x, w, b, strides, dils, groups)
    want = oracle.diff_conv(x, w, b, strides, dils, groups)
    tol = conv_tol("float64", ks, 4 // groups, dilation=dils, scale=scale_of(x, w))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


@pytest.mark.parametrize("lengths,ks,dils,strides", [RANDOM[3], RANDOM[4], RANDOM[9], RANDOM[11], RANDOM[12]])
def test_reference_edge_kernel_equals_oracle(lengths, ks, dils, strides):
    rng = np.random.default_rng(len(lengths) + 40)
    x = rng.standard_normal((1, 2, *lengths))
    w, ew = rng.standard_normal((2, 3, 2, *ks))
    b, eb = rng.standard_normal((2, 3))
    tol = conv_tol("float64", ks, 2, dilation=dils, scale=scale_of(x, w))
    for kw in (dict(edge_weight=ew, edge_bias=eb), dict(edge_weight=ew), dict(edge_bias=eb)):
        got = reference_conv(x, w, b, strides, dils, 1, **kw)
        want = oracle.diff_conv(x, w, b, strides, dils, 1, **kw)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    # and the edge parameters really reach the boundary outputs only
    mask = oracle.boundary_mask(lengths, ks, strides, dils)
    plain = reference_conv(x, w, b, strides, dils)
    edged = reference_conv(x, w, b, strides, dils, 1, ew, eb)
    assert np.array_equal(plain[..., ~mask], edged[..., ~mask])
    assert np.all(plain[..., mask] != edged[..., mask])
