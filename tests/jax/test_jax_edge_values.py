"""Non-finite values through diffconv.jax: a NaN or Inf in the input reaches exactly the outputs
that read it, directly or through a ghost built from it (dependency sets from the oracle's exact
padding matrices, tests/oracle.py); a NaN in a kernel or bias reaches exactly the outputs that
use it. Eager and under ``jax.jit``; float64 and float32."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import oracle
from diffconv.jax import conv


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


def _case_params(cases):
    return [pytest.param(*c, id=f"L{c[0]}-k{c[1]}-d{c[2]}-s{c[3]}") for c in cases]


def _positions(lengths):
    nd = len(lengths)
    pts = {tuple(0 for _ in lengths), tuple(L - 1 for L in lengths), tuple(L // 2 for L in lengths)}
    for a in range(nd):
        mid = [L // 2 for L in lengths]
        for v in (0, 1, lengths[a] - 1):
            mid[a] = min(v, lengths[a] - 1)
            pts.add(tuple(mid))
    return sorted(pts)


def _kernel(w):                 # (O, C/g, *k) -> (*k, C/g, O)
    return np.moveaxis(np.asarray(w), (0, 1), (-1, -2))


def _conv_fn(ss, ds, groups, boundary, order, jit, **static):
    extra = dict(boundary=boundary, order=order)
    f = lambda x, k, b, kw: conv(x, k, b, strides=ss, dilation=ds, feature_group_count=groups, **extra, **static, **kw)
    return jax.jit(f) if jit else f


def _bad_cf(y):
    """Non-finite pattern, channels-first ``(N, C, *out)``."""
    return np.moveaxis(~np.isfinite(np.asarray(y, np.float64)), -1, 1)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _check_nonfinite_input(lengths, ks, ds, ss, boundary, order, dtype, jit):
    groups, cin, cout = 2, 4, 4
    rng = np.random.default_rng(len(lengths) + sum(ks))
    x0 = rng.standard_normal((2, cin, *lengths))
    k = jnp.asarray(_kernel(rng.standard_normal((cout, cin // groups, *ks))), dtype)
    b = jnp.asarray(rng.standard_normal(cout), dtype)
    f = _conv_fn(ss, ds, groups, boundary, order, jit)
    og, cg = cout // groups, cin // groups
    for i, pos in enumerate(_positions(lengths)):
        dep = oracle.dependency(lengths, ks, pos, ss, ds, boundary, order)
        want = np.zeros((cout,) + dep.shape, bool)
        want[(3 // cg) * og:(3 // cg + 1) * og] = dep
        value = (np.nan, np.inf, -np.inf)[i % 3]
        x = x0.copy()
        x[(1, 3) + pos] = value
        bad = _bad_cf(f(jnp.asarray(np.moveaxis(x, 1, -1), dtype), k, b, {}))
        assert not bad[0].any(), (pos, value)
        np.testing.assert_array_equal(bad[1], want, err_msg=f"position {pos}, value {value}")


@pytest.mark.parametrize("lengths,ks,ds,ss,boundary,order", _case_params(CASES))
def test_nonfinite_input_reaches_exactly_its_dependents(lengths, ks, ds, ss, boundary, order, x64):
    _check_nonfinite_input(lengths, ks, ds, ss, boundary, order, jnp.float64, True)


@pytest.mark.parametrize("lengths,ks,ds,ss,boundary,order", _case_params([CASES[0], CASES[4]]))
def test_nonfinite_input_eager(lengths, ks, ds, ss, boundary, order, x64):
    _check_nonfinite_input(lengths, ks, ds, ss, boundary, order, jnp.float64, False)


@pytest.mark.parametrize("lengths,ks,ds,ss,boundary,order", _case_params([CASES[0], CASES[1], CASES[5 % len(CASES)]]))
def test_nonfinite_input_float32(lengths, ks, ds, ss, boundary, order):
    _check_nonfinite_input(lengths, ks, ds, ss, boundary, order, jnp.float32, True)


WEIGHT_CASES = _case_params([CASES[0], CASES[4], CASES[5 % len(CASES)], CASES[-1]])


def _weight_checks(lengths, ks, ds, ss, boundary, order, jit):
    """``(bad, only_channel_1, mask, arrays)`` for the kernel/bias tests."""
    rng = np.random.default_rng(7)
    x = jnp.asarray(np.moveaxis(rng.standard_normal((2, 2, *lengths)), 1, -1))
    w = rng.standard_normal((3, 2, *ks))
    ew = rng.standard_normal(w.shape)
    b, eb = rng.standard_normal((2, 3))
    mask = oracle.boundary_mask(lengths, ks, ss, ds, boundary)
    f = _conv_fn(ss, ds, 1, boundary, order, jit)

    def bad(w=w, b=b, **kw):
        kw = {key: jnp.asarray(_kernel(v) if key == "edge_kernel" else v) for key, v in kw.items()}
        return _bad_cf(f(x, jnp.asarray(_kernel(w)), jnp.asarray(b), kw))

    def only_channel_1(pattern):
        want = np.zeros((2, 3) + mask.shape, bool)
        want[:, 1] = pattern
        return want

    w_nan = w.copy()
    w_nan[(1, 1) + (0,) * len(lengths)] = np.nan
    ew_nan = ew.copy()
    ew_nan[(1, 0) + tuple(k - 1 for k in ks)] = np.nan
    b_nan, eb_nan = b.copy(), eb.copy()
    b_nan[1] = eb_nan[1] = np.nan
    arrays = dict(w_nan=w_nan, ew=ew, ew_nan=ew_nan, eb=eb, b_nan=b_nan, eb_nan=eb_nan)
    return bad, only_channel_1, mask, arrays


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("lengths,ks,ds,ss,boundary,order", WEIGHT_CASES)
def test_nan_in_kernels_and_biases(lengths, ks, ds, ss, boundary, order, jit, x64):
    bad, only_channel_1, mask, a = _weight_checks(lengths, ks, ds, ss, boundary, order, jit)
    everywhere = np.ones(mask.shape, bool)
    np.testing.assert_array_equal(bad(w=a["w_nan"]), only_channel_1(everywhere))
    np.testing.assert_array_equal(bad(b=a["b_nan"]), only_channel_1(everywhere))
    # with an edge kernel: a NaN in edge_kernel/edge_bias reaches the boundary outputs only
    np.testing.assert_array_equal(bad(edge_kernel=a["ew_nan"], edge_bias=a["eb"]), only_channel_1(mask))
    np.testing.assert_array_equal(bad(edge_kernel=a["ew"], edge_bias=a["eb_nan"]), only_channel_1(mask))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("lengths,ks,ds,ss,boundary,order", WEIGHT_CASES)
def test_nan_in_kernel_stays_off_edge_kernel_outputs(lengths, ks, ds, ss, boundary, order, jit, x64):
    bad, only_channel_1, mask, a = _weight_checks(lengths, ks, ds, ss, boundary, order, jit)
    np.testing.assert_array_equal(bad(w=a["w_nan"], edge_kernel=a["ew"], edge_bias=a["eb"]), only_channel_1(~mask))
    np.testing.assert_array_equal(bad(b=a["b_nan"], edge_kernel=a["ew"], edge_bias=a["eb"]), only_channel_1(~mask))
