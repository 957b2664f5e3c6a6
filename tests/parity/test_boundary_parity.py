"""torch vs JAX with ``boundary`` per axis and side and the ghost ``order``, through the public
APIs: outputs and gradients in float64 (convolutions with the edge kernel and the switch,
transposed convolutions, modules)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from diffconv import interop  # noqa: E402
from diffconv.jax import conv, conv_transpose  # noqa: E402
from diffconv.jax import linen as dlinen  # noqa: E402
from diffconv.torch import DiffConv2d, DiffConvTranspose2d  # noqa: E402
from diffconv.torch import functional as TF  # noqa: E402

CONV = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}
TRANSPOSE = {1: TF.conv_transpose1d, 2: TF.conv_transpose2d, 3: TF.conv_transpose3d}
TOL = 1e-10


def _cl(a):
    return np.moveaxis(np.asarray(a), 1, -1)


def _cf(a):
    return np.moveaxis(np.asarray(a), -1, 1)


def _close(got, want):
    want = np.asarray(want)
    err = np.abs(np.asarray(got) - want).max() / max(np.abs(want).max(), 1e-30)
    assert err < TOL, f"relative difference {err:.2e}"


CONV_CASES = [  # lengths, k, stride, dilation, groups, boundary, order, edge, switch
    ((11,), 5, 1, 1, 1, (("diff", "zeros"),), 2, True, True),
    ((10,), 4, 2, 2, 2, "reflect", None, False, False),
    ((4,), 6, 1, 1, 1, (("replicate", "diff"),), 3, True, False),                 # short axis
    ((9, 8), (3, 3), 1, 1, 1, ("diff", "circular"), None, True, False),          # a weather grid
    ((8, 9), (5, 4), (2, 1), 1, 2, (("reflect", "zeros"), ("replicate", "diff")), (1, None), True, True),
    ((7, 10), (3, 5), 1, (2, 1), 1, ("circular", ("diff", "reflect")), (0, 3), False, True),
    ((5, 4, 6), (3, 2, 3), 1, 1, 1, ("circular", ("zeros", "diff"), "replicate"), (None, 1, 2), True, False),
]


@pytest.mark.parametrize("lengths,k,s,d,groups,boundary,order,edge,switch", CONV_CASES)
def test_conv_outputs_and_gradients_agree(x64, lengths, k, s, d, groups, boundary, order, edge, switch):
    nd = len(lengths)
    ks = (k,) * nd if isinstance(k, int) else k
    rng = np.random.default_rng(sum(lengths) + sum(ks))
    arrays = {"x": rng.standard_normal((2, 2 * groups, *lengths)), "w": rng.standard_normal((3 * groups, 2, *ks)),
              "b": rng.standard_normal(3 * groups)}
    if edge:
        arrays.update(ew=rng.standard_normal(arrays["w"].shape), eb=rng.standard_normal(3 * groups))
    t = {n: torch.tensor(a, requires_grad=True) for n, a in arrays.items()}
    yt = CONV[nd](t["x"], t["w"], t["b"], s, d, groups, edge_weight=t.get("ew"), edge_bias=t.get("eb"),
                  boundary_input_grad=not switch, boundary=boundary, order=order)
    cot = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(cot))

    to_flax = interop.torch_kernel_to_flax
    j = {n: jnp.asarray(_cl(a) if n == "x" else to_flax(a) if n in ("w", "ew") else a) for n, a in arrays.items()}

    def f(p):
        return conv(p["x"], p["w"], p["b"], strides=s, dilation=d, feature_group_count=groups,
                    edge_kernel=p.get("ew"), edge_bias=p.get("eb"), boundary_input_grad=not switch,
                    boundary=boundary, order=order)

    yj, vjp = jax.vjp(f, j)
    grads = vjp(jnp.asarray(_cl(cot)))[0]
    _close(_cf(yj), yt.detach().numpy())
    for n in arrays:
        g = np.asarray(grads[n])
        g = _cf(g) if n == "x" else interop.flax_kernel_to_torch(g) if n in ("w", "ew") else g
        _close(g, t[n].grad.numpy())


TRANSPOSE_CASES = [  # lengths, k, stride, padding, output_padding, dilation, groups, boundary, order
    ((9,), (5,), 3, 2, 1, 1, 2, (("reflect", "diff"),), 1),
    ((3,), (4,), 1, 1, 0, 2, 1, "replicate", 2),                                  # short axis
    ((6, 5), (4, 4), 2, 1, 0, 1, 1, ("circular", ("zeros", "diff")), (None, 0)),
    ((5, 7), (3, 3), 2, 1, 1, 1, 2, (("diff", "replicate"), "reflect"), 0),
    ((3, 4, 2), (3, 2, 4), 2, (1, 0, 1), (1, 1, 0), 1, 1, ("diff", "circular", ("zeros", "diff")), (1, 0, 1)),
]


@pytest.mark.parametrize("lengths,k,s,p,op,d,groups,boundary,order", TRANSPOSE_CASES)
def test_conv_transpose_outputs_and_gradients_agree(x64, lengths, k, s, p, op, d, groups, boundary, order):
    nd = len(lengths)
    rng = np.random.default_rng(sum(lengths) * 7 + k[0])
    x, w, b = rng.standard_normal((2, 2 * groups, *lengths)), rng.standard_normal((2 * groups, 3, *k)), \
        rng.standard_normal(3 * groups)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = TRANSPOSE[nd](xt, wt, bt, s, p, op, groups, d, boundary=boundary, order=order)
    cot = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(cot))

    def f(x, kernel, bias):
        return conv_transpose(x, kernel, bias, strides=s, padding=p, output_padding=op, dilation=d,
                              feature_group_count=groups, boundary=boundary, order=order)

    yj, vjp = jax.vjp(f, jnp.asarray(_cl(x)), jnp.asarray(interop.torch_transpose_weight_to_jax(w)), jnp.asarray(b))
    gx, gk, gb = vjp(jnp.asarray(_cl(cot)))
    _close(_cf(yj), yt.detach().numpy())
    _close(_cf(gx), xt.grad.numpy())
    _close(interop.jax_transpose_kernel_to_torch(gk), wt.grad.numpy())
    _close(gb, bt.grad.numpy())


def test_modules_agree(x64):
    """``DiffConv2d`` and linen ``DiffConv`` (edge kernel, mixed spec, orders) with one state dict;
    ``DiffConvTranspose2d`` and the JAX functional with one weight."""
    boundary, order = (("zeros", "diff"), "circular"), (1, None)
    t = DiffConv2d(3, 4, (5, 3), edge_kernel=True, boundary=boundary, order=order).double()
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 8))
    params = interop.torch_to_flax_params(t.state_dict())
    y = dlinen.DiffConv(4, (5, 3), edge_kernel=True, boundary=boundary, order=order).apply({"params": params}, _cl(x))
    _close(_cf(y), t(torch.tensor(x)).detach().numpy())

    boundary = ("reflect", ("replicate", "diff"))
    tt = DiffConvTranspose2d(3, 2, 4, stride=2, padding=1, boundary=boundary, order=0).double()
    yj = conv_transpose(_cl(x), interop.torch_transpose_weight_to_jax(tt.weight.detach().numpy()),
                        tt.bias.detach().numpy(), strides=2, padding=1, boundary=boundary, order=0)
    _close(_cf(yj), tt(torch.tensor(x)).detach().numpy())
