"""Properties of diffconv.torch through its public functionals, float64, on drawn problems.

Each property is checked against a truth that does not come from diffconv: the oracle
(tests/oracle.py), torch's own convolutions, or an identity of linear algebra (linearity, the
adjoint, flips, translations, block-diagonal groups). Tolerances from tests/tolerances.py.
Hypothesis profile: derandomized in CI (tests/conftest.py), ``HYPOTHESIS_PROFILE=thorough``
for more examples.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import oracle
from diffconv.torch import functional as F
from tolerances import conv_tol, eps, scale_of

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
TORCH_CONV = {1: tF.conv1d, 2: tF.conv2d, 3: tF.conv3d}
HAS_BOUNDARY = "boundary" in inspect.signature(F.conv2d).parameters
HAS_BOUNDARY_T = "boundary" in inspect.signature(F.conv_transpose2d).parameters
MODES = oracle.MODES if HAS_BOUNDARY else ("diff",)
F64 = torch.float64


def examples(n: int) -> int:
    """``n`` examples under the default profiles, scaled up under ``thorough``."""
    return max(1, n * settings.default.max_examples // 100)


# ----------------------------------------------------------------------------- problems

@dataclass
class Problem:
    lengths: tuple
    ks: tuple
    ds: tuple
    ss: tuple
    groups: int
    cin: int
    cout: int
    boundary: object        # as passed (a mode or per-axis entries)
    order: object
    seed: int

    @property
    def nd(self):
        return len(self.lengths)

    def kwargs(self, boundary=None) -> dict:
        if not HAS_BOUNDARY:
            return {}
        return dict(boundary=self.boundary if boundary is None else boundary, order=self.order)

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal((2, self.cin, *self.lengths))
        w = rng.standard_normal((self.cout, self.cin // self.groups, *self.ks))
        b = rng.standard_normal(self.cout)
        return rng, x, w, b

    def tol(self, *arrays) -> float:
        """Per-output absolute tolerance: 8 * eps * ghost amplification * reduction * scale."""
        orders = self.order if self.order is not None else None
        return 8 * conv_tol("float64", self.ks, self.cin // self.groups, order=orders, dilation=self.ds,
                            scale=scale_of(*arrays))


def _boundary(draw, nd, modes=MODES):
    pairs = []
    for _ in range(nd):
        low = draw(st.sampled_from(modes))
        if low == "circular":
            pairs.append(("circular", "circular"))
        elif draw(st.booleans()):
            pairs.append((low, low))
        else:
            pairs.append((low, draw(st.sampled_from([m for m in modes if m != "circular"]))))
    if len(set(pairs)) == 1 and pairs[0][0] == pairs[0][1]:
        return pairs[0][0]                                   # one mode for every side
    return [p[0] if p[0] == p[1] else p for p in pairs]      # per axis: a mode or a (low, high) pair


@st.composite
def problems(draw, max_nd=2, max_len=9, max_k=5, modes=MODES, odd_extent=False, min_len=1, group_choices=(1, 2)):
    nd = draw(st.integers(1, max_nd))
    ints = lambda lo, hi: tuple(draw(st.integers(lo, hi)) for _ in range(nd))
    ks, ds, ss, lengths = ints(1, max_k), ints(1, 3), ints(1, 3), ints(min_len, max_len)
    if odd_extent:
        ks = tuple(k if (k - 1) * d % 2 == 0 else k + 1 for k, d in zip(ks, ds))
    groups = draw(st.sampled_from(group_choices))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    boundary = _boundary(draw, nd, modes) if HAS_BOUNDARY else "diff"
    order = None
    if HAS_BOUNDARY and draw(st.booleans()):
        order = tuple(draw(st.integers(0, k - 1)) for k in ks)
    return Problem(lengths, ks, ds, ss, groups, cin, cout, boundary, order, draw(st.integers(0, 2 ** 32 - 1)))


def _feasible(p: Problem) -> bool:
    """Whether the boundary fits the axes (reflect/circular need samples; oracle decides)."""
    try:
        oracle.pad(np.zeros((1, 1, *p.lengths)), [oracle.same_widths(k, d) for k, d in zip(p.ks, p.ds)],
                   p.boundary, p.ks, p.ds, p.order)
        return True
    except ValueError:
        return False


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
    if not _feasible(p):
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
    assume(_feasible(p))
    rng, x, w, _ = p.arrays()
    x2 = rng.standard_normal(x.shape)
    lhs = run(p, a * x + c * x2, w).numpy()
    rhs = a * run(p, x, w).numpy() + c * run(p, x2, w).numpy()
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=4 * p.tol(x, w) * (abs(a) + abs(c) + 1))


@settings(max_examples=examples(30))
@given(problems(), st.floats(-3, 3), st.floats(-3, 3))
def test_linear_in_weight(p, a, c):
    assume(_feasible(p))
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
    assume(_feasible(p))
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
        mask = oracle.boundary_mask(p.lengths, p.ks, p.ss, p.ds, p.boundary if HAS_BOUNDARY else "diff")
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
    assume(_feasible(p))
    _, x, w, b = p.arrays()
    y = run(p, x, w, b).numpy()
    xf, wf = np.flip(x, 2 + axis).copy(), np.flip(w, 2 + axis).copy()
    swapped = _swap_axis(p.boundary, p.nd, axis)
    yf = run(p, xf, wf, b, **(dict(boundary=swapped) if HAS_BOUNDARY else {})).numpy()
    np.testing.assert_allclose(np.flip(yf, 2 + axis), y, rtol=0, atol=2 * p.tol(x, w))


# ----------------------------------------------------------------------------- interior

@settings(max_examples=examples(40))
@given(problems(max_nd=3, max_len=10))
def test_interior_equals_zero_padding_exactly(p):
    """Outputs whose window reaches no ghost (of any side, circular ones included) are those of
    torch's own convolution of the zero-padded input, bit for bit (``padding='same'`` at
    stride 1, an explicit ``F.pad`` otherwise)."""
    assume(_feasible(p))
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
    assume(_feasible(p))
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
    assume(_feasible(p))
    _, x, w, b = p.arrays()
    og, cg = p.cout // p.groups, p.cin // p.groups
    full = np.zeros((p.cout, p.cin, *p.ks))
    for g in range(p.groups):
        full[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = w[g * og:(g + 1) * og]
    y = run(p, x, w, b).numpy()
    q = Problem(p.lengths, p.ks, p.ds, p.ss, 1, p.cin, p.cout, p.boundary, p.order, p.seed)
    np.testing.assert_allclose(y, run(q, x, full, b).numpy(), rtol=0, atol=2 * q.tol(x, w))


# ----------------------------------------------------------------------------- transposed

@st.composite
def transposed(draw, max_nd=2):
    nd = draw(st.integers(1, max_nd))
    ints = lambda lo, hi: tuple(draw(st.integers(lo, hi)) for _ in range(nd))
    ks, ss, ds, lengths = ints(1, 5), ints(1, 3), ints(1, 3), ints(1, 6)
    pads = tuple(draw(st.integers(0, (k - 1) * d)) for k, d in zip(ks, ds))
    ops = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(ss, ds))
    outl = [(L - 1) * s - 2 * pp + d * (k - 1) + o + 1 for L, s, pp, d, k, o in zip(lengths, ss, pads, ds, ks, ops)]
    assume(all(n >= 1 for n in outl))
    groups = draw(st.sampled_from([1, 2]))
    modes = MODES if HAS_BOUNDARY_T else ("diff",)
    boundary = _boundary(draw, nd, modes) if HAS_BOUNDARY_T else "diff"
    order = None
    if HAS_BOUNDARY_T and draw(st.booleans()):
        order = tuple(draw(st.integers(0, oracle.transpose_lattice(k, s, d)[0] - 1)) for k, s, d in zip(ks, ss, ds))
    return dict(nd=nd, ks=ks, ss=ss, ds=ds, lengths=lengths, pads=pads, ops=ops, groups=groups,
                boundary=boundary, order=order, seed=draw(st.integers(0, 2 ** 32 - 1)))


def _run_t(q, x, w, b=None, **kw):
    t = lambda a: None if a is None else (a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=F64))
    extra = dict(boundary=q["boundary"], order=q["order"]) if HAS_BOUNDARY_T else {}
    return CONVT[q["nd"]](t(x), t(w), t(b), q["ss"], q["pads"], q["ops"], q["groups"], q["ds"], **extra, **kw)


def _t_arrays(q):
    rng = np.random.default_rng(q["seed"])
    x = rng.standard_normal((2, 2 * q["groups"], *q["lengths"]))
    w = rng.standard_normal((2 * q["groups"], 2, *q["ks"]))
    return rng, x, w, rng.standard_normal(2 * q["groups"])


def _t_tol(q, x, w):
    lat = [oracle.transpose_lattice(k, s, d) for k, s, d in zip(q["ks"], q["ss"], q["ds"])]
    amp = 1.0
    for (m, dd), p in zip(lat, q["order"] or (None,) * q["nd"]):
        amp *= oracle.ghost_amplification(m, dd, p)
    return 8 * eps("float64") * amp * 2 * np.prod(q["ks"]) * scale_of(x, w)


@settings(max_examples=examples(40))
@given(transposed())
def test_transposed_matches_oracle(q):
    _, x, w, b = _t_arrays(q)
    try:
        want = oracle.conv_transpose(x, w, b, q["ss"], q["pads"], q["ops"], q["groups"], q["ds"],
                                     q["boundary"], q["order"])
    except ValueError:
        with pytest.raises(ValueError):
            _run_t(q, x, w, b)
        return
    got = _run_t(q, x, w, b).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=_t_tol(q, x, w) + 8 * eps("float64") * np.abs(b).max())


@settings(max_examples=examples(30))
@given(transposed(), st.floats(-3, 3))
def test_transposed_linear_and_adjoint(q, a):
    rng, x, w, _ = _t_arrays(q)
    try:
        _run_t(q, x, w)
    except ValueError:
        assume(False)
    x2 = rng.standard_normal(x.shape)
    tol = _t_tol(q, x, w)
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
    assume(HAS_BOUNDARY_T)
    q = {**q, "boundary": "zeros", "order": None}
    rng, x, w, _ = _t_arrays(q)
    out = _run_t(q, x, w).numpy()
    y = rng.standard_normal(out.shape)
    # the forward conv whose adjoint torch's transposed conv is: input y (the transposed output)
    yt = torch.tensor(y)
    back = TORCH_CONV[q["nd"]](yt, torch.tensor(w), None, q["ss"], q["pads"], q["ds"], q["groups"])
    back = back.numpy()[(slice(None), slice(None)) + tuple(slice(0, L) for L in q["lengths"])]
    assert abs(_ip(out, y) - _ip(x, back)) <= 4 * _t_tol(q, x, w) * np.abs(y).sum()


# ----------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@settings(max_examples=examples(15))
@given(p=problems(max_len=8))
def test_low_precision_matches_oracle_on_rounded_operands(dtype, p):
    """float32/float16/bfloat16 against the float64 oracle on the same (rounded) operands, within
    eps(dtype) * ghost amplification * reduction length * scale, plus the output's own rounding."""
    assume(_feasible(p))
    _, x, w, b = p.arrays()
    xt, wt, bt = (torch.tensor(a, dtype=dtype) for a in (x, w, b))
    xr, wr, br = (a.double().numpy() for a in (xt, wt, bt))               # the rounded operands
    want = oracle.diff_conv(xr, wr, br, p.ss, p.ds, p.groups, p.boundary, p.order)
    got = CONV[p.nd](xt, wt, bt, p.ss, p.ds, p.groups, **p.kwargs())
    assert got.dtype == dtype
    tol = 8 * conv_tol(dtype, p.ks, p.cin // p.groups, order=p.order, dilation=p.ds, scale=scale_of(xr, wr))
    err = np.abs(got.double().numpy() - want)
    assert (err <= tol + eps(dtype) * (np.abs(want) + np.abs(br).max())).all(), err.max()
