"""Bad arguments raise TypeError/ValueError naming the argument; diffconv.jax.lagrange_pad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffconv.jax import conv, lagrange_pad

import oracle
from jaxtest_helpers import extension_matrix
from tolerances import eps

X = np.zeros((2, 8, 9, 4), np.float32)
K = np.zeros((3, 3, 2, 6), np.float32)
B = np.zeros(6, np.float32)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(x=X.astype(np.int32)), TypeError, r"x must have a floating dtype .* got int32"),
    (dict(kernel=K.astype(np.float16)), TypeError, r"kernel dtype float16 does not match x dtype float32"),
    (dict(bias=B.astype(np.float16)), TypeError, r"bias dtype float16 does not match x dtype float32"),
    (dict(x=[[1.0]]), TypeError, r"x must be a jax or numpy array, got list"),
    (dict(x=X[0, 0]), ValueError, r"x must have rank 3 or 4 for a 2-d convolution, got rank 2"),
    (dict(kernel=K[0, 0]), ValueError, r"kernel must have rank 3, 4 or 5 .* got shape \(2, 6\)"),
    (dict(feature_group_count=3), ValueError, r"x channels \(4\) must be divisible by feature_group_count \(3\)"),
    (dict(feature_group_count=0), ValueError, r"feature_group_count must be an int >= 1, got 0"),
    (dict(feature_group_count=1), ValueError, r"kernel has 2 input channels per group, but x has 4 channels"),
    (dict(bias=B[:5]), ValueError, r"bias must have shape \(6,\), got \(5,\)"),
    (dict(edge_kernel=K[:2]), ValueError, r"edge_kernel must have the same shape as kernel"),
    (dict(edge_bias=np.zeros(3, np.float32)), ValueError, r"edge_bias must have shape \(6,\), got \(3,\)"),
    (dict(strides=0), ValueError, r"strides must be >= 1, got 0"),
    (dict(strides=1.5), TypeError, r"strides must be an int or a sequence of 2 ints, got 1.5"),
    (dict(strides=(1, 2.0)), TypeError, r"strides must contain ints, got \(1, 2.0\)"),
    (dict(dilation=(1, 2, 3)), ValueError, r"dilation must be an int or a sequence of 2 ints, got \(1, 2, 3\)"),
    (dict(dilation=(1, 0)), ValueError, r"dilation must be >= 1, got \(1, 0\)"),
    (dict(x=X[:, :0]), ValueError, r"x has a spatial axis of length 0"),      # short axes work; empty ones do not
    (dict(boundary_input_grad="no"), TypeError, r"boundary_input_grad must be a bool, got 'no'"),
    (dict(precision="fastest-ever"), ValueError, r"precision must be None, a jax.lax.Precision"),
])
def test_conv_rejects(kwargs, exc, match):
    args = dict(x=X, kernel=K, bias=B, feature_group_count=2)
    args.update(kwargs)
    x, kernel, bias = args.pop("x"), args.pop("kernel"), args.pop("bias")
    with pytest.raises(exc, match=match):
        conv(x, kernel, bias, **args)


def _oracle_pad(x, widths, kernel_size, dilation=1, order=None):
    """oracle.pad on an array without batch/channel axes."""
    return oracle.pad(np.asarray(x, np.float64)[None, None], widths, "diff", kernel_size, dilation, order)[0, 0]


def test_lagrange_pad_matches_oracle_and_polynomials(x64):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 7, 3))
    y = jax.jit(lambda x: lagrange_pad(x, ((1, 2), (0, 0), (0, 0))))(x)
    assert y.shape == (9, 7, 3)
    np.testing.assert_array_equal(y[1:7], x)                 # data untouched, other axes untouched
    # default kernel_size (1+2)//1+1 = 4 on axis 0; ghosts by the oracle's exact weights
    want = _oracle_pad(x, [(1, 2), (0, 0), (0, 0)], (4, 1, 1))
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-13 * np.abs(want).max())
    # the worked weights, written out: the ghost one step out of a k=4 axis is 4u0 - 6u1 + 4u2 - u3
    np.testing.assert_allclose(y[0], 4 * x[0] - 6 * x[1] + 4 * x[2] - x[3], rtol=1e-13, atol=1e-13)

    # random data, two axes, dilation 2, kernel 3: the ghosts of each lattice
    x2 = rng.standard_normal((7, 8))
    y2 = lagrange_pad(x2, ((2, 2), (1, 3)), kernel_size=3, dilation=2)
    want2 = _oracle_pad(x2, [(2, 2), (1, 3)], 3, 2)
    np.testing.assert_allclose(y2, want2, rtol=0, atol=1e-13 * np.abs(want2).max())

    # Quadratic data, kernel_size 3, dilation 2: ghosts continue the polynomial on every axis.
    t = np.arange(-3, 10)
    poly = lambda u: 0.5 * u ** 2 - u + 2
    grid = poly(t)[:, None] * poly(t)[None, :]
    inner = grid[3:9, 3:9]
    padded = lagrange_pad(inner, 3, kernel_size=3, dilation=2)
    np.testing.assert_allclose(padded, grid[0:12, 0:12], rtol=1e-11)


def test_lagrange_pad_low_precision_values():
    """bfloat16/float16 in, same dtype out, ghosts computed in >= float32: within one rounding of
    the exact ghosts of the same (rounded) operands."""
    rng = np.random.default_rng(3)
    for dtype in (jnp.bfloat16, jnp.float16):
        x = jnp.asarray(rng.uniform(-1, 1, (6, 6)), dtype)
        y = lagrange_pad(x, ((1, 1), (1, 1)))
        assert y.dtype == dtype
        want = _oracle_pad(np.asarray(x, np.float32), [(1, 1), (1, 1)], 3)
        # one rounding to dtype, plus float32 arithmetic (negligible at this size)
        np.testing.assert_allclose(np.asarray(y, np.float64), want, rtol=eps(dtype), atol=1e-6 * np.abs(want).max())


def test_lagrange_pad_on_a_short_axis_follows_the_short_axis_rule(x64):
    """Two samples, k = 3: degree 1 through both (docs/design.md, short axes), written out here."""
    y = lagrange_pad(np.array([1.0, 3.0]), (2, 3), kernel_size=3)
    np.testing.assert_array_equal(np.asarray(y), [-3.0, -1.0, 1.0, 3.0, 5.0, 7.0, 9.0])


@pytest.mark.parametrize("pad,kwargs,exc,match", [
    (((1, 1),) * 3, {}, ValueError, r"pad_width must be an int, a \(before, after\) pair or 2 such pairs"),
    (-1, {}, ValueError, r"pad_width must contain ints >= 0"),
    (1.5, {}, TypeError, r"pad_width must contain ints"),
    (((1, 1), (0, 0)), dict(kernel_size=(1, 3)), ValueError, r"axis 0 needs kernel_size >= 2"),
    (((0, 0), (2, 2)), {}, ValueError, r"axis 1 of x has length 0"),
])
def test_lagrange_pad_rejects(pad, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        lagrange_pad(np.zeros((5, 0) if "length 0" in match else (5, 6)), pad, **kwargs)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        lagrange_pad(np.zeros((5, 6), np.int64), 1)
    with pytest.raises(ValueError, match="axis 1 of x has length 0"):
        lagrange_pad(np.zeros((5, 0)), 1)


@pytest.mark.parametrize("n,pad,k,d", [(1, (2, 3), 4, 1), (2, (4, 4), None, 1), (3, (1, 2), 7, 2), (5, (3, 0), 3, 3)])
def test_lagrange_pad_on_short_axes_matches_the_truth(x64, n, pad, k, d):
    """Axes shorter than k*d: the ghosts of the exact-fraction truth (lower degree, edge samples
    on empty lattices); the other axis is left alone."""
    x = np.random.default_rng(n).standard_normal((n, 3))
    kk = (pad[0] + pad[1]) // d + 1 if k is None else k
    got = jax.jit(lambda x: lagrange_pad(x, (pad, (0, 0)), kernel_size=k, dilation=d))(x)
    want = extension_matrix(n, kk, d, *pad) @ x
    assert got.shape == (n + sum(pad), 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
