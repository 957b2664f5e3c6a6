"""Polynomial exactness (the README's Semantics): on samples of a polynomial of degree < k per axis, the
size-keeping convolution equals the VALID convolution of that polynomial on the extended grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffconv.torch import functional as DF
from torch_truths import exactness_tol, polynomial_samples, rel_err, valid_conv, widths

FUNCS = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}
TOL = 1e-9



def check_polynomial_exactness(nd, ks, lengths, stride, dilation, groups, seed=0, batch=1, cin=1, cout=2):
    """Assert polynomial exactness for one configuration; returns the relative error.

    The bound is 1e-9, widened only where float64 rounding of the samples, amplified by the
    ghost weights (a product over axes), can exceed it (k = 9 in 2-D corners).
    """
    rng = np.random.default_rng(seed)
    stride = (stride,) * nd if isinstance(stride, int) else tuple(stride)
    dilation = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    pads = [widths(k, d) for k, d in zip(ks, dilation)]
    x, ext = polynomial_samples(lengths, [k - 1 for k in ks], pads, cin * groups, batch, rng)
    w = torch.from_numpy(rng.standard_normal((cout * groups, cin) + tuple(ks)))
    b = torch.from_numpy(rng.standard_normal(cout * groups))
    y = FUNCS[nd](x, w, b, stride, dilation, groups)
    truth = valid_conv(ext, w, b, stride, dilation, groups)
    assert y.shape == truth.shape
    err = rel_err(y, truth)
    assert err < exactness_tol(ks, dilation, TOL), (err, exactness_tol(ks, dilation, TOL))
    return err


@pytest.mark.parametrize("k", range(1, 10))
@pytest.mark.parametrize("nd", [1, 2])
def test_exact_on_polynomials(nd, k):
    lengths = (k + 4, k + 1)[:nd]
    check_polynomial_exactness(nd, (k,) * nd, lengths, 1, 1, 1)


@pytest.mark.parametrize("ks", [(1, 2, 3), (3, 3, 3), (4, 2, 5), (2, 6, 1)])
def test_exact_on_polynomials_3d(ks):
    check_polynomial_exactness(3, ks, tuple(k * d + 2 for k, d in zip(ks, (1, 1, 2))), (1, 2, 1), (1, 1, 2), 1)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7, 8, 9])
@pytest.mark.parametrize("stride,dilation", [(2, 1), (1, 2), (3, 3), (2, 3)])
def test_exact_with_stride_and_dilation(k, stride, dilation):
    check_polynomial_exactness(1, (k,), (k * dilation + 3,), stride, dilation, 1, cin=2)


@pytest.mark.parametrize("stride,dilation", [((1, 2), (2, 1)), ((3, 1), (1, 3)), ((2, 2), (2, 2))])
def test_exact_2d_strided_dilated(stride, dilation):
    ks = (3, 4)
    lengths = tuple(k * d + 2 for k, d in zip(ks, dilation))
    check_polynomial_exactness(2, ks, lengths, stride, dilation, 1)


@pytest.mark.parametrize("groups", [2, 3])
def test_exact_with_groups(groups):
    check_polynomial_exactness(2, (5, 3), (8, 7), 1, 1, groups, cin=2, cout=1, batch=2)


def test_not_exact_one_degree_higher():
    """Guard: degree k along an axis is not reproduced, so the check above can fail."""
    rng = np.random.default_rng(1)
    k = 3
    x, ext = polynomial_samples((9,), (k,), [widths(k, 1)], 1, 1, rng)
    w = torch.ones(1, 1, k, dtype=torch.float64)
    assert rel_err(DF.conv1d(x, w), valid_conv(ext, w)) > 1e-6


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("length", [7, 8, 9, 10])
def test_output_shape_is_ceil(length, stride):
    x = torch.randn(2, 3, length, length + 1)
    w = torch.randn(4, 3, 3, 2)
    y = DF.conv2d(x, w, stride=stride)
    assert tuple(y.shape) == (2, 4, math.ceil(length / stride), math.ceil((length + 1) / stride))
    torch.testing.assert_close(y, DF.conv2d(x, w)[..., ::stride, ::stride], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_stride_is_stride_one_subsampled(nd):
    g = torch.Generator().manual_seed(nd)
    ks, dl = (3, 4, 2)[:nd], (1, 2, 1)[:nd]
    x = torch.randn((1, 2) + tuple(k * d + 4 for k, d in zip(ks, dl)), generator=g, dtype=torch.float64)
    w = torch.randn((2, 2) + ks, generator=g, dtype=torch.float64)
    ew = torch.randn(w.shape, generator=g, dtype=torch.float64)
    full = FUNCS[nd](x, w, dilation=dl, edge_weight=ew)
    for s in (2, 3):
        strided = FUNCS[nd](x, w, stride=s, dilation=dl, edge_weight=ew)
        sub = full[(slice(None), slice(None)) + (slice(None, None, s),) * nd]
        assert strided.shape == sub.shape
        assert rel_err(strided, sub) < 1e-12


@pytest.mark.parametrize("k,d,lo,hi", [(3, 1, 1, 1), (4, 1, 1, 2), (5, 1, 2, 2), (3, 2, 2, 2), (4, 3, 4, 5), (9, 1, 4, 4)])
def test_lagrange_pad_default_kernel_extrapolates_polynomials(k, d, lo, hi):
    # The default kernel_size is (lo + hi) // d + 1; the ghosts follow polynomials of lower degree.
    assert (lo + hi) // d + 1 == k
    rng = np.random.default_rng(k)
    x, ext = polynomial_samples((k * d + 1, 5), (k - 1, 2), [(lo, hi), (0, 0)], 2, 1, rng)
    padded = DF.lagrange_pad(x, (0, 0, lo, hi), dilation=(1, d))
    assert padded.shape == ext.shape
    assert rel_err(padded, ext) < 1e-10
    assert torch.equal(padded[:, :, lo:lo + x.shape[2]], x)


@pytest.mark.parametrize("k,pad", [(3, (5, 0)), (2, (0, 3)), (4, (2, 7)), (3, (1, 0))])
def test_lagrange_pad_arbitrary_widths(k, pad):
    rng = np.random.default_rng(sum(pad))
    x, ext = polynomial_samples((k + 2,), (k - 1,), [pad], 1, 2, rng)
    padded = DF.lagrange_pad(x, pad, kernel_size=k)
    assert rel_err(padded, ext) < 1e-10


def test_lagrange_pad_follows_f_pad_axis_order():
    """``pad`` lists the last axis first, as in torch.nn.functional.pad."""
    rng = np.random.default_rng(3)
    pads = [(2, 1), (1, 2), (0, 1)]             # axes 2, 3, 4
    x, ext = polynomial_samples((6, 7, 5), (3, 3, 1), pads, 1, 1, rng)
    flat = (0, 1, 1, 2, 2, 1)                   # last axis first
    padded = DF.lagrange_pad(x, flat, kernel_size=(2, 4, 4))
    assert padded.shape == ext.shape
    assert rel_err(padded, ext) < 1e-10
