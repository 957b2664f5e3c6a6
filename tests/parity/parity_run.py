"""Run one convolution through both frameworks' public APIs: outputs and gradients in torch layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import diffconv.jax as djax  # noqa: E402
from diffconv.torch import functional as DF  # noqa: E402

TORCH_CONV = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}
NAMES = ("x", "kernel", "bias", "edge_kernel", "edge_bias")


def form_ran(y) -> str:
    """The torch form that produced ``y``, read off its autograd node (``"padded"`` or not)."""
    return "padded" if type(y.grad_fn).__name__ == "GhostConvBackward" else "other"


def run_both(nd, k, *, dtype, batch, groups, bias, edge, bgrad, stride, dilation, seed=0, lengths=None,
             channels=(2, 3), form=None):
    """Outputs and gradients (of ``sum(out * ct)``) from both frameworks, in torch layout.
    ``channels``: per group, in and out; ``form``: the torch form these inputs must select."""
    rng = np.random.default_rng(seed)
    c_in, c_out = channels[0] * groups, channels[1] * groups
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
    out_t = TORCH_CONV[nd](t["x"], t["kernel"], t.get("bias"), stride, dilation, groups,
                            edge_weight=t.get("edge_kernel"), edge_bias=t.get("edge_bias"), boundary_input_grad=bgrad)
    if form is not None:
        assert form_ran(out_t) == form
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


def assert_same(got_t, got_j, tol):
    for name, want in got_t.items():
        err = np.abs(got_j[name] - want).max() / max(np.abs(want).max(), 1e-30)
        assert err < tol, f"{name}: relative difference {err:.2e} > {tol:.0e}"


