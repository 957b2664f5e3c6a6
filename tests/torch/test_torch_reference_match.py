"""The fast torch path equals the oracle (the padding and VALID convolution written in the tests,
float64, relative 1e-10) over strides, dilations, groups, edge parameters and dimensions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import oracle
from diffconv.torch import DiffConv1d, DiffConv2d, DiffConv3d
from diffconv.torch import functional as DF
from torch_truths import rel_err

FUNCS = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}
MODULES = {1: DiffConv1d, 2: DiffConv2d, 3: DiffConv3d}
TOL = 1e-10


def _case(nd, lengths, ks, *, stride=1, dilation=1, groups=1, cin=2, cout=3, batch=2,
          bias=False, edge_weight=False, edge_bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    cin, cout = cin * groups, cout * groups
    x = torch.randn((batch, cin) + tuple(lengths), generator=g, dtype=torch.float64)
    w = torch.randn((cout, cin // groups) + tuple(ks), generator=g, dtype=torch.float64)
    b = torch.randn(cout, generator=g, dtype=torch.float64) if bias else None
    ew = torch.randn(w.shape, generator=g, dtype=torch.float64) if edge_weight else None
    eb = torch.randn(cout, generator=g, dtype=torch.float64) if edge_bias else None
    return x, w, b, ew, eb


def _oracle(x, w, b, ew, eb, stride, dilation, groups):
    np_ = lambda t: None if t is None else t.numpy()  # noqa: E731
    return oracle.diff_conv(np_(x), np_(w), np_(b), stride, dilation, groups, edge_weight=np_(ew), edge_bias=np_(eb))


def _check(nd, lengths, ks, *, stride=1, dilation=1, groups=1, **kw):
    x, w, b, ew, eb = _case(nd, lengths, ks, groups=groups, **kw)
    y = FUNCS[nd](x, w, b, stride, dilation, groups, edge_weight=ew, edge_bias=eb)
    r = _oracle(x, w, b, ew, eb, stride, dilation, groups)
    assert y.shape == r.shape
    assert y.dtype == torch.float64
    assert rel_err(y, r) < TOL


@pytest.mark.parametrize("k", range(1, 10))
def test_square_kernels_2d(k):
    _check(2, (k + 3, k + 1), (k, k), bias=True)


@pytest.mark.parametrize("ks", [(1, 4), (2, 5), (3, 2), (6, 3), (4, 7)])
def test_non_square_kernels_and_images_2d(ks):
    _check(2, (ks[0] + 5, ks[1] + 2), ks, bias=True)


@pytest.mark.parametrize("k", range(1, 10))
def test_conv1d(k):
    _check(1, (k + 4,), (k,), bias=True)


@pytest.mark.parametrize("ks", [(1, 2, 3), (3, 3, 3), (2, 4, 5), (5, 1, 2)])
def test_conv3d(ks):
    _check(3, tuple(k + 2 for k in ks), ks, bias=True, cin=1, cout=2)


@pytest.mark.parametrize("groups,cin,cout", [(2, 2, 3), (3, 1, 1), (4, 1, 2)])
def test_groups(groups, cin, cout):
    _check(2, (7, 6), (3, 4), groups=groups, cin=cin, cout=cout, bias=True)


@pytest.mark.parametrize("edge_weight,edge_bias", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_edge_kernel_and_bias(nd, edge_weight, edge_bias):
    ks = (3, 4, 2)[:nd]
    _check(nd, tuple(k + 3 for k in ks), ks, bias=True, edge_weight=edge_weight, edge_bias=edge_bias,
           stride=(1, 2, 1)[:nd], groups=2, cin=1)


@pytest.mark.parametrize("k,d", [(2, 1), (3, 1), (4, 2), (5, 3), (3, 3), (7, 1), (2, 3)])
def test_images_exactly_k_times_d(k, d):
    _check(2, (k * d, k * d), (k, k), dilation=d, bias=True, edge_weight=True)


@pytest.mark.parametrize("stride,dilation", list(itertools.product([1, 2, 3], [1, 2, 3])))
def test_stride_and_dilation(stride, dilation):
    for k in (2, 5):
        _check(2, (k * dilation + 2, k * dilation + 1), (k, k), stride=stride, dilation=dilation, bias=True)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_per_axis_tuples(nd):
    ks, st, dl = (3, 2, 4)[:nd], (2, 1, 3)[:nd], (1, 3, 2)[:nd]
    lengths = tuple(k * d + 3 for k, d in zip(ks, dl))
    _check(nd, lengths, ks, stride=st, dilation=dl, bias=True, edge_weight=True, edge_bias=True, cin=1, cout=1)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_unbatched_input(nd):
    ks = (3, 2, 4)[:nd]
    x, w, b, ew, eb = _case(nd, tuple(k + 2 for k in ks), ks, batch=1, bias=True, edge_weight=True)
    y = FUNCS[nd](x[0], w, b, edge_weight=ew)
    r = _oracle(x, w, b, ew, eb, 1, 1, 1)[0]
    assert y.shape == r.shape
    assert rel_err(y, r) < TOL


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("edge_kernel", [False, True])
def test_modules_equal_reference(nd, edge_kernel):
    torch.manual_seed(nd)
    ks, st, dl = (3, 4, 2)[:nd], (1, 2, 1)[:nd], (2, 1, 1)[:nd]
    m = MODULES[nd](4, 6, ks, stride=st, dilation=dl, groups=2, edge_kernel=edge_kernel, dtype=torch.float64)
    if edge_kernel:
        with torch.no_grad():  # make the edge parameters differ from the main ones
            m.edge_weight.normal_()
            m.edge_bias.normal_()
    x = torch.randn((2, 4) + tuple(k * d + 2 for k, d in zip(ks, dl)), dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
    ew = m.edge_weight.detach() if edge_kernel else None
    eb = m.edge_bias.detach() if edge_kernel else None
    r = _oracle(x, m.weight.detach(), m.bias.detach(), ew, eb, st, dl, 2)
    assert rel_err(y, r) < TOL


def test_module_without_bias_equals_reference():
    m = DiffConv2d(3, 2, (5, 2), bias=False, dtype=torch.float64)
    x = torch.randn(1, 3, 6, 7, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
    r = oracle.diff_conv(x.numpy(), m.weight.detach().numpy())
    assert m.bias is None
    assert rel_err(y, r) < TOL


def test_reference_is_not_zero_padding():
    """Guard: the comparison can fail, since zero padding differs from the reference at the border."""
    x, w, *_ = _case(2, (6, 6), (3, 3))
    zero = torch.nn.functional.conv2d(x, w, padding=1)
    r = _oracle(x, w, None, None, None, 1, 1, 1)
    assert rel_err(zero, r) > 1e-3
    assert np.allclose(zero[..., 1:-1, 1:-1].numpy(), r[..., 1:-1, 1:-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd,ks,dl,extra", [
    (1, (5,), (1,), 0), (1, (3,), (3,), 1), (2, (3, 5), (1, 1), 0), (2, (5, 3), (2, 1), 3),
    (2, (5, 5), (1, 1), 4), (3, (3, 5, 3), (1, 1, 2), 1),
])
def test_plain_layers_on_short_axes(nd, ks, dl, extra):
    # Each border's ghosts come from the k*d samples at that end; from L = k*d up to 2*k*d the
    # two ends' samples overlap, and the gradients of both must add up on the shared samples.
    lengths = tuple(k * d + extra for k, d in zip(ks, dl))
    _check(nd, lengths, ks, dilation=dl, bias=True, groups=2, cin=1, cout=2)
    x, w, b, _, _ = _case(nd, lengths, ks, bias=True, cin=2, cout=2)
    assert torch.autograd.gradcheck(lambda x, w, b: FUNCS[nd](x, w, b, 1, dl), (
        x[:1].requires_grad_(), w.requires_grad_(), b.requires_grad_()))
