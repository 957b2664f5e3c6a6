"""diffconv.jax.conv against the transformed-kernel reference and against polynomial exactness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from diffconv.jax import conv
from diffconv.plan import axis_plan

from jaxtest_helpers import reference_cl, rel_err

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
def test_matches_reference(x64, lengths, ks, strides, dilation, groups):
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
    want_plain = reference_cl(x, k, b, strides, dilation, groups)
    want_edge = reference_cl(x, k, None, strides, dilation, groups, ek, eb)
    assert plain.shape == want_plain.shape
    assert plain.dtype == jnp.float64
    assert rel_err(plain, want_plain) < 1e-12
    assert rel_err(edge, want_edge) < 1e-12


def _poly_grid(lengths, degrees, rng):
    """Separable polynomial of the given degree per axis on integer points ``0..n-1``."""
    out = np.ones(())
    for n, deg in zip(lengths, degrees):
        t = np.arange(n) / n - 0.3
        out = np.multiply.outer(out, np.polyval(rng.standard_normal(deg + 1), t))
    return out


@pytest.mark.parametrize("ks,dilation,strides", [((7,), (1,), (1,)), ((4, 5), (1, 2), (2, 1)), ((3, 2, 2), (2, 1, 1), (1, 1, 2))])
def test_polynomial_exactness(x64, ks, dilation, strides):
    """Data of degree < k per axis: equals the VALID conv of the polynomial on the extended grid."""
    rng = np.random.default_rng(7)
    lengths = tuple(k * d + 2 for k, d in zip(ks, dilation))
    plans = [axis_plan(n, k, d) for n, k, d in zip(lengths, ks, dilation)]
    ext = _poly_grid([n + p.before + p.after for n, p in zip(lengths, plans)], [k - 1 for k in ks], rng)
    inner = ext[tuple(slice(p.before, p.before + n) for n, p in zip(lengths, plans))]
    kernel = rng.standard_normal((*ks, 1, 2))
    got = conv(inner[None, ..., None], kernel, strides=strides, dilation=dilation)
    spec = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}[len(ks)]
    want = lax.conv_general_dilated(ext[None, ..., None], kernel, strides, "VALID", rhs_dilation=dilation,
                                    dimension_numbers=spec, precision=lax.Precision.HIGHEST)
    assert got.shape == want.shape == (1, *(-(-n // s) for n, s in zip(lengths, strides)), 2)
    assert rel_err(got, want) < 1e-9
