"""The numpy reference form itself: exact on polynomials against scipy's VALID correlation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.signal import correlate

from diffconv.reference import reference_conv


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


def test_reference_interior_is_plain_correlation_on_random_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 9, 8))
    w = rng.standard_normal((1, 1, 3, 4))
    y = reference_conv(x, w)[0, 0]
    plain = correlate(x[0, 0], w[0, 0], mode="valid")        # outputs 1..7 (rows) x 1..5 (cols)
    assert np.allclose(y[1:-1, 1:-2], plain, rtol=1e-12, atol=1e-12)


def test_reference_edge_weight_and_bias_only_at_boundary():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 7, 7))
    w = rng.standard_normal((2, 2, 3, 3))
    b = rng.standard_normal(2)
    plain = reference_conv(x, w, b)
    edged = reference_conv(x, w, b, edge_weight=2 * w, edge_bias=b + 1)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    assert np.array_equal(plain[inner], edged[inner])
    border = np.ones((7, 7), dtype=bool)
    border[1:-1, 1:-1] = False
    # Linearity: with kernel 2w and bias b+1 the boundary outputs are 2*(plain - b) + b + 1.
    expected = 2 * (plain - b[:, None, None]) + (b + 1)[:, None, None]
    assert np.allclose(edged[..., border], expected[..., border], rtol=1e-12, atol=1e-12)
