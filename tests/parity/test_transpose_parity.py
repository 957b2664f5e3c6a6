"""DiffConvTranspose: PyTorch vs JAX/Flax through the public APIs (outputs and gradients, float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from diffconv import interop
from diffconv.jax import conv_transpose
from diffconv.jax import linen as dlinen
from diffconv.jax import nnx as dnnx
from diffconv.lab.models.decoder import flax_decoder, torch_decoder
from diffconv.torch import DiffConvTranspose2d
from diffconv.torch.functional import conv_transpose1d, conv_transpose2d, conv_transpose3d

TORCH = {1: conv_transpose1d, 2: conv_transpose2d, 3: conv_transpose3d}

CASES = [  # (L, k, stride, padding, output_padding, dilation, groups)
    ((9,), (5,), 3, 2, 1, 1, 2),
    ((2,), (4,), 1, 1, 0, 2, 1),                                 # short axis
    ((6, 5), (4, 4), 2, 1, 0, 1, 1),
    ((5, 7), (3, 3), 2, 1, 1, 1, 2),
    ((4, 3), (5, 2), (1, 3), (2, 0), (0, 2), (2, 1), 1),
    ((3, 4, 2), (3, 2, 4), 2, (1, 0, 1), (1, 1, 0), 1, 1),
]


@pytest.mark.parametrize("case", CASES)
def test_functional_outputs_and_gradients_agree(case, x64):
    L, k, s, p, op, d, groups = case
    nd = len(L)
    rng = np.random.default_rng(len(L) * 10 + k[0])
    x = rng.standard_normal((2, 2 * groups) + L)
    w = rng.standard_normal((2 * groups, 3) + k)
    b = rng.standard_normal(3 * groups)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = TORCH[nd](xt, wt, bt, s, p, op, groups, d)
    cot = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(cot))

    def jax_fn(x, kernel, bias):
        return conv_transpose(x, kernel, bias, strides=s, padding=p, output_padding=op, dilation=d,
                              feature_group_count=groups)

    xj = jnp.asarray(np.moveaxis(x, 1, -1))
    kj = jnp.asarray(interop.torch_transpose_weight_to_jax(w))
    yj, vjp = jax.vjp(jax_fn, xj, kj, jnp.asarray(b))
    np.testing.assert_allclose(np.moveaxis(np.asarray(yj), -1, 1), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    gx, gk, gb = vjp(jnp.asarray(np.moveaxis(cot, 1, -1)))
    np.testing.assert_allclose(np.moveaxis(np.asarray(gx), -1, 1), xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(interop.jax_transpose_kernel_to_torch(gk), wt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(gb), bt.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("transpose_kernel", [False, True])
@pytest.mark.parametrize("k, s, p, op, d", [(4, 2, 1, 0, 1), (3, 2, 1, 1, 2)])
def test_torch_module_and_flax_layers_agree(k, s, p, op, d, transpose_kernel, x64):
    torch.manual_seed(0)
    module = DiffConvTranspose2d(3, 4, k, s, p, op, dilation=d).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    y = module(x)
    cot = torch.randn(y.shape, dtype=torch.float64)
    y.backward(cot)
    padding = interop.torch_transpose_padding_to_flax((k, k), p, op, d)
    layer = dlinen.DiffConvTranspose(4, (k, k), strides=s, padding=padding, kernel_dilation=d,
                                     transpose_kernel=transpose_kernel, param_dtype=jnp.float64)
    params = {"params": interop.torch_transpose_to_flax_params(module.state_dict(), transpose_kernel=transpose_kernel)}
    xj = jnp.asarray(x.detach().numpy().transpose(0, 2, 3, 1))
    yj, vjp = jax.vjp(lambda prm, xx: layer.apply(prm, xx), params, xj)
    np.testing.assert_allclose(np.asarray(yj).transpose(0, 3, 1, 2), y.detach().numpy(), rtol=1e-10, atol=1e-10)
    g_params, gx = vjp(jnp.asarray(cot.numpy().transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(np.asarray(gx).transpose(0, 3, 1, 2), x.grad.numpy(), rtol=1e-10, atol=1e-10)
    g_torch = interop.flax_transpose_to_torch_state_dict(g_params, transpose_kernel=transpose_kernel)
    np.testing.assert_allclose(g_torch["weight"].numpy(), module.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g_torch["bias"].numpy(), module.bias.grad.numpy(), rtol=1e-10, atol=1e-10)

    m = dnnx.DiffConvTranspose(3, 4, (k, k), s, padding=padding, kernel_dilation=d, transpose_kernel=transpose_kernel,
                               param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    interop.load_torch_into_nnx(m, module.state_dict())
    np.testing.assert_allclose(np.asarray(m(xj)).transpose(0, 3, 1, 2), y.detach().numpy(), rtol=1e-10, atol=1e-10)
    back = interop.nnx_to_torch_state_dict(m)
    assert torch.equal(back["weight"], module.weight.detach()) and torch.equal(back["bias"], module.bias.detach())


def test_decoders_agree(x64):
    """The torch decoder with DiffConvTranspose2d and the Flax one with DiffConvTranspose, same weights."""
    torch.manual_seed(1)
    channels = (6, 4)
    tmodel = torch_decoder(channels, 2, transposed=DiffConvTranspose2d).double()
    fmodel = flax_decoder(channels, 2, transposed=dlinen.DiffConvTranspose)
    x = torch.randn(1, 6, 5, 4, dtype=torch.float64)
    xj = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
    shapes = jax.eval_shape(fmodel.init, jax.random.key(0), xj)["params"]
    convs = [m for m in tmodel if isinstance(m, DiffConvTranspose2d)]
    params = {name: interop.torch_transpose_to_flax_params(conv.state_dict())
              for name, conv in zip(sorted(shapes, key=lambda n: int(n.split("_")[-1])), convs)}
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(lambda a: a.shape, shapes)
    y = fmodel.apply({"params": params}, xj)
    np.testing.assert_allclose(np.asarray(y).transpose(0, 3, 1, 2), tmodel(x).detach().numpy(), rtol=1e-10, atol=1e-10)


def test_interop_round_trips():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 2, 5)).astype(np.float32)
    np.testing.assert_array_equal(interop.jax_transpose_kernel_to_torch(interop.torch_transpose_weight_to_jax(w)), w)
    assert interop.torch_transpose_weight_to_jax(w).shape == (2, 5, 4, 3)
    for tk in (False, True):
        sd = {"weight": torch.tensor(w), "bias": torch.ones(3)}
        params = interop.torch_transpose_to_flax_params(sd, transpose_kernel=tk)
        assert params["kernel"].shape == ((2, 5, 3, 4) if tk else (2, 5, 4, 3))
        back = interop.flax_transpose_to_torch_state_dict(params, transpose_kernel=tk)
        assert torch.equal(back["weight"], sd["weight"]) and torch.equal(back["bias"], sd["bias"])
    assert interop.torch_transpose_padding_to_flax((4, 3), (1, 0), (0, 1), (1, 2)) == [(2, 2), (4, 5)]
    with pytest.raises(ValueError, match="weight"):
        interop.torch_transpose_weight_to_jax(np.ones((2, 2)))
    with pytest.raises(ValueError, match="weight"):
        interop.torch_transpose_to_flax_params({"bias": torch.ones(2)})
