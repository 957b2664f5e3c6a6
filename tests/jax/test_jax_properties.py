"""Properties of diffconv.jax through its public functionals, float64, on drawn problems.

The JAX twin of tests/torch/test_properties.py (named apart: the test folders share one import
namespace): each property against a truth that does not come from diffconv (the oracle in
tests/oracle.py, ``lax.conv_general_dilated``, identities of linear algebra). Arrays are drawn
channels-first for the oracle and handed to JAX channels-last with Flax kernel layouts.
Hypothesis profiles in tests/conftest.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax import lax

import oracle
from diffconv.jax import conv, conv_transpose
from property_cases import Problem, examples, feasible, problems, t_arrays, t_tol, transposed
from tolerances import conv_tol, eps, scale_of

DN = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def cl(x):                     # (N, C, *L) -> (N, *L, C)
    return np.moveaxis(np.asarray(x), 1, -1)


def cf(y):                     # (N, *L, C) -> (N, C, *L)
    return np.moveaxis(np.asarray(y), -1, 1)


def kernel(w):                 # (O, C/g, *k) -> (*k, C/g, O)
    return np.moveaxis(np.asarray(w), (0, 1), (-1, -2))


def kernel_t(w):               # torch transposed (C, O/g, *k) -> (*k, C, O/g)
    return np.moveaxis(np.asarray(w), (0, 1), (-2, -1))


# ----------------------------------------------------------------------------- the layer on a problem

def run(p: Problem, x, w, b=None, **kw):
    """diffconv.jax.conv on channels-first numpy arrays; returns channels-first numpy."""
    kw = {**p.kwargs(), **kw}
    if "edge_weight" in kw:
        kw["edge_kernel"] = jnp.asarray(kernel(kw.pop("edge_weight")))
    f = jax.jit(lambda xx, kk, bb, ekw: conv(xx, kk, bb, strides=p.ss, dilation=p.ds,
                                             feature_group_count=p.groups, **kw, **ekw))
    ekw = {k: kw.pop(k) for k in ("edge_kernel", "edge_bias") if k in kw}
    return cf(f(jnp.asarray(cl(x)), jnp.asarray(kernel(w)), None if b is None else jnp.asarray(b), ekw))


def _ip(a, b) -> float:
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------------------- the oracle

@settings(max_examples=examples(15))
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
    got = run(p, x, w, b, **kw)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=p.tol(x, w) + 8 * eps("float64") * np.abs(b).max())


# ----------------------------------------------------------------------------- linearity

@settings(max_examples=examples(8))
@given(problems(), st.floats(-3, 3), st.floats(-3, 3))
def test_linear_in_input_and_weight(p, a, c):
    assume(feasible(p))
    rng, x, w, _ = p.arrays()
    x2, w2 = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    tol = 4 * p.tol(x, w) * (abs(a) + abs(c) + 1)
    np.testing.assert_allclose(run(p, a * x + c * x2, w), a * run(p, x, w) + c * run(p, x2, w), rtol=0, atol=tol)
    np.testing.assert_allclose(run(p, x, a * w + c * w2), a * run(p, x, w) + c * run(p, x, w2), rtol=0, atol=tol)


# ----------------------------------------------------------------------------- adjoint

@settings(max_examples=examples(10))
@given(problems(max_nd=3, max_len=7), st.booleans())
def test_adjoint_identity(p, switch_off):
    """<conv(x), y> = <x, vjp_x(y)> = <k, vjp_k(y)>; with boundary_input_grad=False the input's
    vjp is that of the interior outputs only and the kernel's is unchanged."""
    assume(feasible(p))
    rng, x, w, _ = p.arrays()
    kw = dict(boundary_input_grad=False) if switch_off else {}
    f = jax.jit(lambda xx, kk: conv(xx, kk, strides=p.ss, dilation=p.ds, feature_group_count=p.groups,
                                    **p.kwargs(), **kw))
    out, vjp = jax.vjp(f, jnp.asarray(cl(x)), jnp.asarray(kernel(w)))
    y = rng.standard_normal(out.shape)
    gx, gk = vjp(jnp.asarray(y))
    tol = 4 * p.tol(x, w) * np.abs(y).sum()
    y_in = y
    if switch_off:
        mask = oracle.boundary_mask(p.lengths, p.ks, p.ss, p.ds, p.boundary)
        y_in = y * cl(np.broadcast_to(~mask, (1, 1) + mask.shape))
    assert abs(_ip(out, y_in) - _ip(cl(x), gx)) <= tol
    assert abs(_ip(out, y) - _ip(kernel(w), gk)) <= tol


# ----------------------------------------------------------------------------- flips

@settings(max_examples=examples(8))
@given(problems(odd_extent=True), st.data())
def test_flip_input_and_kernel(p, data):
    """Odd dilated extents, symmetric stride samples: flipping axis a of input and kernel flips
    the output along a, with that axis's (low, high) boundary swapped."""
    axis = data.draw(st.integers(0, p.nd - 1))
    assume((p.lengths[axis] - 1) % p.ss[axis] == 0)
    assume(feasible(p))
    _, x, w, b = p.arrays()
    y = run(p, x, w, b)
    xf, wf = np.flip(x, 2 + axis).copy(), np.flip(w, 2 + axis).copy()
    pairs = [list(pr) for pr in oracle.parse_boundary(p.boundary, p.nd)]
    pairs[axis] = pairs[axis][::-1]
    kw = dict(boundary=[tuple(pr) for pr in pairs])
    yf = run(p, xf, wf, b, **kw)
    np.testing.assert_allclose(np.flip(yf, 2 + axis), y, rtol=0, atol=2 * p.tol(x, w))


# ----------------------------------------------------------------------------- interior

@settings(max_examples=examples(15))
@given(problems(max_nd=3, max_len=10))
def test_interior_equals_zero_padding_exactly(p):
    """Outputs whose window reaches no ghost equal ``lax.conv_general_dilated``'s with zero
    padding ('SAME' at stride 1, the explicit size-keeping pads otherwise), bit for bit."""
    assume(feasible(p))
    _, x, w, _ = p.arrays()
    y = run(p, x, w)            # no bias: under jit XLA may fuse a bias add into the sum (FMA)
    pads = "SAME" if all(s == 1 for s in p.ss) else [oracle.same_widths(k, d) for k, d in zip(p.ks, p.ds)]
    ref = lax.conv_general_dilated(jnp.asarray(cl(x)), jnp.asarray(kernel(w)), p.ss, pads, rhs_dilation=p.ds,
                                   dimension_numbers=DN[p.nd], feature_group_count=p.groups)
    inner = ~oracle.boundary_mask(p.lengths, p.ks, p.ss, p.ds, "diff")
    np.testing.assert_array_equal(y[..., inner], cf(ref)[..., inner])


@settings(max_examples=examples(8))
@given(problems(min_len=6, max_len=14, max_k=4), st.data())
def test_translation_of_interior_features(p, data):
    """A shift by t = j*s samples along axis a shifts the outputs inside the data along a by j."""
    axis = data.draw(st.integers(0, p.nd - 1))
    j = data.draw(st.integers(1, 2))
    t = j * p.ss[axis]
    assume(feasible(p))
    rng, _, w, b = p.arrays()
    L = p.lengths[axis]
    z = rng.standard_normal((2, p.cin, *p.lengths[:axis], L + t, *p.lengths[axis + 1:]))
    x1 = np.take(z, range(0, L), axis=2 + axis)
    x2 = np.take(z, range(t, L + t), axis=2 + axis)
    y1, y2 = run(p, x1, w, b), run(p, x2, w, b)
    before, after = oracle.same_widths(p.ks[axis], p.ds[axis])
    pos = np.arange(0, L, p.ss[axis])
    inside = (pos >= before) & (pos + after <= L - 1)
    us = [u for u in range(len(pos)) if inside[u] and u + j < len(pos) and inside[u + j]]
    assume(us)
    np.testing.assert_allclose(np.take(y2, us, axis=2 + axis), np.take(y1, [u + j for u in us], axis=2 + axis),
                               rtol=0, atol=2 * p.tol(x1, w))


# ----------------------------------------------------------------------------- groups

@settings(max_examples=examples(8))
@given(problems(group_choices=(2, 3)))
def test_groups_equal_block_diagonal(p):
    assume(feasible(p))
    _, x, w, b = p.arrays()
    og, cg = p.cout // p.groups, p.cin // p.groups
    full = np.zeros((p.cout, p.cin, *p.ks))
    for g in range(p.groups):
        full[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = w[g * og:(g + 1) * og]
    q = Problem(p.lengths, p.ks, p.ds, p.ss, 1, p.cin, p.cout, p.boundary, p.order, p.seed)
    np.testing.assert_allclose(run(p, x, w, b), run(q, x, full, b), rtol=0, atol=2 * q.tol(x, w))


# ----------------------------------------------------------------------------- transposed

def _t_fn(q):
    extra = dict(boundary=q["boundary"], order=q["order"])
    return jax.jit(lambda xx, kk: conv_transpose(xx, kk, strides=q["ss"], padding=q["pads"],
                                                 output_padding=q["ops"], dilation=q["ds"],
                                                 feature_group_count=q["groups"], **extra))


@settings(max_examples=examples(15))
@given(transposed())
def test_transposed_matches_oracle(q):
    _, x, w, b = t_arrays(q)
    f = _t_fn(q)
    try:
        want = oracle.conv_transpose(x, w, b, q["ss"], q["pads"], q["ops"], q["groups"], q["ds"],
                                     q["boundary"], q["order"])
    except ValueError:
        with pytest.raises(ValueError):
            f(jnp.asarray(cl(x)), jnp.asarray(kernel_t(w)))
        return
    got = cf(f(jnp.asarray(cl(x)), jnp.asarray(kernel_t(w))) + b)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=t_tol(q, x, w) + 8 * eps("float64") * np.abs(b).max())


@settings(max_examples=examples(6))
@given(transposed(), st.floats(-3, 3))
def test_transposed_linear_and_adjoint(q, a):
    rng, x, w, _ = t_arrays(q)
    f = _t_fn(q)
    xs, ks = jnp.asarray(cl(x)), jnp.asarray(kernel_t(w))
    try:
        out, vjp = jax.vjp(f, xs, ks)
    except ValueError:
        assume(False)
    x2 = jnp.asarray(cl(rng.standard_normal(x.shape)))
    tol = t_tol(q, x, w)
    np.testing.assert_allclose(f(a * xs + x2, ks), a * out + f(x2, ks), rtol=0, atol=4 * tol * (abs(a) + 2))
    y = rng.standard_normal(out.shape)
    gx, gk = vjp(jnp.asarray(y))
    assert abs(_ip(out, y) - _ip(xs, gx)) <= 4 * tol * np.abs(y).sum()
    assert abs(_ip(out, y) - _ip(ks, gk)) <= 4 * tol * np.abs(y).sum()


# ----------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
@settings(max_examples=examples(8))
@given(p=problems(max_len=8))
def test_low_precision_matches_oracle_on_rounded_operands(dtype, p):
    """float32/float16/bfloat16 against the float64 oracle on the same (rounded) operands, within
    eps(dtype) * ghost amplification * reduction length * scale, plus the output's own rounding."""
    assume(feasible(p))
    _, x, w, b = p.arrays()
    xs, ks, bs = (jnp.asarray(a, dtype) for a in (cl(x), kernel(w), b))
    xr, wr, br = cf(np.asarray(xs, np.float64)), np.asarray(w.astype(dtype), np.float64), np.asarray(bs, np.float64)
    want = oracle.diff_conv(xr, wr, br, p.ss, p.ds, p.groups, p.boundary, p.order)
    got = jax.jit(lambda a, k, c: conv(a, k, c, strides=p.ss, dilation=p.ds, feature_group_count=p.groups,
                                       **p.kwargs()))(xs, ks, bs)
    assert got.dtype == dtype
    tol = 8 * conv_tol(dtype, p.ks, p.cin // p.groups, order=p.order, dilation=p.ds, scale=scale_of(xr, wr))
    err = np.abs(cf(np.asarray(got, np.float64)) - want)
    assert (err <= tol + eps(dtype) * (np.abs(want) + np.abs(br).max())).all(), err.max()
