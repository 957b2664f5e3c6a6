"""Non-finite values through diffconv.torch: a NaN or Inf in the input reaches exactly the
outputs that read it, directly or through a ghost built from it (the dependency set comes
from the oracle's exact padding matrices, tests/oracle.py); a NaN in a weight or bias reaches
exactly the outputs that use it (the whole channel, or with an edge kernel the boundary or
the interior outputs of that channel). Eager (``padded`` form) and under ``torch.func.vmap``
(``composite`` form)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import oracle
from diffconv.torch import functional as F

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
HAS_BOUNDARY = "boundary" in inspect.signature(F.conv2d).parameters

# lengths, kernel, dilation, stride, boundary, order
CASES = [
    ((9,), (3,), (1,), (1,), "diff", None),
    ((10,), (4,), (2,), (1,), "diff", None),                       # even kernel, two lattices
    ((11,), (5,), (1,), (2,), [("diff", "zeros")], None),
    ((3,), (3,), (2,), (1,), "diff", None),                        # short axis, lattice of one sample
    ((8, 9), (3, 3), (1, 1), (1, 1), "diff", None),
    ((9, 8), (5, 2), (2, 1), (1, 2), [("diff", "replicate"), "circular"], (2, None)),
    ((4, 7), (5, 3), (1, 2), (1, 1), "diff", None),                # short axis 0
    ((7, 8), (3, 4), (1, 1), (2, 1), ["reflect", ("diff", "diff")], (1, 3)),
    ((6, 5, 5), (3, 3, 2), (1, 1, 1), (1, 1, 1), ["diff", ("zeros", "diff"), "replicate"], None),
]
CASES = [c for c in CASES if HAS_BOUNDARY or (c[4] == "diff" and c[5] is None)]


def _positions(lengths):
    """Corner, border middles, the sample next to the border, the interior, the far corner."""
    nd = len(lengths)
    pts = {tuple(0 for _ in lengths), tuple(L - 1 for L in lengths), tuple(L // 2 for L in lengths)}
    for a in range(nd):
        mid = [L // 2 for L in lengths]
        for v in (0, 1, lengths[a] - 1):
            mid[a] = min(v, lengths[a] - 1)
            pts.add(tuple(mid))
    return sorted(pts)


def _call(nd, x, w, b, ss, ds, groups, boundary, order, form, **kw):
    extra = dict(boundary=boundary, order=order) if HAS_BOUNDARY else {}
    f = lambda xx: CONV[nd](xx, w, b, ss, ds, groups, **extra, **kw)
    if form == "vmap":        # torch.func: the composite form
        return torch.func.vmap(lambda xi: f(xi[None])[0])(x)
    return f(x)


def _expected_channels(dep, cout, groups, cin, channel):
    """Non-finite pattern over ``(cout, *out)``: the output channels of ``channel``'s group."""
    og, cg = cout // groups, cin // groups
    out = np.zeros((cout,) + dep.shape, bool)
    g = channel // cg
    out[g * og:(g + 1) * og] = dep
    return out


def _case_params(cases):
    return [pytest.param(*c, id=f"L{c[0]}-k{c[1]}-d{c[2]}-s{c[3]}") for c in cases]


@pytest.mark.parametrize("form", ["eager", "vmap"])
@pytest.mark.parametrize("lengths,ks,ds,ss,boundary,order", _case_params(CASES))
def test_nonfinite_input_reaches_exactly_its_dependents(lengths, ks, ds, ss, boundary, order, form):
    _check_nonfinite_input(lengths, ks, ds, ss, boundary, order, torch.float64, form)


@pytest.mark.parametrize("lengths,ks,ds,ss,boundary,order", _case_params([CASES[0], CASES[1], CASES[5 % len(CASES)]]))
def test_nonfinite_input_float32(lengths, ks, ds, ss, boundary, order):
    _check_nonfinite_input(lengths, ks, ds, ss, boundary, order, torch.float32, "eager")


def _check_nonfinite_input(lengths, ks, ds, ss, boundary, order, dtype, form):
    nd = len(lengths)
    groups, cin, cout = 2, 4, 4
    rng = np.random.default_rng(len(lengths) + sum(ks))
    x0 = rng.standard_normal((2, cin, *lengths))
    w = torch.tensor(rng.standard_normal((cout, cin // groups, *ks)), dtype=dtype)
    b = torch.tensor(rng.standard_normal(cout), dtype=dtype)
    for i, pos in enumerate(_positions(lengths)):
        dep = oracle.dependency(lengths, ks, pos, ss, ds, boundary, order)
        want = _expected_channels(dep, cout, groups, cin, channel=3)
        value = (np.nan, np.inf, -np.inf)[i % 3]
        x = x0.copy()
        x[(1, 3) + pos] = value
        y = _call(nd, torch.tensor(x, dtype=dtype), w, b, ss, ds, groups, boundary, order, form)
        bad = ~np.isfinite(y.detach().numpy())
        assert not bad[0].any(), (pos, value)                          # the other batch entry
        np.testing.assert_array_equal(bad[1], want, err_msg=f"position {pos}, value {value}")


@pytest.mark.parametrize("form", ["eager", "vmap"])
@pytest.mark.parametrize("lengths,ks,ds,ss,boundary,order", _case_params([CASES[0], CASES[4], CASES[5 % len(CASES)],
                                                                           CASES[-1]]))
def test_nan_in_weights_and_biases(lengths, ks, ds, ss, boundary, order, form):
    nd = len(lengths)
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.standard_normal((2, 2, *lengths)))
    w = rng.standard_normal((3, 2, *ks))
    ew = rng.standard_normal(w.shape)
    b, eb = rng.standard_normal((2, 3))
    mask = oracle.boundary_mask(lengths, ks, ss, ds, boundary)
    tap = (0,) * nd
    t = torch.tensor

    def bad(**kw):
        args = {k: t(v) for k, v in kw.items()}
        y = _call(nd, x, args.pop("w", t(w)), args.pop("b", t(b)), ss, ds, 1, boundary, order, form, **args)
        return ~np.isfinite(y.detach().numpy())

    def only_channel_1(pattern):
        want = np.zeros((2, 3) + mask.shape, bool)
        want[:, 1] = pattern
        return want

    w_nan = w.copy()
    w_nan[(1, 1) + tap] = np.nan
    ew_nan = ew.copy()
    ew_nan[(1, 0) + tuple(k - 1 for k in ks)] = np.nan
    b_nan, eb_nan = b.copy(), eb.copy()
    b_nan[1] = eb_nan[1] = np.nan
    everywhere = np.ones(mask.shape, bool)
    np.testing.assert_array_equal(bad(w=w_nan), only_channel_1(everywhere))
    np.testing.assert_array_equal(bad(b=b_nan), only_channel_1(everywhere))
    # with an edge kernel: the boundary outputs use edge_weight/edge_bias, the others weight/bias
    np.testing.assert_array_equal(bad(edge_weight=ew_nan, edge_bias=eb), only_channel_1(mask))
    np.testing.assert_array_equal(bad(edge_weight=ew, edge_bias=eb_nan), only_channel_1(mask))
    np.testing.assert_array_equal(bad(w=w_nan, edge_weight=ew, edge_bias=eb), only_channel_1(~mask))
    np.testing.assert_array_equal(bad(b=b_nan, edge_weight=ew, edge_bias=eb), only_channel_1(~mask))


def test_nan_input_gradient_stays_local():
    """The input gradient of a loss on finite outputs only is finite: a NaN sample's gradient
    path is through the outputs that read it, and those are left out of the loss."""
    lengths, ks = (8, 9), (3, 3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, *lengths))
    x[0, 0, 0, 4] = np.nan
    xt = torch.tensor(x, requires_grad=True)
    w = torch.tensor(rng.standard_normal((1, 1, *ks)))
    y = F.conv2d(xt, w)
    dep = oracle.dependency(lengths, ks, (0, 4))
    keep = torch.tensor(~dep)
    (torch.where(keep, y, 0.0) ** 2).sum().backward()
    g = xt.grad.numpy()[0, 0]
    # every sample but the NaN one gets a finite gradient (the NaN sample's own is free to be NaN)
    others = np.ones(lengths, bool)
    others[0, 4] = False
    assert np.isfinite(g[others]).all()
