"""DiffConvTranspose (JAX / Flax) against an independent float64 truth.

Truth: the sum of docs/design.md written out literally. Each output ``o`` (per axis) sums
``x[i] * kernel[tap]`` over the ``(i, tap)`` with ``i*s = o + c - tap*d`` (torch's orientation,
``c`` = torch padding) or ``i*s = o + tap*d - c`` (``lax.conv_transpose``'s, ``c`` = its low padding),
where ``x[i]`` outside the data is the ghost: the degree-(m-1) polynomial through the m samples
nearest the edge on the lattice of step d/gcd(s, d), evaluated with exact fractions here.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from math import gcd

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx
from jax.test_util import check_grads

from diffconv.jax import conv_transpose
from diffconv.jax import linen as dlinen
from diffconv.jax import nnx as dnnx


# ----------------------------------------------------------------------------------- the truth

def _ghost_row(L: int, q: int, k: int, s: int, d: int) -> list[Fraction]:
    """Weights over ``x[0:L]`` of the value at integer position ``q`` (a sample or a ghost)."""
    row = [Fraction(0)] * L
    if 0 <= q < L:
        row[q] = Fraction(1)
        return row
    step, m = d // gcd(s, d), -(-k * gcd(s, d) // s)
    lattice = [t for t in range(L) if (t - q) % step == 0]
    nodes = lattice[:m] if q < 0 else lattice[-m:]
    if not nodes:
        row[0 if q < 0 else L - 1] = Fraction(1)
    for a in nodes:
        w = Fraction(1)
        for b in nodes:
            if b != a:
                w *= Fraction(q - b, a - b)
        row[a] = w
    return row


def sum_truth(x, kernel, bias, strides, dilation, crop, out_len, groups=1, lax_orientation=False):
    """``x`` ``(N, *L, C_in)``, ``kernel`` ``(*k, C_in, C_out/groups)`` -> ``(N, *out_len, C_out)`` in float64."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    nd = kernel.ndim - 2
    n, cin, cg = x.shape[0], x.shape[-1], kernel.shape[-1]
    out = np.zeros((n,) + tuple(out_len) + (cg * groups,))
    for tap in itertools.product(*(range(k) for k in kernel.shape[:nd])):
        gathered, places = x, []
        for a in range(nd):
            L, k, s, d = x.shape[1 + a], kernel.shape[a], strides[a], dilation[a]
            sign = 1 if lax_orientation else -1
            num = [o + sign * (tap[a] * d - crop[a]) for o in range(out_len[a])]
            outs = [o for o, v in zip(range(out_len[a]), num) if v % s == 0]
            rows = [_ghost_row(L, v // s, k, s, d) for v in num if v % s == 0]
            E = np.array([[float(w) for w in r] for r in rows]).reshape(len(rows), L)
            gathered = np.moveaxis(np.tensordot(E, gathered, axes=([1], [1 + a])), 0, 1 + a)
            places.append(outs)
        per = cin // groups
        for g in range(groups):
            part = gathered[..., g * per:(g + 1) * per] @ kernel[tap][g * per:(g + 1) * per]
            out[np.ix_(range(n), *places, range(g * cg, (g + 1) * cg))] += part
    return out if bias is None else out + np.asarray(bias, np.float64)


def torch_out_len(L, k, s, p, op, d):
    return [(n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1 for n, ki, si, pi, oi, di in zip(L, k, s, p, op, d)]


def _check(L, k, s, p, op, d, groups, seed):
    rng = np.random.default_rng(seed)
    nd = len(L)
    x = rng.standard_normal((2,) + tuple(L) + (2 * groups,))
    kernel = rng.standard_normal(tuple(k) + (2 * groups, 3))
    bias = rng.standard_normal(3 * groups)
    got = conv_transpose(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(bias), strides=s, padding=p,
                         output_padding=op, dilation=d, feature_group_count=groups)
    want = sum_truth(x, kernel, bias, s, d, p, torch_out_len(L, k, s, p, op, d), groups)
    assert got.shape == want.shape and got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)
    assert nd == len(k)


# ------------------------------------------------------------------------------- functional

def _one_per_kernel_and_stride():
    """For each k 1-5 and s 1-3 one case; dilation, padding, output padding and length (short
    axes included) vary across them (each new shape costs a JAX compilation; the torch tests
    sweep every combination against the same kind of truth and the parity tests tie the two)."""
    cases = []
    for i, (k, s) in enumerate(itertools.product(range(1, 6), range(1, 4))):
        d, L = 1 + i % 2, (7, 2, 1, 4)[i % 4]
        p, op = i % 3 if k > 1 else 0, (i // 2) % max(s, d)
        if torch_out_len((L,), (k,), (s,), (p,), (op,), (d,))[0] < 1:
            p = 0
        cases.append(((L,), (k,), (s,), (p,), (op,), (d,), 1 + i % 2))
    return cases


@pytest.mark.parametrize("case", _one_per_kernel_and_stride())
def test_1d_matches_truth(case, x64):
    _check(*case, seed=3)


def _sampled(nd, count, seed):
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        k = tuple(rng.randint(1, 5) for _ in range(nd))
        s = tuple(rng.randint(1, 3) for _ in range(nd))
        d = tuple(rng.randint(1, 2) for _ in range(nd))
        p = tuple(rng.randint(0, 2) for _ in range(nd))
        op = tuple(rng.randrange(max(a, b)) for a, b in zip(s, d))
        L = tuple(rng.randint(1, 6 if nd == 2 else 4) for _ in range(nd))
        if min(torch_out_len(L, k, s, p, op, d)) >= 1:
            out.append((L, k, s, p, op, d, rng.choice((1, 2))))
    return out


@pytest.mark.parametrize("case", _sampled(2, 6, 11) + _sampled(3, 3, 12))
def test_nd_matches_truth(case, x64):
    _check(*case, seed=len(case[0]))


@pytest.mark.parametrize("L, k, s, p, d", [
    ((5, 3), (2, 5), (2, 3), (1, 6), (1, 2)),   # a 2-tap axis at stride 2 in the convolution
    ((4, 3), (3, 4), (2, 2), (1, 3), (2, 1)),   # a 2-long output at stride 2 in the kernel gradient
])
def test_shapes_xla_would_abort_on(L, k, s, p, d, x64):
    """Convolutions that XLA's CPU operand swap aborts the process on (plain
    ``lax.conv_transpose`` does): values against the truth, gradients under jit."""
    _check(L, k, s, p, (0, 0), d, 1, seed=5)
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((1,) + L + (2,)))
    kernel = jnp.asarray(rng.standard_normal(k + (2, 2)))
    fn = jax.jit(lambda x, kernel: conv_transpose(x, kernel, strides=s, padding=p, dilation=d))
    check_grads(fn, (x, kernel), order=1, modes=("rev",))


def test_check_grads_float64(x64):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((1, 4, 3, 2)))
    k = jnp.asarray(rng.standard_normal((3, 4, 2, 2)))
    b = jnp.asarray(rng.standard_normal(4))
    fn = lambda x, k, b: conv_transpose(x, k, b, strides=(2, 1), padding=(1, 2), output_padding=(1, 0),  # noqa: E731
                                        dilation=(1, 2), feature_group_count=2)
    check_grads(fn, (x, k, b), order=1, modes=("fwd", "rev"))
    x1 = jnp.asarray(rng.standard_normal((2, 3, 1)))
    k1 = jnp.asarray(rng.standard_normal((5, 1, 2)))
    check_grads(lambda x, k: conv_transpose(x, k, strides=3, padding=1, output_padding=2), (x1, k1), order=1)


def test_jit_vmap_and_unbatched_agree(x64):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 5, 4, 2)))
    k = jnp.asarray(rng.standard_normal((4, 4, 2, 3)))
    fn = lambda x: conv_transpose(x, k, strides=2, padding=1)  # noqa: E731
    y = fn(x)
    np.testing.assert_allclose(jax.jit(fn)(x), y, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(fn)(x[:, None])[:, 0], y, rtol=1e-12)
    np.testing.assert_allclose(fn(x[1]), y[1], rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_keeps_dtype(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 6, 6, 2)).astype(np.float32)
    k = (rng.standard_normal((4, 4, 2, 3)) / 4).astype(np.float32)
    want = conv_transpose(jnp.asarray(x), jnp.asarray(k), strides=2, padding=1)
    got = conv_transpose(jnp.asarray(x, dtype), jnp.asarray(k, dtype), strides=2, padding=1)
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("call, error, match", [
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 2), jnp.int32), jnp.ones((3, 3, 2, 2))), TypeError, "x"),
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 2)), jnp.ones((3, 3, 2, 2), jnp.float16)), TypeError, "kernel"),
    (lambda: conv_transpose(jnp.ones((3, 2)), jnp.ones((3, 3, 2, 2))), ValueError, "rank"),
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 2)), jnp.ones((3, 2, 2))), ValueError, "rank"),
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 3)), jnp.ones((3, 3, 2, 2))), ValueError, "input features"),
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 2)), jnp.ones((3, 3, 2, 2)), jnp.ones(3)), ValueError, "bias"),
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 3)), jnp.ones((3, 3, 3, 2)), feature_group_count=2), ValueError,
     "feature_group_count"),
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 2)), jnp.ones((3, 3, 2, 2)), strides=2, output_padding=2),
     ValueError, "output_padding"),
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 2)), jnp.ones((3, 3, 2, 2)), padding=(1, -1)), ValueError, "padding"),
    (lambda: conv_transpose(jnp.ones((1, 1, 1, 2)), jnp.ones((1, 1, 2, 2)), padding=1), ValueError, "length"),
    (lambda: conv_transpose(jnp.ones((1, 3, 3, 2)), jnp.ones((3, 3, 2, 2)), precision="best"), ValueError,
     "precision"),
    (lambda: conv_transpose([[1.0]], jnp.ones((3, 3, 2, 2))), TypeError, "x"),
])
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------------------- layers

LAYER_CASES = [
    dict(kernel_size=(4, 4), strides=(2, 2), padding="SAME"),
    dict(kernel_size=(3, 3), strides=(2, 2), padding="SAME"),
    dict(kernel_size=(3, 2), strides=(1, 3), padding="VALID"),
    dict(kernel_size=(3, 3), strides=(2, 2), padding=((1, 2), (1, 2)), transpose_kernel=True),
    dict(kernel_size=(5, 3), strides=(2, 1), padding=((6, 0), (-1, 3)), kernel_dilation=(1, 2)),
    dict(kernel_size=(3, 3), strides=(2, 2), padding=1, kernel_dilation=2, transpose_kernel=True),
]


def _lax_pairs(case, L):
    """The padding ``lax.conv_transpose`` applies (written out from its documented rule)."""
    ks, st = case["kernel_size"], case["strides"]
    dil = case.get("kernel_dilation", 1)
    dil = (dil,) * len(ks) if isinstance(dil, int) else dil
    pad = case["padding"]
    if isinstance(pad, int):
        return [(pad, pad)] * len(ks)
    if not isinstance(pad, str):
        return list(pad)
    pairs = []
    for k, s, d in zip(ks, st, dil):
        e = (k - 1) * d + 1
        if pad == "SAME":
            total = e + s - 2
            lo = e - 1 if s > e - 1 else -(-total // 2)
        else:
            total, lo = e + s - 2 + max(e - s, 0), e - 1
        pairs.append((lo, total - lo))
    return pairs


def _layer_truth(case, x, kernel, bias):
    ks = case["kernel_size"]
    nd = len(ks)
    dil = case.get("kernel_dilation", 1)
    dil = (dil,) * nd if isinstance(dil, int) else dil
    if case.get("transpose_kernel"):               # lax flips the kernel and swaps its channel axes
        kernel = np.swapaxes(np.flip(kernel, axis=tuple(range(nd))), -1, -2)
    pairs = _lax_pairs(case, x.shape[1:-1])
    out_len = [(n - 1) * s + 1 + lo + hi - (k - 1) * d
               for n, s, (lo, hi), k, d in zip(x.shape[1:-1], case["strides"], pairs, ks, dil)]
    return sum_truth(x, kernel, bias, case["strides"], dil, [lo for lo, _ in pairs], out_len, lax_orientation=True)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_linen_layer_params_shapes_and_values(case, x64):
    x = np.random.default_rng(4).standard_normal((2, 5, 4, 3))
    plain = nn.ConvTranspose(4, param_dtype=jnp.float64, **case)
    ours = dlinen.DiffConvTranspose(4, param_dtype=jnp.float64, **case)
    params = plain.init(jax.random.key(0), jnp.asarray(x))
    assert jax.tree.map(jnp.shape, jax.eval_shape(ours.init, jax.random.key(0), jnp.asarray(x))) == \
        jax.tree.map(jnp.shape, params)
    y = ours.apply(params, jnp.asarray(x))
    assert y.shape == plain.apply(params, jnp.asarray(x)).shape
    p = params["params"]
    np.testing.assert_allclose(np.asarray(y), _layer_truth(case, x, np.asarray(p["kernel"]), np.asarray(p["bias"])),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(ours.apply(params, jnp.asarray(x[0]))), np.asarray(y[0]), rtol=1e-12)
    two = ours.apply(params, jnp.asarray(x.reshape(1, 2, 5, 4, 3)))
    np.testing.assert_allclose(np.asarray(two[0]), np.asarray(y), rtol=1e-12)


@pytest.mark.parametrize("case", LAYER_CASES[:4])
def test_nnx_layer_state_and_values_match_linen(case, x64):
    x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 5, 4, 3)))
    plain = nnx.ConvTranspose(3, 4, param_dtype=jnp.float64, rngs=nnx.Rngs(0), **{
        k: v for k, v in case.items() if k != "kernel_size"}, kernel_size=case["kernel_size"])
    ours = dnnx.DiffConvTranspose(3, 4, param_dtype=jnp.float64, rngs=nnx.Rngs(0), **{
        k: v for k, v in case.items() if k != "kernel_size"}, kernel_size=case["kernel_size"])
    assert isinstance(ours, nnx.ConvTranspose)
    assert jax.tree.map(jnp.shape, nnx.state(ours)) == jax.tree.map(jnp.shape, nnx.state(plain))
    params = {"params": {"kernel": ours.kernel[...], "bias": ours.bias[...]}}
    want = dlinen.DiffConvTranspose(4, param_dtype=jnp.float64, **case).apply(params, x)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(want), rtol=1e-12)
    assert ours(x).shape == plain(x).shape


def test_layers_equal_plain_where_no_output_reaches_past_the_data(x64):
    """'SAME' with kernel = stride: every output's taps land on data."""
    x = jnp.asarray(np.random.default_rng(6).standard_normal((2, 5, 4, 3)))
    case = dict(kernel_size=(2, 3), strides=(2, 3), padding="SAME")
    params = nn.ConvTranspose(4, **case).init(jax.random.key(1), x)
    np.testing.assert_array_equal(dlinen.DiffConvTranspose(4, **case).apply(params, x),
                                  nn.ConvTranspose(4, **case).apply(params, x))


def test_linen_autonames_and_mask_like_conv_transpose():
    class Net(nn.Module):
        cls: type

        @nn.compact
        def __call__(self, x):
            return self.cls(2, (3, 3), strides=2)(nn.Conv(3, (3, 3))(self.cls(3, (2, 2))(x)))

    x = jnp.ones((1, 4, 4, 2))
    shapes = jax.tree.map(jnp.shape, jax.eval_shape(Net(nn.ConvTranspose).init, jax.random.key(0), x))
    assert jax.tree.map(jnp.shape, jax.eval_shape(Net(dlinen.DiffConvTranspose).init, jax.random.key(0), x)) == shapes
    mask = jnp.zeros((3, 3, 2, 4)).at[1, 1].set(1.0)
    layer = dlinen.DiffConvTranspose(4, (3, 3), strides=(2, 2), mask=mask)
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))
    params = {"params": {"kernel": kernel, "bias": jnp.zeros(4)}}
    masked = {"params": {"kernel": kernel * mask, "bias": jnp.zeros(4)}}
    unmasked = dlinen.DiffConvTranspose(4, (3, 3), strides=(2, 2))
    np.testing.assert_allclose(layer.apply(params, x), unmasked.apply(masked, x), rtol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        dlinen.DiffConvTranspose(4, (3, 3), mask=jnp.ones((2, 2, 2, 4))).apply(params, x)


@pytest.mark.parametrize("padding", ["CIRCULAR", "CAUSAL"])
def test_boundary_modes_are_rejected(padding):
    x = jnp.ones((1, 4, 4, 2))
    with pytest.raises(ValueError, match="padding"):
        dlinen.DiffConvTranspose(2, (3, 3), padding=padding).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="padding"):
        dnnx.DiffConvTranspose(2, 2, (3, 3), padding=padding, rngs=nnx.Rngs(0))


def test_linen_layer_is_auto_named_like_flax_conv_transpose():
    """In a compact module the layer takes ``ConvTranspose_<i>`` names on Flax's own counter,
    so swapping ``nn.ConvTranspose`` for it keeps the parameter tree."""

    class Up(nn.Module):
        layer: type

        @nn.compact
        def __call__(self, x):
            return self.layer(2, (3, 3), strides=(2, 2))(nn.ConvTranspose(3, (2, 2))(x))

    x = jnp.zeros((1, 4, 4, 2))
    plain = Up(nn.ConvTranspose).init(jax.random.key(0), x)
    ours = Up(dlinen.DiffConvTranspose).init(jax.random.key(0), x)
    assert set(ours["params"]) == set(plain["params"]) == {"ConvTranspose_0", "ConvTranspose_1"}
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, plain)
