"""diffconv.jax.conv: strides, the boundary switch, JAX transformations, gradients, dtypes, edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from diffconv.jax import conv

from jaxtest_helpers import boundary_mask, oracle_cl, rel_err, truth_conv

RNG = np.random.default_rng(0)
X2 = RNG.standard_normal((2, 11, 13, 4)).astype(np.float32)
K2 = (RNG.standard_normal((3, 4, 4, 6)) * 0.3).astype(np.float32)
B2 = RNG.standard_normal(6).astype(np.float32)


def test_strided_is_stride1_sampled():
    @jax.jit
    def pair(x, k, b):
        return conv(x, k, b), conv(x, k, b, strides=(2, 3))

    full, strided = pair(X2, K2, B2)
    assert full.shape == (2, 11, 13, 6)
    assert strided.shape == (2, 6, 5, 6)                       # ceil(11/2), ceil(13/3)
    np.testing.assert_allclose(strided, full[:, ::2, ::3], rtol=1e-5, atol=1e-5)


def test_boundary_input_grad_off(x64):
    x, k, b = X2.astype(np.float64), K2.astype(np.float64), B2.astype(np.float64)
    mask = boundary_mask((11, 13), (3, 4), (1, 1), (1, 1))[None, ..., None]
    ct = RNG.standard_normal((2, 11, 13, 6))

    @jax.jit
    def grads(x, k, b):
        def loss(x, k, b, flag, weights):
            return (conv(x, k, b, boundary_input_grad=flag) * weights).sum()
        g = jax.grad(loss, argnums=(0, 1, 2))
        return (g(x, k, b, False, ct * mask), g(x, k, b, False, ct * ~mask), g(x, k, b, True, ct * ~mask),
                g(x, k, b, True, ct * mask), conv(x, k, b, boundary_input_grad=False), conv(x, k, b))

    off_bnd, off_int, on_int, on_bnd, y_off, y_on = grads(x, k, b)
    assert np.all(off_bnd[0] == 0)                              # boundary outputs pass nothing to x
    assert np.abs(on_bnd[0]).max() > 0.1                        # ... though they would with the switch on
    np.testing.assert_allclose(off_int[0], on_int[0], rtol=1e-12, atol=1e-12)   # interior untouched
    np.testing.assert_allclose(off_bnd[1], on_bnd[1], rtol=1e-12, atol=1e-12)   # kernel still learns
    np.testing.assert_allclose(off_bnd[2], on_bnd[2], rtol=1e-12, atol=1e-12)
    assert np.abs(off_bnd[1]).max() > 0.1
    np.testing.assert_allclose(y_off, y_on, rtol=1e-12, atol=1e-12)   # forward values unchanged


def test_jit_vmap_checkpoint_and_no_retrace():
    traces = []

    def f(x, k, b):
        traces.append(1)
        return conv(x, k, b)

    jf = jax.jit(f)
    y = jf(X2, K2, B2)
    jf(X2 + 1, K2, B2)
    jf(jnp.asarray(X2 * 2), K2 * 2, B2)
    assert len(traces) == 1                                      # same shapes: traced once
    assert rel_err(y, oracle_cl(X2, K2, B2)) < 1e-5

    per_example = jax.jit(jax.vmap(lambda x: conv(x, K2, B2)))(X2)   # unbatched (H, W, C) under vmap
    assert rel_err(per_example, y) < 1e-5

    x1, k1 = X2[:1, :, 0, :], K2[:, 0]                            # 1-d keeps the gradient compiles small
    loss = lambda x, k: (conv(x, k) ** 2).sum()
    g_plain, g_ckpt = jax.jit(lambda x, k: (jax.grad(loss, (0, 1))(x, k), jax.grad(jax.checkpoint(loss), (0, 1))(x, k)))(x1, k1)
    for a, b in zip(g_plain, g_ckpt):
        assert rel_err(a, b) < 1e-6


def test_check_grads_second_order(x64):
    """Forward and reverse mode, to second order: plain, edge kernel, strided, dilated, boundary switch."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 7, 2))
    k, ek = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))
    b, eb = rng.standard_normal(2), rng.standard_normal(2)

    def variants(x, k, b, ek, eb):      # one function, so the derivative programs compile once
        outs = (conv(x, k, b), conv(x, k, b, edge_kernel=ek, edge_bias=eb), conv(x, k, b, strides=2, dilation=2))
        return jnp.concatenate([o.ravel() for o in outs])

    check_grads(variants, (x, k, b, ek, eb), order=2, modes=("fwd", "rev"))
    # Switched off, the boundary outputs' x-dependence is hidden from AD on purpose: check the weights.
    check_grads(lambda k, b: conv(x, k, b, boundary_input_grad=False), (k, b), order=2, modes=("fwd", "rev"))


def test_gradients_equal_the_truths_and_second_order_holds_on_short_axes(x64):
    """A 2x1 map with a 5x3 kernel (axes far shorter than k): forward and reverse mode to second
    order, and first-order gradients equal to those of the exact-fraction truth."""
    rng = np.random.default_rng(5)
    x, k = rng.standard_normal((1, 2, 1, 2)), rng.standard_normal((5, 3, 2, 2))
    check_grads(lambda x, k: conv(x, k), (x, k), order=2, modes=("fwd", "rev"))
    ct = rng.standard_normal((1, 2, 1, 2))
    got = jax.vjp(lambda x, k: conv(x, k), x, k)[1](ct)
    want = jax.vjp(lambda x, k: truth_conv(x, k), x, k)[1](ct)
    for a, b in zip(got, want):
        assert rel_err(a, b) < 1e-12


@pytest.mark.parametrize("dtype,tol", [(jnp.bfloat16, 0.05), (jnp.float16, 0.01)])
def test_low_precision(dtype, tol):
    t = np.linspace(0, 1, 16)
    smooth = (np.sin(3 * t)[:, None] * np.cos(2 * t)[None, :])[None, :, :, None] * np.ones((1, 1, 1, 2))
    k = (RNG.standard_normal((3, 3, 2, 3)) * 0.2)      # k=5 amplifies the input's rounding more: docs/jax.md
    y32, y = jax.jit(lambda a, b, c, d: (conv(a, b), conv(c, d)))(
        smooth.astype(np.float32), k.astype(np.float32), jnp.asarray(smooth, dtype), jnp.asarray(k, dtype))
    assert y.dtype == dtype
    assert rel_err(y.astype(np.float32), y32) < tol


def test_deterministic_nan_and_empty_batch():
    f = jax.jit(lambda x: conv(x, K2, B2))
    np.testing.assert_array_equal(np.asarray(f(X2)), np.asarray(f(X2)))

    x = X2.copy()
    x[0, 5, 6, 1] = np.nan
    y = np.asarray(f(x))
    assert np.isnan(y[0, 4:7, 4:8]).all()             # outputs whose 3x4 window holds the NaN
    assert np.isfinite(y[1]).all()                    # the other example is unaffected

    empty = conv(np.zeros((0, 11, 13, 4), np.float32), K2, B2)
    assert empty.shape == (0, 11, 13, 6)


def test_unbatched_matches_batched():
    one, both = jax.jit(lambda a, b: (conv(a, K2, B2), conv(b, K2, B2)))(X2[1], X2)
    assert one.shape == (11, 13, 6)
    assert rel_err(one, both[1]) < 1e-5
