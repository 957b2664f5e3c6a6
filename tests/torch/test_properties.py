"""Properties of diffconv.torch through its public functionals, float64, on drawn problems.

Each property is checked against a truth that does not come from diffconv: the oracle
(tests/oracle.py), torch's own convolutions, or an identity of linear algebra (linearity, the
adjoint, flips, translations, block-diagonal groups). Tolerances from tests/tolerances.py.
Hypothesis profile: derandomized in CI (tests/conftest.py), ``HYPOTHESIS_PROFILE=thorough``
for more examples.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import oracle
from diffconv.torch import functional as F
from property_cases import Problem, examples, feasible, problems, t_arrays, t_tol, transposed
from tolerances import conv_tol, eps, scale_of


BOTH_PADDINGS = False     # random shapes against the oracle, on the default padding only (conftest.ghost_kernels)

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
TORCH_CONV = {1: tF.conv1d, 2: tF.conv2d, 3: tF.conv3d}
F64 = torch.float64


# ----------------------------------------------------------------------------- the layer on a problem

def run(p: Problem, x, w, b=None, **kw):
    t = lambda a: None if a is None else torch.as_tensor(a, dtype=F64)
    kw = {**p.kwargs(), **kw}
    for key in ("edge_weight", "edge_bias"):
        if key in kw:
            kw[key] = t(kw[key])
    return CONV[p.nd](t(x), t(w), t(b), p.ss, p.ds, p.groups, **kw)


def _ip(a, b) -> float:
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


# ----------------------------------------------------------------------------- the oracle

@settings(max_examples=examples(60))
@given(problems(max_nd=3, max_len=7), st.booleans())
def test_matches_oracle(p, edge):
    rng, x, w, b = p.arrays()
    kw = {}
    if edge:
        kw = dict(edge_weight=rng.standard_normal(w.shape), edge_bias=rng.standard_normal(b.shape))
    if not feasible(p):
        with pytest.raises(ValueError):
            run(p, x, w, b, **kw)
        return
    want = oracle.diff_conv(x, w, b, p.ss, p.ds, p.groups, p.boundary, p.order, **kw)
    got = run(p, x, w, b, **kw).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=p.tol(x, w) + 8 * eps("float64") * np.abs(b).max())


# ----------------------------------------------------------------------------- linearity

@settings(max_examples=examples(30))
@given(problems(), st.floats(-3, 3), st.floats(-3, 3))
def test_linear_in_input(p, a, c):
    assume(feasible(p))
    rng, x, w, _ = p.arrays()
    x2 = rng.standard_normal(x.shape)
    lhs = run(p, a * x + c * x2, w).numpy()
    rhs = a * run(p, x, w).numpy() + c * run(p, x2, w).numpy()
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=4 * p.tol(x, w) * (abs(a) + abs(c) + 1))


@settings(max_examples=examples(30))
@given(problems(), st.floats(-3, 3), st.floats(-3, 3))
def test_linear_in_weight(p, a, c):
    assume(feasible(p))
    rng, x, w, _ = p.arrays()
    w2 = rng.standard_normal(w.shape)
    lhs = run(p, x, a * w + c * w2).numpy()
    rhs = a * run(p, x, w).numpy() + c * run(p, x, w2).numpy()
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=4 * p.tol(x, w) * (abs(a) + abs(c) + 1))


# ----------------------------------------------------------------------------- adjoint

@settings(max_examples=examples(40))
@given(problems(max_nd=3, max_len=7), st.booleans())
def test_adjoint_identity(p, switch_off):
    """<conv(x), y> = <x, vjp_x(y)> and = <w, vjp_w(y)>. With the switch off
    (boundary_input_grad=False) the input's vjp is that of the interior outputs only,
    <conv(x), y * interior> = <x, vjp_x(y)>, and the weight's vjp is unchanged."""
    assume(feasible(p))
    rng, x, w, _ = p.arrays()
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    kw = dict(boundary_input_grad=False) if switch_off else {}
    out = CONV[p.nd](xt, wt, None, p.ss, p.ds, p.groups, **p.kwargs(), **kw)
    y = rng.standard_normal(tuple(out.shape))
    gx, gw = torch.autograd.grad(out, (xt, wt), torch.tensor(y))
    yv = out.detach().numpy()
    tol = 4 * p.tol(x, w) * np.abs(y).sum()
    y_in = y
    if switch_off:
        mask = oracle.boundary_mask(p.lengths, p.ks, p.ss, p.ds, p.boundary)
        y_in = y * ~mask
    assert abs(_ip(yv, y_in) - _ip(x, gx)) <= tol
    assert abs(_ip(yv, y) - _ip(w, gw)) <= tol


# ----------------------------------------------------------------------------- flips

def _swap_axis(boundary, nd, axis):
    pairs = [list(pr) for pr in oracle.parse_boundary(boundary, nd)]
    pairs[axis] = pairs[axis][::-1]
    return [tuple(pr) for pr in pairs]


@settings(max_examples=examples(30))
@given(problems(odd_extent=True), st.data())
def test_flip_input_and_kernel(p, data):
    """Flipping spatial axis a of input and kernel flips the output along a, with the axis's
    (low, high) boundary swapped. Odd dilated extents (symmetric widths) and strides whose
    samples are symmetric ((L-1) % s == 0) only: otherwise the statement is not a flip."""
    axis = data.draw(st.integers(0, p.nd - 1))
    assume((p.lengths[axis] - 1) % p.ss[axis] == 0)
    assume(feasible(p))
    _, x, w, b = p.arrays()
    y = run(p, x, w, b).numpy()
    xf, wf = np.flip(x, 2 + axis).copy(), np.flip(w, 2 + axis).copy()
    swapped = _swap_axis(p.boundary, p.nd, axis)
    yf = run(p, xf, wf, b, boundary=swapped).numpy()
    np.testing.assert_allclose(np.flip(yf, 2 + axis), y, rtol=0, atol=2 * p.tol(x, w))


# ----------------------------------------------------------------------------- interior

@settings(max_examples=examples(40))
@given(problems(max_nd=3, max_len=10))
def test_interior_equals_zero_padding_exactly(p):
    """Outputs whose window reaches no ghost (of any side, circular ones included) are those of
    torch's own convolution of the zero-padded input, bit for bit (``padding='same'`` at
    stride 1, an explicit ``F.pad`` otherwise)."""
    assume(feasible(p))
    _, x, w, b = p.arrays()
    y = run(p, x, w, b).numpy()
    xt, wt, bt = (torch.tensor(a) for a in (x, w, b))
    if all(s == 1 for s in p.ss):
        ref = TORCH_CONV[p.nd](xt, wt, bt, 1, "same", p.ds, p.groups)
    else:
        widths = [v for a in reversed(range(p.nd)) for v in oracle.same_widths(p.ks[a], p.ds[a])]
        ref = TORCH_CONV[p.nd](tF.pad(xt, widths), wt, bt, p.ss, 0, p.ds, p.groups)
    inner = ~oracle.boundary_mask(p.lengths, p.ks, p.ss, p.ds, "diff")
    np.testing.assert_array_equal(y[..., inner], ref.numpy()[..., inner])


@settings(max_examples=examples(30))
@given(problems(min_len=6, max_len=14, max_k=4), st.data())
def test_translation_of_interior_features(p, data):
    """Shifting the input by t = j*s samples along axis a shifts every output whose window is
    inside the data along a (both before and after the shift) by j, whatever the other axes do."""
    axis = data.draw(st.integers(0, p.nd - 1))
    j = data.draw(st.integers(1, 2))
    t = j * p.ss[axis]
    assume(feasible(p))
    rng, _, w, b = p.arrays()
    L = p.lengths[axis]
    z = rng.standard_normal((2, p.cin, *p.lengths[:axis], L + t, *p.lengths[axis + 1:]))
    x1 = np.take(z, range(0, L), axis=2 + axis)
    x2 = np.take(z, range(t, L + t), axis=2 + axis)
    y1, y2 = run(p, x1, w, b).numpy(), run(p, x2, w, b).numpy()
    before, after = oracle.same_widths(p.ks[axis], p.ds[axis])
    pos = np.arange(0, L, p.ss[axis])
    inside = (pos >= before) & (pos + after <= L - 1)                  # y2[u] reads x2 inside
    us = [u for u in range(len(pos)) if inside[u] and u + j < len(pos) and inside[u + j]]
    assume(us)
    a = np.take(y2, us, axis=2 + axis)
    c = np.take(y1, [u + j for u in us], axis=2 + axis)
    np.testing.assert_allclose(a, c, rtol=0, atol=2 * p.tol(x1, w))


# ----------------------------------------------------------------------------- groups

@settings(max_examples=examples(30))
@given(problems(group_choices=(2, 3)))
def test_groups_equal_block_diagonal(p):
    assume(feasible(p))
    _, x, w, b = p.arrays()
    og, cg = p.cout // p.groups, p.cin // p.groups
    full = np.zeros((p.cout, p.cin, *p.ks))
    for g in range(p.groups):
        full[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = w[g * og:(g + 1) * og]
    y = run(p, x, w, b).numpy()
    q = Problem(p.lengths, p.ks, p.ds, p.ss, 1, p.cin, p.cout, p.boundary, p.order, p.seed)
    np.testing.assert_allclose(y, run(q, x, full, b).numpy(), rtol=0, atol=2 * q.tol(x, w))


# ----------------------------------------------------------------------------- transposed

def _run_t(q, x, w, b=None, **kw):
    t = lambda a: None if a is None else (a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=F64))
    extra = dict(boundary=q["boundary"], order=q["order"])
    return CONVT[q["nd"]](t(x), t(w), t(b), q["ss"], q["pads"], q["ops"], q["groups"], q["ds"], **extra, **kw)


@settings(max_examples=examples(40))
@given(transposed())
def test_transposed_matches_oracle(q):
    _, x, w, b = t_arrays(q)
    try:
        want = oracle.conv_transpose(x, w, b, q["ss"], q["pads"], q["ops"], q["groups"], q["ds"],
                                     q["boundary"], q["order"])
    except ValueError:
        with pytest.raises(ValueError):
            _run_t(q, x, w, b)
        return
    got = _run_t(q, x, w, b).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=t_tol(q, x, w) + 8 * eps("float64") * np.abs(b).max())


@settings(max_examples=examples(30))
@given(transposed(), st.floats(-3, 3))
def test_transposed_linear_and_adjoint(q, a):
    rng, x, w, _ = t_arrays(q)
    try:
        _run_t(q, x, w)
    except ValueError:
        assume(False)
    x2 = rng.standard_normal(x.shape)
    tol = t_tol(q, x, w)
    np.testing.assert_allclose(_run_t(q, a * x + x2, w).numpy(),
                               a * _run_t(q, x, w).numpy() + _run_t(q, x2, w).numpy(), rtol=0,
                               atol=4 * tol * (abs(a) + 2))
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    out = _run_t(q, xt, wt)
    y = rng.standard_normal(tuple(out.shape))
    gx, gw = torch.autograd.grad(out, (xt, wt), torch.tensor(y))
    yv = out.detach().numpy()
    assert abs(_ip(yv, y) - _ip(x, gx)) <= 4 * tol * np.abs(y).sum()
    assert abs(_ip(yv, y) - _ip(w, gw)) <= 4 * tol * np.abs(y).sum()


@settings(max_examples=examples(20))
@given(transposed())
def test_transposed_zeros_is_adjoint_of_zero_padded_conv(q):
    """With zero ghosts the transposed layer is torch's, the adjoint of the strided convolution
    it transposes: <convT(x), y> = <x, conv(y)> (torch.nn.functional.conv, as the truth)."""
    q = {**q, "boundary": "zeros", "order": None}
    rng, x, w, _ = t_arrays(q)
    out = _run_t(q, x, w).numpy()
    y = rng.standard_normal(out.shape)
    # the forward conv whose adjoint torch's transposed conv is: input y (the transposed output)
    yt = torch.tensor(y)
    back = TORCH_CONV[q["nd"]](yt, torch.tensor(w), None, q["ss"], q["pads"], q["ds"], q["groups"])
    back = back.numpy()[(slice(None), slice(None)) + tuple(slice(0, L) for L in q["lengths"])]
    assert abs(_ip(out, y) - _ip(x, back)) <= 4 * t_tol(q, x, w) * np.abs(y).sum()


# ----------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@settings(max_examples=examples(15))
@given(p=problems(max_len=8))
def test_low_precision_matches_oracle_on_rounded_operands(dtype, p):
    """float32/float16/bfloat16 against the float64 oracle on the same (rounded) operands, within
    eps(dtype) * ghost amplification * reduction length * scale, plus the output's own rounding."""
    assume(feasible(p))
    _, x, w, b = p.arrays()
    xt, wt, bt = (torch.tensor(a, dtype=dtype) for a in (x, w, b))
    xr, wr, br = (a.double().numpy() for a in (xt, wt, bt))               # the rounded operands
    want = oracle.diff_conv(xr, wr, br, p.ss, p.ds, p.groups, p.boundary, p.order)
    got = CONV[p.nd](xt, wt, bt, p.ss, p.ds, p.groups, **p.kwargs())
    assert got.dtype == dtype
    tol = 8 * conv_tol(dtype, p.ks, p.cin // p.groups, order=p.order, dilation=p.ds, scale=scale_of(xr, wr))
    err = np.abs(got.double().numpy() - want)
    assert (err <= tol + eps(dtype) * (np.abs(want) + np.abs(br).max())).all(), err.max()
