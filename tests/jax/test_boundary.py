"""Boundaries per axis and side, and the ghost order, in the JAX backend (docs/design.md).

The truth is ``tests/oracle.py`` (independent of diffconv): each side padded by its own rule
(``numpy.pad`` modes for zeros/reflect/replicate/circular, exact-fraction Lagrange ghosts of
degree ``p`` on the ghost's own lattice for diff), axis after axis, then a VALID convolution.
Gradients are held to the same padding as constant matrices (``oracle.pad_matrix``) under JAX's
autodiff of an unpadded convolution.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx
from jax import lax
from jax.test_util import check_grads

import oracle
from diffconv.boundary import parse_boundary, parse_order
from diffconv.coefficients import ghost_weights, source_span
from diffconv.jax import conv, conv_transpose, lagrange_pad
from diffconv.jax import linen as dlinen
from diffconv.jax import nnx as dnnx
from diffconv.jax.functional import conv_with_layout

_SPEC = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def _cf(x):
    return np.moveaxis(np.asarray(x, np.float64), -1, 1)


def _cl(y):
    return np.moveaxis(np.asarray(y), 1, -1)


def _torch_weight(kernel):
    """Flax ``(*k, in/g, out)`` -> torch ``(out, in/g, *k)``."""
    k = np.asarray(kernel, np.float64)
    return np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2)))


def _tuple(v, nd):
    return (v,) * nd if v is None or isinstance(v, int) else tuple(v)


def oracle_conv(x, kernel, bias=None, strides=1, dilation=1, groups=1, boundary="diff", order=None,
                edge_kernel=None, edge_bias=None):
    """The oracle's forward value, channels-last."""
    return _cl(oracle.diff_conv(
        _cf(x), _torch_weight(kernel), bias, strides, dilation, groups, boundary, order,
        None if edge_kernel is None else _torch_weight(edge_kernel), edge_bias,
    ))


def truth_conv(x, kernel, bias=None, strides=1, dilation=1, boundary="diff", order=None, edge_kernel=None,
               edge_bias=None, boundary_input_grad=True):
    """The oracle's padding matrices applied in JAX (differentiable; float64 under x64)."""
    nd = kernel.ndim - 2
    ks, st, ds = kernel.shape[:nd], _tuple(strides, nd), _tuple(dilation, nd)
    lengths = x.shape[1:-1]
    modes = oracle.parse_boundary(boundary, nd)
    orders = oracle.parse_order(order, nd, [k - 1 for k in ks])
    mats = [jnp.asarray(np.array(oracle.pad_matrix(n, *oracle.same_widths(k, d), modes[a], k, d, orders[a]),
                                 dtype=np.float64))
            for a, (n, k, d) in enumerate(zip(lengths, ks, ds))]

    def run(v, w, b):
        for a, m in enumerate(mats):
            v = jnp.moveaxis(jnp.tensordot(m, v, axes=([1], [1 + a]), precision=lax.Precision.HIGHEST), 0, 1 + a)
        y = lax.conv_general_dilated(v, w, st, "VALID", rhs_dilation=ds, dimension_numbers=_SPEC[nd],
                                     precision=lax.Precision.HIGHEST)
        return y if b is None else y + b

    y = run(x, kernel, bias)
    if edge_kernel is None and edge_bias is None and boundary_input_grad:
        return y
    mask = jnp.asarray(oracle.boundary_mask(lengths, ks, st, ds, boundary)[None, ..., None])
    xb = x if boundary_input_grad else lax.stop_gradient(x)
    y_edge = run(xb, kernel if edge_kernel is None else edge_kernel, bias if edge_bias is None else edge_bias)
    return jnp.where(mask, y_edge, y)


def _data(seed, lengths, ks, cin=2, cout=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *lengths, cin)).astype(dtype)
    kernel = (rng.standard_normal((*ks, cin, cout)) * 0.5).astype(dtype)
    bias = rng.standard_normal(cout).astype(dtype)
    return x, kernel, bias


def _close(got, want, tol=1e-9):
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


# ----------------------------------------------------------------------------- values

CASES_1D = [  # L, k, stride, dilation, boundary (a mode or a (low, high) pair), order
    (11, 3, 1, 1, "zeros", None),
    (11, 3, 1, 1, "reflect", None),
    (11, 3, 1, 1, "replicate", None),
    (11, 3, 1, 1, "circular", None),
    (11, 5, 1, 1, "diff", 2),
    (11, 5, 2, 1, ("diff", "zeros"), 1),
    (12, 4, 1, 1, ("reflect", "diff"), None),              # even kernel: widths (1, 2)
    (12, 6, 3, 1, ("replicate", "reflect"), 3),
    (13, 3, 1, 2, ("zeros", "diff"), 1),                   # dilated: ghost lattices of step 2
    (13, 4, 2, 3, "circular", None),
    (10, 7, 1, 1, ("diff", "replicate"), 0),               # order 0 = replicate on the diff side
    (4, 5, 1, 1, ("diff", "zeros"), 3),                    # short axis: degree min(p, m - 1)
    (2, 4, 1, 2, ("replicate", "diff"), 2),                # shorter than the dilation on one lattice
    (3, 5, 1, 1, "reflect", None),                         # reflect needs widths + 1 = 3 samples
    (2, 4, 1, 1, "circular", None),                        # circular needs max width = 2 samples
    (1, 3, 1, 1, ("zeros", "replicate"), None),
]


@pytest.mark.parametrize("L,k,s,d,boundary,order", CASES_1D)
def test_1d_matches_oracle(x64, L, k, s, d, boundary, order):
    boundary = boundary if isinstance(boundary, str) else (boundary,)      # one (low, high) entry
    x, kernel, bias = _data(L * 10 + k, (L,), (k,))
    got = conv(x, kernel, bias, strides=s, dilation=d, boundary=boundary, order=order)
    _close(got, oracle_conv(x, kernel, bias, s, d, 1, boundary, order))


CASES_ND = [  # lengths, k, stride, dilation, boundary, order
    ((9, 8), (3, 3), 1, 1, ("diff", "circular"), None),                       # a weather grid: (lat, lon)
    ((9, 8), (5, 4), (2, 1), 1, (("reflect", "zeros"), ("replicate", "diff")), (2, None)),
    ((7, 10), (3, 5), 1, (2, 1), ("circular", ("diff", "reflect")), (0, 3)),
    ((4, 6), (5, 3), 2, 1, (("diff", "replicate"), "zeros"), 1),             # short first axis
    ((5, 4, 6), (3, 2, 3), 1, 1, ("circular", ("zeros", "diff"), "reflect"), (None, 1, 2)),
    ((4, 5, 3), (3, 3, 3), (1, 2, 1), 1, ("diff", "replicate", "circular"), 1),
]


@pytest.mark.parametrize("lengths,ks,s,d,boundary,order", CASES_ND)
def test_nd_matches_oracle(x64, lengths, ks, s, d, boundary, order):
    x, kernel, bias = _data(sum(lengths), lengths, ks)
    got = conv(x, kernel, bias, strides=s, dilation=d, boundary=boundary, order=order)
    _close(got, oracle_conv(x, kernel, bias, s, d, 1, boundary, order))


@pytest.mark.parametrize("extra_row", [False, True])
@pytest.mark.parametrize("lengths,boundary,order", [
    ((3, 7), ("reflect", "diff"), 1),                    # reflect on 3 samples: just enough for width 2
    ((2, 7), ("circular", ("zeros", "diff")), None),     # circular on 2 samples: just enough
])
def test_both_layouts_match_oracle(x64, extra_row, lengths, boundary, order):
    """The CPU layout (one more ghost row after the first axis, cropped) and the plain one; the
    extra row must not ask more samples of a reflect or circular first axis than it has."""
    x, kernel, bias = _data(3, lengths, (5, 3))
    got = conv_with_layout(x, kernel, bias, None, None, nd=2, strides=(1, 1), dils=(1, 1), groups=1,
                           boundary_input_grad=True, precision=None, extra_row=extra_row,
                           modes=parse_boundary(boundary, 2), orders=parse_order(order, 2, (4, 2)))
    _close(got, oracle_conv(x, kernel, bias, 1, 1, 1, boundary, order))


def test_groups_and_unbatched(x64):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 9, 4))
    kernel = rng.standard_normal((3, 2, 2, 6))
    boundary = ("replicate", ("diff", "zeros"))
    got = conv(x, kernel, feature_group_count=2, boundary=boundary, order=(None, 0))
    _close(got, oracle_conv(x[None], kernel, None, 1, 1, 2, boundary, (None, 0))[0])


def test_lagrange_pad_order(x64):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 9, 7, 3))
    pads = ((0, 0), (2, 3), (1, 2), (0, 0))
    got = lagrange_pad(x, pads, kernel_size=(1, 5, 4, 1), dilation=(1, 1, 2, 1), order=(None, 2, 1, None))
    want = oracle.pad(_cf(x), [(2, 3), (1, 2)], "diff", (5, 4), (1, 2), (2, 1))
    _close(got, _cl(want))
    # An int order applies to the padded axes only.
    got = lagrange_pad(x, pads, kernel_size=(1, 5, 4, 1), order=1)
    _close(got, _cl(oracle.pad(_cf(x), [(2, 3), (1, 2)], "diff", (5, 4), 1, 1)))


# ----------------------------------------------------------------------------- the default

@pytest.mark.parametrize("lengths,ks,s,d,extra_row", [
    ((13,), (5,), 1, 1, False), ((9, 7), (3, 4), (2, 1), (1, 2), False), ((9, 7), (3, 4), (2, 1), (1, 2), True),
    ((3, 6), (5, 3), 1, 1, True), ((5, 4, 6), (3, 2, 3), 1, 1, False),
])
def test_default_is_the_explicit_diff_bit_for_bit(lengths, ks, s, d, extra_row):
    """``boundary="diff"``, ``order=None`` omitted, given, given per axis and side, or given as
    ``k-1``: one and the same computation, bit for bit (outputs and gradients, float32)."""
    nd = len(lengths)
    x, kernel, bias = _data(1, lengths, ks, dtype=np.float32)
    strides, dils = _tuple(s, nd), _tuple(d, nd)
    specs = [dict(), dict(modes=(("diff", "diff"),) * nd, orders=(None,) * nd),
             dict(modes=(("diff", "diff"),) * nd, orders=tuple(k - 1 for k in ks))]
    results = []
    for spec in specs:
        def f(x, kernel, bias, spec=spec):
            return conv_with_layout(x, kernel, bias, kernel * 0.5, None, nd=nd, strides=strides, dils=dils, groups=1,
                                    boundary_input_grad=False, precision=None, extra_row=extra_row, **spec)
        y, vjp = jax.vjp(f, x, kernel, bias)
        results.append((y, *vjp(jnp.cos(y))))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(conv(x, kernel, bias, strides=s, dilation=d)),
                                  np.asarray(conv(x, kernel, bias, strides=s, dilation=d, boundary="diff", order=None)))


def _one_product_pad(x, axis, k, d):
    """The default's ghosts as computed before per-side boundaries existed: the samples nearest
    both edges gathered (the whole axis where they overlap) and both sides' ghost rows applied
    as one block matrix, in one product."""
    length = x.shape[axis]
    before, after = oracle.same_widths(k, d)
    g = ghost_weights(k, d, widths=(before, after), length=length)
    span = source_span(k, d, length)
    apart = 2 * span < length
    w = np.zeros((before + after, 2 * span if apart else length))
    w[:before, :span] = g.low
    w[before:, w.shape[1] - span:] = g.high
    src = jnp.take(x, np.r_[0:span, length - span:length], axis=axis) if apart else x
    letters = "abcd"[:x.ndim]
    ghosts = jnp.einsum(f"{letters},Z{letters[axis]}->{letters[:axis]}Z{letters[axis + 1:]}", src,
                        jnp.asarray(w, x.dtype), precision=lax.Precision.HIGHEST)
    return jnp.concatenate([ghosts[:, :before], x, ghosts[:, before:]] if axis == 1 else
                           [ghosts[:, :, :before], x, ghosts[:, :, before:]], axis=axis)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((2, 13, 3), 1), ((4, 30, 20, 5), 1), ((4, 30, 20, 5), 2), ((2, 9, 7, 3), 2)])
def test_default_ghosts_are_bit_for_bit_the_one_product_form(dtype, shape, axis):
    """The default's ghost values are bit for bit those of one product over both edges' samples
    (the form before per-side boundaries), also on axes short enough for the edges to overlap:
    splitting the product per side keeps its shape and only zeroes the other side's samples.
    Dilated kernels gather each ghost's own lattice instead (weighted sums of other length):
    there the two agree to the rounding of a sum of k terms."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(rng.standard_normal(shape).astype(dtype) * 10)
        for k, d in ((3, 1), (4, 1), (5, 1), (7, 1), (3, 2), (4, 3)):
            before, after = oracle.same_widths(k, d)
            pads = [(0, 0)] * x.ndim
            pads[axis] = (before, after)
            got = np.asarray(lagrange_pad(x, pads, kernel_size=k, dilation=d))
            want = np.asarray(_one_product_pad(x, axis, k, d))
            if d == 1:
                np.testing.assert_array_equal(got, want)
            else:
                bound = 4 * k * np.finfo(dtype).eps * 2.0 ** k * np.abs(x).max()
                np.testing.assert_allclose(got, want, rtol=0, atol=bound)


def test_default_matches_oracle(x64):
    x, kernel, bias = _data(2, (9, 8), (5, 4))
    _close(conv(x, kernel, bias, strides=(1, 2)), oracle_conv(x, kernel, bias, (1, 2)))


@pytest.mark.parametrize("boundary", ["diff", ("reflect", "diff"), ("diff", "zeros")])
def test_nan_at_one_edge_stays_there(boundary):
    """A NaN near the low edge reaches the low ghosts and the outputs that read it, never the
    high edge's ghosts (each side's product reads only its own samples)."""
    for L in (20, 10):                                   # the sides' samples apart, and overlapping (k*d = 7)
        x = np.random.default_rng(0).standard_normal((1, L, 1)).astype(np.float32)
        x[0, 0, 0] = np.nan
        pad = lagrange_pad(x, ((0, 0), (3, 3), (0, 0)), kernel_size=7) if boundary == "diff" else None
        if pad is not None:
            assert np.isnan(pad[0, :3, 0]).all() and np.isfinite(pad[0, 3 + L:, 0]).all()
        spec = boundary if isinstance(boundary, str) else (boundary,)          # one (low, high) entry
        y = conv(x, np.ones((7, 1, 1), np.float32), boundary=spec)
        assert np.isfinite(np.asarray(y)[0, 4:, 0]).all()       # outputs 0..3 read x[0]; none after


# ----------------------------------------------------------------------------- edge kernel, switch, gradients

@pytest.mark.parametrize("lengths,ks,s,boundary,order", [
    ((9, 8), (3, 3), 1, ("diff", "circular"), None),
    ((8, 9), (4, 3), (2, 1), (("zeros", "diff"), ("replicate", "reflect")), (2, None)),
    ((7,), (5,), 1, ("circular",), None),
    ((6, 5, 4), (3, 3, 2), 1, ("circular", "reflect", ("diff", "zeros")), 1),
])
def test_edge_kernel_and_switch_with_mixed_sides(x64, lengths, ks, s, boundary, order):
    """Boundary outputs are those reaching a non-circular ghost: they use the edge parameters and,
    with the switch off, pass no gradient to the input (against the oracle's mask)."""
    x, kernel, bias = _data(11, lengths, ks)
    rng = np.random.default_rng(12)
    ek, eb = rng.standard_normal(kernel.shape), rng.standard_normal(bias.shape)
    opts = dict(strides=s, boundary=boundary, order=order)
    got = conv(x, kernel, bias, edge_kernel=ek, edge_bias=eb, **opts)
    _close(got, oracle_conv(x, kernel, bias, s, 1, 1, boundary, order, ek, eb))

    def loss(f, x, k, b, ek, eb, **kw):
        y = f(x, k, b, edge_kernel=ek, edge_bias=eb, boundary_input_grad=False, **opts, **kw)
        return jnp.sum(jnp.sin(y))

    got_g = jax.grad(lambda *a: loss(conv, *a), argnums=(0, 1, 2, 3, 4))(x, kernel, bias, ek, eb)
    want_g = jax.grad(lambda *a: loss(truth_conv, *a), argnums=(0, 1, 2, 3, 4))(x, kernel, bias, ek, eb)
    for g, w in zip(got_g, want_g):
        _close(g, w)
    if all(m == "circular" for m in _tuple(boundary, len(lengths))):      # no boundary outputs at all
        _close(got, oracle_conv(x, kernel, bias, s, 1, 1, boundary, order))


def test_check_grads(x64):
    x, kernel, bias = _data(21, (6, 5), (3, 4))

    def f(x, kernel, bias):
        return conv(x, kernel, bias, boundary=(("diff", "reflect"), "circular"), order=(1, None),
                    edge_kernel=kernel * 0.3)          # (the switch off is no derivative: tested above)

    check_grads(f, (x, kernel, bias), order=2, modes=("fwd", "rev"))
    check_grads(lambda x, k: conv_transpose(x, k, strides=2, padding=1, boundary=("replicate", ("zeros", "diff")),
                                            order=(None, 0)),
                (x, np.random.default_rng(3).standard_normal((3, 3, 2, 2))), order=2, modes=("fwd", "rev"))


def test_jit_vmap_and_low_precision():
    x, kernel, bias = _data(31, (6, 7), (3, 3), dtype=np.float32)
    f = jax.jit(lambda x: conv(x, kernel, bias, boundary=("reflect", "circular"), order=1))
    np.testing.assert_allclose(jax.vmap(f)(x[:, None])[:, 0], f(x), rtol=1e-6, atol=1e-6)
    # Copies (reflect, replicate, circular) are exact in any dtype.
    xb = jnp.asarray(x, jnp.bfloat16)
    padded = lagrange_pad(xb, ((0, 0), (1, 1), (0, 0), (0, 0)), kernel_size=3, order=0)
    np.testing.assert_array_equal(np.asarray(padded[:, 0], np.float32), np.asarray(xb[:, 0], np.float32))


# ----------------------------------------------------------------------------- transposed convolutions

CASES_T = [  # lengths, k, stride, padding, output_padding, dilation, groups, boundary, order
    ((7,), (4,), 2, 1, 0, 1, 1, "reflect", None),
    ((6,), (3,), 2, 0, 1, 1, 2, (("zeros", "diff"),), 0),
    ((5,), (5,), 1, 2, 0, 2, 1, (("diff", "replicate"),), 3),        # s = 1: DiffConv's ghosts
    ((5, 6), (3, 4), (2, 2), (1, 1), (1, 0), 1, 1, ("circular", ("reflect", "diff")), (None, 1)),
    ((4, 5), (5, 3), (3, 2), (2, 0), (0, 1), (2, 1), 1, (("replicate", "zeros"), "circular"), (1, 0)),
    ((3, 4, 3), (3, 2, 3), 2, (1, 0, 1), 0, 1, 1, ("diff", "reflect", "zeros"), (1, 0, 1)),   # m = (2, 1, 2)
    ((2,), (6,), 1, 2, 0, 1, 1, "diff", 2),                          # short axis
]


@pytest.mark.parametrize("lengths,ks,s,p,op,d,groups,boundary,order", CASES_T)
def test_conv_transpose_matches_oracle(x64, lengths, ks, s, p, op, d, groups, boundary, order):
    nd = len(lengths)
    rng = np.random.default_rng(sum(lengths) + sum(ks))
    x = rng.standard_normal((2, *lengths, 2 * groups))
    w = rng.standard_normal((2 * groups, 3, *ks))                    # torch layout (in, out/groups, *k)
    b = rng.standard_normal(3 * groups)
    kernel = np.transpose(w, tuple(range(2, 2 + nd)) + (0, 1))      # (*k, in, out/groups)
    got = conv_transpose(x, kernel, b, strides=s, padding=p, output_padding=op, dilation=d, feature_group_count=groups,
                         boundary=boundary, order=order)
    want = oracle.conv_transpose(_cf(x), w, b, s, p, op, groups, d, boundary, order)
    _close(got, _cl(want))


def test_conv_transpose_zeros_is_the_plain_transposed_convolution(x64):
    rng = np.random.default_rng(8)
    x, kernel = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((3, 4, 3, 2))
    got = conv_transpose(x, kernel, strides=2, padding=1, boundary="zeros")
    want = lax.conv_transpose(x, kernel[::-1, ::-1], (2, 2), [(1, 1), (2, 2)], dimension_numbers=_SPEC[2],
                              precision=lax.Precision.HIGHEST)
    _close(got, want)


@pytest.mark.parametrize("boundary,order", [(("circular", ("replicate", "diff")), (None, 1)), ("zeros", None)])
def test_transposed_layers(x64, boundary, order):
    """linen and NNX ``DiffConvTranspose`` with ``boundary``/``order``: the oracle's transposed
    convolution ('VALID': torch's ``padding=0``; Flax's unflipped kernel is torch's flipped one),
    parameter trees as Flax's."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5, 4, 3))
    layer = dlinen.DiffConvTranspose(2, (3, 3), strides=(2, 2), padding="VALID", boundary=boundary, order=order,
                                     param_dtype=jnp.float64)
    params = layer.init(jax.random.key(0), x)
    plain = nn.ConvTranspose(2, (3, 3), strides=(2, 2), padding="VALID").init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, plain)
    kernel = np.asarray(params["params"]["kernel"])
    bias = rng.standard_normal(2)
    params = {"params": {"kernel": kernel, "bias": bias}}
    got = layer.apply(params, x)
    w = np.transpose(kernel[::-1, ::-1], (2, 3, 0, 1))                # (in, out, *k), flipped
    _close(got, _cl(oracle.conv_transpose(_cf(x), w, bias, 2, 0, 0, 1, 1, boundary, order)))
    if boundary == "zeros":
        _close(got, nn.ConvTranspose(2, (3, 3), strides=(2, 2), padding="VALID").apply(params, x))
    n = dnnx.DiffConvTranspose(3, 2, (3, 3), strides=(2, 2), padding="VALID", boundary=boundary, order=order,
                               param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    n.kernel[...], n.bias[...] = kernel, bias
    assert (n.boundary, n.order) == (boundary, order)
    _close(n(x), got)


# ----------------------------------------------------------------------------- layers

@pytest.mark.parametrize("boundary,order", [(("diff", "circular"), None), ([("zeros", "reflect"), "diff"], [1, 2])])
def test_linen_and_nnx_conv(x64, boundary, order):
    x, kernel, bias = _data(41, (7, 8), (3, 3), cin=2, cout=4)
    layer = dlinen.DiffConv(4, (3, 3), boundary=boundary, order=order, edge_kernel=True, param_dtype=jnp.float64)
    params = layer.init(jax.random.key(0), x)
    plain = dlinen.DiffConv(4, (3, 3), edge_kernel=True).init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, plain)          # tree unchanged
    params = {"params": {"kernel": kernel, "bias": bias, "edge_kernel": kernel * 0.5, "edge_bias": bias + 1}}
    want = conv(x, kernel, bias, edge_kernel=kernel * 0.5, edge_bias=bias + 1, boundary=boundary, order=order)
    _close(layer.apply(params, x), want, 1e-12)
    _close(want, oracle_conv(x, kernel, bias, 1, 1, 1, boundary, order, kernel * 0.5, bias + 1))

    n = dnnx.DiffConv(2, 4, (3, 3), boundary=boundary, order=order, edge_kernel=True, param_dtype=jnp.float64,
                      rngs=nnx.Rngs(0))
    assert set(nnx.state(n, nnx.Param).keys()) == {"kernel", "bias", "edge_kernel", "edge_bias"}
    assert not hasattr(n, "padding")                                    # no zero padding to report
    assert n.boundary == tuple(b if isinstance(b, str) else tuple(b) for b in boundary)   # lists stored as tuples
    assert n.order == (None if order is None else tuple(order))
    n.kernel[...], n.bias[...], n.edge_kernel[...], n.edge_bias[...] = kernel, bias, kernel * 0.5, bias + 1
    _close(n(x), want, 1e-12)
    _close(nnx.jit(lambda m, x: m(x))(n, x), want, 1e-12)


def test_nnx_out_sharding_reshards_the_output():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    n = dnnx.DiffConv(2, 3, (3, 3), rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 2)).astype(np.float32)
    want = n(x)
    with jax.set_mesh(mesh):
        spec = jax.sharding.PartitionSpec(None, "data")
        xs = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
        y = n(xs, out_sharding=spec)
    assert tuple(y.sharding.spec)[:2] == (None, "data")
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- errors

X2 = np.zeros((1, 6, 5, 2), np.float32)
K2 = np.zeros((3, 3, 2, 2), np.float32)


@pytest.mark.parametrize("kwargs,match", [
    (dict(boundary="mirror"), r"boundary must be one of \['diff', 'zeros', 'reflect', 'replicate', 'circular'\], "
                              r"got 'mirror'"),
    (dict(boundary=("diff",)), r"one entry per spatial axis \(2 for a 2-d convolution\), got 1 entries"),
    (dict(boundary=("diff", ("circular", "diff"))), r"spatial axis 1 is circular on one side only"),
    (dict(boundary=(("zeros", "nope"), "diff")), r"boundary\[0\]\[1\] must be one of"),
    (dict(order=3), r"order 3 on spatial axis 0 is out of range: .* degree 0 to 2"),
    (dict(order=(0, -1)), r"order -1 on spatial axis 1 is out of range"),
    (dict(order=(1, 1, 1)), r"order must be None, an int or one per spatial axis \(2\)"),
    (dict(x=np.zeros((1, 1, 5, 2), np.float32), boundary="reflect"),
     r"'reflect' on spatial axis 0 \(low side\) .* needs at least 2 samples; the axis has 1"),
    (dict(x=np.zeros((1, 6, 2, 2), np.float32), kernel=np.zeros((3, 7, 2, 2), np.float32),
          boundary=("diff", "circular")),
     r"'circular' on spatial axis 1 \(low side\) .* needs at least 3 samples; the axis has 2"),
])
def test_conv_errors(kwargs, match):
    args = dict(x=X2, kernel=K2)
    args.update(kwargs)
    x, kernel = args.pop("x"), args.pop("kernel")
    with pytest.raises(ValueError, match=match):
        conv(x, kernel, **args)
    with pytest.raises(ValueError, match=match):       # also when traced: shapes are static
        jax.jit(lambda x, k: conv(x, k, **args))(x, kernel)


def test_other_errors():
    with pytest.raises(TypeError, match="boundary must be a mode or one entry per spatial axis"):
        conv(X2, K2, boundary=3)
    k4 = np.zeros((4, 2, 2), np.float32)                                 # k=4, s=2: m = 2 samples per output
    with pytest.raises(ValueError, match=r"order 2 on spatial axis 0 is out of range: .* degree 0 to 1"):
        conv_transpose(np.zeros((1, 5, 2), np.float32), k4, strides=2, order=2)
    with pytest.raises(ValueError, match=r"'reflect' on spatial axis 0"):
        conv_transpose(np.zeros((1, 1, 2), np.float32), k4, strides=1, padding=0, boundary="reflect")
    with pytest.raises(ValueError, match="circular on one side only"):
        conv_transpose(np.zeros((1, 5, 2), np.float32), k4, boundary=(("circular", "zeros"),))
    with pytest.raises(ValueError, match=r"order 5 on spatial axis 1 is out of range"):
        lagrange_pad(np.zeros((4, 6)), ((1, 1), (1, 1)), kernel_size=3, order=(None, 5))
    with pytest.raises(ValueError, match="boundary must be one of"):
        dlinen.DiffConv(2, (3, 3), boundary="nope").init(jax.random.key(0), X2)
    with pytest.raises(ValueError, match="boundary must be one of"):
        dlinen.DiffConvTranspose(2, (3, 3), boundary="nope").init(jax.random.key(0), X2)
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        dnnx.DiffConv(2, 2, (3, 3), boundary=("diff",), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"order 3 on spatial axis 0 is out of range"):
        dnnx.DiffConv(2, 2, (3, 3), order=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="circular on one side only"):
        dnnx.DiffConvTranspose(2, 2, (3, 3), boundary=(("circular", "diff"), "diff"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"in_features \(3\) must be divisible by feature_group_count \(2\)"):
        dnnx.DiffConv(3, 4, (3, 3), feature_group_count=2, rngs=nnx.Rngs(0))
