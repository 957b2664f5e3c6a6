"""diffconv.jax.conv against two truths: the oracle (tests/oracle.py), and the exact-fraction
ghost extension written in the tests (jaxtest_helpers.truth_conv), on long and on short axes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from diffconv.jax import conv, functional as F

from jaxtest_helpers import extend, oracle_cl, rel_err, truth_conv, valid_conv_np, widths

# (spatial lengths, kernel size, strides, dilation, groups): non-square kernels and images,
# images exactly k*d long, every kernel size 1..9 somewhere.
CASES = [
    ((9,), (9,), 1, 1, 1),
    ((7,), (7,), 2, 1, 2),
    ((8,), (4,), 3, 2, 1),
    ((13,), (6,), 1, 2, 2),
    ((1,), (1,), 1, 1, 1),
    ((10, 11), (3, 5), 1, 1, 2),
    ((8, 9), (2, 8), (2, 1), (1, 1), 1),
    ((9, 12), (3, 4), (1, 3), (3, 2), 1),
    ((5, 6, 7), (3, 2, 1), (1, 2, 1), 1, 2),
]


@pytest.mark.parametrize("lengths,ks,strides,dilation,groups", CASES)
def test_matches_the_oracle(x64, lengths, ks, strides, dilation, groups):
    rng = np.random.default_rng(len(lengths) * 100 + sum(ks))
    c_in, c_out = 2 * groups, 3 * groups
    x = rng.standard_normal((2, *lengths, c_in))
    k = rng.standard_normal((*ks, c_in // groups, c_out))
    b, eb = rng.standard_normal(c_out), rng.standard_normal(c_out)
    ek = rng.standard_normal(k.shape)
    opts = dict(strides=strides, dilation=dilation, feature_group_count=groups)

    @jax.jit
    def both(x, k, b, ek, eb):
        return conv(x, k, b, **opts), conv(x, k, None, edge_kernel=ek, edge_bias=eb, **opts)

    plain, edge = both(x, k, b, ek, eb)
    want_plain = oracle_cl(x, k, b, strides, dilation, groups)
    want_edge = oracle_cl(x, k, None, strides, dilation, groups, ek, eb)
    assert plain.shape == want_plain.shape
    assert plain.dtype == jnp.float64
    assert rel_err(plain, want_plain) < 1e-12
    assert rel_err(edge, want_edge) < 1e-12


@pytest.mark.parametrize("k", range(1, 8))
@pytest.mark.parametrize("d", [1, 2, 3])
def test_every_short_1d_axis_matches_the_truth(x64, k, d):
    """Every length 1 .. k*d + 1 (short axes and the first long ones), strides 1 and 2."""
    rng = np.random.default_rng(10 * k + d)
    kernel = rng.standard_normal((k, 2, 3))
    for n in range(1, k * d + 2):
        x = rng.standard_normal((2, n, 2))
        got, got2 = jax.jit(lambda x: (conv(x, kernel, dilation=d), conv(x, kernel, strides=2, dilation=d)))(x)
        assert got.shape == (2, n, 3) and got2.shape == (2, -(-n // 2), 3)
        ext = extend(x, (k,), (d,))
        assert rel_err(got, valid_conv_np(ext, kernel, (1,), (d,))) < 1e-12, n
        assert rel_err(got2, valid_conv_np(ext, kernel, (2,), (d,))) < 1e-12, n


# Short axes in 2-d and 3-d, with strides, dilations, even kernels and groups.
SHORT = [
    ((1, 1), (3, 3), 1, 1, 1),
    ((2, 5), (5, 3), 1, 1, 1),
    ((3, 2), (4, 2), (2, 1), 1, 2),
    ((4, 6), (3, 5), 1, (2, 1), 1),
    ((5, 1), (7, 2), (1, 2), (1, 3), 1),
    ((2, 3, 1), (3, 2, 3), (1, 2, 1), (1, 1, 2), 1),
    ((1, 4, 3), (2, 5, 3), 1, 1, 2),
]


@pytest.mark.parametrize("lengths,ks,strides,dilation,groups", SHORT)
@pytest.mark.parametrize("extra_row", [False, True])
def test_short_axes_values_and_gradients_match_the_truth(x64, lengths, ks, strides, dilation, groups, extra_row):
    """Plain layer, edge kernel and boundary switch, both backend layouts (``extra_row``):
    outputs and the gradients of all parameters equal those of the truth."""
    rng = np.random.default_rng(sum(lengths) + 10 * sum(ks))
    nd = len(lengths)
    c_in, c_out = 2 * groups, 2 * groups
    x = rng.standard_normal((2, *lengths, c_in))
    k, ek = rng.standard_normal((2, *ks, c_in // groups, c_out))
    b, eb = rng.standard_normal((2, c_out))
    st = (strides,) * nd if isinstance(strides, int) else strides
    dl = (dilation,) * nd if isinstance(dilation, int) else dilation
    ct = rng.standard_normal((2, *(-(-n // s) for n, s in zip(lengths, st)), c_out))

    def ours(x, k, b, ek, eb, edge, big):
        return F.conv_with_layout(x, k, b, ek if edge else None, eb if edge else None, nd=nd, strides=st, dils=dl,
                                  groups=groups, boundary_input_grad=big, precision=None, extra_row=extra_row)

    def truth(x, k, b, ek, eb, edge, big):
        return truth_conv(x, k, b, st, dl, groups, ek if edge else None, eb if edge else None, big)

    @jax.jit
    def results(x, k, b, ek, eb):
        out = []
        for f in (ours, truth):
            for edge, big in ((False, True), (True, True), (False, False)):
                y, vjp = jax.vjp(lambda *a: f(*a, edge, big), x, k, b, ek, eb)
                out.append((y, vjp(ct)))
        return out

    res = results(x, k, b, ek, eb)
    for (y, g), (y_want, g_want) in zip(res[:3], res[3:]):
        assert y.shape == y_want.shape
        assert rel_err(y, y_want) < 1e-12
        for a, w in zip(g, g_want):
            assert rel_err(a, w) < 1e-11


def _poly(n, deg, rng):
    t = np.arange(n) / max(n, 2) - 0.3
    return np.polyval(rng.standard_normal(deg + 1), t)


@pytest.mark.parametrize("ks,dilation,strides,lengths", [
    ((7,), (1,), (1,), (9,)), ((4, 5), (1, 2), (2, 1), (6, 12)), ((3, 2, 2), (2, 1, 1), (1, 1, 2), (8, 4, 5)),
    ((5, 3), (1, 1), (1, 1), (3, 2)),                   # short axes: 3 and 2 samples hold degrees 2 and 1
    ((3,), (3,), (1,), (7,)),                            # lattices of 3, 2 and 2 samples
])
def test_polynomial_exactness(x64, ks, dilation, strides, lengths):
    """Samples of a polynomial of degree < m per axis (m: the samples the ghost's lattice holds,
    at most k) give the unpadded convolution of that polynomial sampled on the extended grid."""
    rng = np.random.default_rng(7)
    degs = []
    for n, k, d in zip(lengths, ks, dilation):
        per_lattice = min(len(range(r, n, d)) for r in range(d))       # the fewest samples on any lattice
        degs.append(max(min(k, per_lattice) - 1, 0))
    pads = [widths(k, d) for k, d in zip(ks, dilation)]
    grid = np.ones(())
    for n, (lo, hi), deg in zip(lengths, pads, degs):
        t = np.arange(-lo, n + hi)
        grid = np.multiply.outer(grid, np.polyval(rng.standard_normal(deg + 1), t / 7))
    inner = grid[tuple(slice(lo, lo + n) for n, (lo, _) in zip(lengths, pads))]
    kernel = rng.standard_normal((*ks, 1, 2))
    got = conv(inner[None, ..., None], kernel, strides=strides, dilation=dilation)
    spec = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}[len(ks)]
    want = lax.conv_general_dilated(grid[None, ..., None], kernel, strides, "VALID", rhs_dilation=dilation,
                                    dimension_numbers=spec, precision=lax.Precision.HIGHEST)
    assert got.shape == want.shape == (1, *(-(-n // s) for n, s in zip(lengths, strides)), 2)
    assert rel_err(got, want) < 1e-9
    # ... and the truth's extension reproduces the polynomial grid itself (the test's own check)
    assert rel_err(extend(inner[None, ..., None], ks, dilation)[0, ..., 0], grid) < 1e-9
