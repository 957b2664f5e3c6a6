"""torch and JAX give the same outputs and gradients, through the public APIs only."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import diffconv.jax as djax  # noqa: E402
from diffconv.torch import functional as DF  # noqa: E402

_TORCH_CONV = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}
NAMES = ("x", "kernel", "bias", "edge_kernel", "edge_bias")


def _run_both(nd, k, *, dtype, batch, groups, bias, edge, bgrad, stride, dilation, seed=0, lengths=None):
    """Outputs and gradients (of ``sum(out * ct)``) from both frameworks, in torch layout."""
    rng = np.random.default_rng(seed)
    c_in, c_out = 2 * groups, 3 * groups
    ks = (k,) * nd if isinstance(k, int) else tuple(k)
    lengths = lengths or tuple(kk * dilation + 1 + a for a, kk in enumerate(ks))
    arrays = {
        "x": rng.standard_normal((batch, c_in, *lengths)),
        "kernel": rng.standard_normal((c_out, c_in // groups, *ks)),
        "bias": rng.standard_normal(c_out) if bias else None,
        "edge_kernel": rng.standard_normal((c_out, c_in // groups, *ks)) if edge else None,
        "edge_bias": rng.standard_normal(c_out) if edge and bias else None,
    }
    arrays = {n: None if a is None else a.astype(dtype) for n, a in arrays.items()}
    present = [n for n in NAMES if arrays[n] is not None]

    t = {n: torch.tensor(arrays[n], requires_grad=True) for n in present}
    out_t = _TORCH_CONV[nd](t["x"], t["kernel"], t.get("bias"), stride, dilation, groups,
                            edge_weight=t.get("edge_kernel"), edge_bias=t.get("edge_bias"), boundary_input_grad=bgrad)
    ct = rng.standard_normal(tuple(out_t.shape)).astype(dtype)
    out_t.backward(torch.tensor(ct))
    # torch leaves .grad None for a parameter no output used (all outputs at the border): zeros in JAX
    got_t = {"out": out_t.detach().numpy(),
             **{n: np.zeros_like(arrays[n]) if t[n].grad is None else t[n].grad.numpy() for n in present}}

    to_cl = lambda a: np.moveaxis(a, 1, -1)                                           # (N, C, *L) -> (N, *L, C)
    to_flax = lambda w: np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))             # (O, I, *k) -> (*k, I, O)
    from_flax = lambda w: np.transpose(w, (w.ndim - 1, w.ndim - 2) + tuple(range(w.ndim - 2)))
    conv_in = {n: jnp.asarray(to_cl(a) if n == "x" else to_flax(a) if "kernel" in n else a)
               for n, a in arrays.items() if a is not None}

    def f(p):
        return djax.conv(p["x"], p["kernel"], p.get("bias"), strides=stride, dilation=dilation,
                         feature_group_count=groups, edge_kernel=p.get("edge_kernel"), edge_bias=p.get("edge_bias"),
                         boundary_input_grad=bgrad)

    out_j, vjp = jax.vjp(jax.jit(f), conv_in)
    grads = vjp(jnp.asarray(to_cl(ct)))[0]
    got_j = {"out": np.moveaxis(np.asarray(out_j), -1, 1)}
    for n in present:
        g = np.asarray(grads[n])
        got_j[n] = np.moveaxis(g, -1, 1) if n == "x" else from_flax(g) if "kernel" in n else g
    return got_t, got_j


def _assert_same(got_t, got_j, tol):
    for name, want in got_t.items():
        err = np.abs(got_j[name] - want).max() / max(np.abs(want).max(), 1e-30)
        assert err < tol, f"{name}: relative difference {err:.2e} > {tol:.0e}"


# A covering subsample of kernel size 1..7 (odd and even) x groups x bias x edge x switch x batch
# x dims x stride 1..3 x dilation 1..3: every value of every option appears, most pairs too.
GRID = [
    # nd, k, batch, groups, bias, edge, bgrad, stride, dilation
    (1, 1, 1, 1, True, False, True, 1, 1),
    (1, 2, 2, 2, False, True, False, 3, 1),
    (1, 7, 1, 1, True, True, True, 2, 2),
    (1, 6, 2, 2, True, False, False, 1, 3),
    (2, 3, 2, 1, True, True, False, 1, 1),
    (2, 4, 1, 2, False, False, True, 2, 1),
    (2, (5, 2), 2, 1, True, False, True, 3, 2),
    (2, 1, 1, 2, True, True, True, 1, 1),
    (3, 3, 1, 1, True, False, True, 2, 1),
    (3, (2, 3, 1), 2, 2, True, True, False, 1, 1),
]


@pytest.mark.parametrize("nd,k,batch,groups,bias,edge,bgrad,stride,dilation", GRID)
def test_float64_grid(x64, nd, k, batch, groups, bias, edge, bgrad, stride, dilation):
    got_t, got_j = _run_both(nd, k, dtype="float64", batch=batch, groups=groups, bias=bias, edge=edge,
                             bgrad=bgrad, stride=stride, dilation=dilation)
    _assert_same(got_t, got_j, 1e-10)


@pytest.mark.parametrize("k,groups,lengths", [(3, 1, (64, 70)), (5, 2, (72, 64)), (7, 1, (64, 64))])
def test_float64_large_maps(x64, k, groups, lengths):
    """Maps of 64 and more, where torch convolves the ghost ring as four bands."""
    got_t, got_j = _run_both(2, k, dtype="float64", batch=2, groups=groups, bias=True, edge=False, bgrad=True,
                             stride=1, dilation=1, lengths=lengths)
    _assert_same(got_t, got_j, 1e-10)


@pytest.mark.parametrize("nd,k,edge,bgrad,stride", [(1, 5, True, False, 2), (2, 3, False, True, 1), (2, 4, True, True, 2)])
def test_float32(nd, k, edge, bgrad, stride):
    got_t, got_j = _run_both(nd, k, dtype="float32", batch=2, groups=1, bias=True, edge=edge, bgrad=bgrad,
                             stride=stride, dilation=1)
    _assert_same(got_t, got_j, 1e-5)


# DIFFCONV_FUZZ_EXAMPLES=200 pytest tests/parity -k fuzz   runs the long version by hand.
@settings(max_examples=int(os.environ.get("DIFFCONV_FUZZ_EXAMPLES", "3")), deadline=None, derandomize=True)
@given(
    nd=st.integers(1, 2), k=st.integers(1, 6), batch=st.integers(1, 2), groups=st.integers(1, 2),
    bias=st.booleans(), edge=st.booleans(), bgrad=st.booleans(), stride=st.integers(1, 3), dilation=st.integers(1, 2),
)
def test_fuzz(nd, k, batch, groups, bias, edge, bgrad, stride, dilation):
    with jax.enable_x64(True):
        got_t, got_j = _run_both(nd, k, dtype="float64", batch=batch, groups=groups, bias=bias, edge=edge,
                                 bgrad=bgrad, stride=stride, dilation=dilation, seed=k + 10 * nd)
    _assert_same(got_t, got_j, 1e-10)
