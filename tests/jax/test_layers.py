"""Flax linen / NNX DiffConv layers, nnx.convert, and the torch <-> Flax weight interop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from diffconv.interop import flax_to_torch_state_dict, torch_to_flax_params
from diffconv.jax import conv
from diffconv.jax import linen as dlinen
from diffconv.jax import nnx as dnnx

from jaxtest_helpers import rel_err

X = np.random.default_rng(0).standard_normal((2, 10, 9, 4)).astype(np.float32)


class LinenNet(nn.Module):
    conv: type = nn.Conv

    @nn.compact
    def __call__(self, x):
        x = nn.relu(self.conv(8, (3, 3))(x))                       # auto-named Conv_0
        return self.conv(2, (2, 5), strides=2, feature_group_count=2, name="c2")(x)


def test_linen_swap_keeps_parameter_tree_and_matches_functional():
    params = jax.jit(LinenNet().init)(jax.random.key(0), X)
    swapped = LinenNet(conv=dlinen.DiffConv)
    own = jax.eval_shape(swapped.init, jax.random.key(0), X)
    assert jax.tree.map(jnp.shape, own) == jax.tree.map(jnp.shape, params)
    p = params["params"]

    assert set(p) == {"Conv_0", "c2"}

    @jax.jit
    def both(params, x):
        h = jax.nn.relu(conv(x, p["Conv_0"]["kernel"], p["Conv_0"]["bias"]))
        return swapped.apply(params, x), conv(h, p["c2"]["kernel"], p["c2"]["bias"], strides=2, feature_group_count=2)

    y, want = both(params, X)
    assert y.shape == (2, 5, 5, 2)
    assert rel_err(y, want) < 1e-5


def test_linen_edge_params_and_batch_dims():
    layer = dlinen.DiffConv(3, 3, edge_kernel=True)          # int kernel_size: 1-d, as in Flax
    x = jnp.asarray(X[:, :, 0, :]).reshape(1, 2, 10, 4)      # two batch dims
    variables = jax.jit(layer.init)(jax.random.key(1), x)
    p = variables["params"]
    assert set(p) == {"kernel", "bias", "edge_kernel", "edge_bias"}
    assert p["kernel"].shape == (3, 4, 3)
    np.testing.assert_array_equal(p["edge_kernel"], p["kernel"])   # starts as a copy
    p = dict(p, edge_kernel=p["kernel"] * 2, edge_bias=p["bias"] + 1)
    y, want = jax.jit(lambda p, x: (layer.apply({"params": p}, x), conv(
        x[0], p["kernel"], p["bias"], edge_kernel=p["edge_kernel"], edge_bias=p["edge_bias"])))(p, x)
    assert y.shape == (1, 2, 10, 3)
    assert rel_err(y[0], want) < 1e-6
    with pytest.raises(ValueError, match="kernel_size must be"):
        dlinen.DiffConv(3, (3, 3, 3, 3)).init(jax.random.key(0), X)


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.stem = nnx.Conv(4, 6, (3, 3), rngs=rngs)
        self.blocks = nnx.List([
            nnx.Conv(6, 6, (3, 3), padding="VALID", rngs=rngs),
            nnx.Conv(6, 6, (5, 3), strides=2, padding=((2, 2), (1, 1)), rngs=rngs),
            nnx.Conv(6, 6, (3, 3), padding="CIRCULAR", rngs=rngs),
        ])
        self.head = nnx.ConvTranspose(6, 2, (3, 3), rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def test_nnx_convert_swaps_only_size_keeping_convs():
    """'VALID' stays; 'SAME', size-keeping explicit pads and 'CIRCULAR' (as boundary='circular',
    which computes what Flax's circular padding computes) become DiffConv, the 'SAME' transposed
    head DiffConvTranspose, each holding the original parameter objects."""
    model = NnxNet(nnx.Rngs(0))
    stem_kernel, b1, circular, head_kernel = model.stem.kernel[...], model.blocks[1], model.blocks[2], model.head.kernel
    model = dnnx.convert(model, edge_kernel=True)
    assert isinstance(model.stem, dnnx.DiffConv) and isinstance(model.blocks[1], dnnx.DiffConv)
    assert type(model.blocks[0]) is nnx.Conv
    assert isinstance(model.blocks[2], dnnx.DiffConv) and model.blocks[2].boundary == "circular"
    assert isinstance(model.head, dnnx.DiffConvTranspose) and model.head.kernel is head_kernel
    np.testing.assert_array_equal(model.stem.kernel[...], stem_kernel)
    np.testing.assert_array_equal(model.stem.edge_kernel[...], stem_kernel)
    np.testing.assert_array_equal(model.blocks[1].kernel[...], b1.kernel[...])
    assert model.blocks[1].strides == 2

    @nnx.jit
    def both(model, x):
        h = model.blocks[0](jax.nn.relu(conv(x, stem_kernel, model.stem.bias[...])))
        h = conv(h, model.blocks[1].kernel[...], model.blocks[1].bias[...], strides=2)
        return model(x), model.head(circular(h))

    y, want = both(model, X)
    assert y.shape == want.shape
    assert rel_err(y, want) < 1e-5


def test_nnx_diffconv_attributes_and_grad():
    layer = dnnx.DiffConv(4, 6, (3, 3), feature_group_count=2, use_bias=False, boundary_input_grad=False,
                          rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (3, 3, 2, 6) and layer.bias is None and layer.edge_kernel is None
    grads, want = nnx.jit(lambda m: (nnx.grad(lambda m: (m(X) ** 2).sum())(m), jax.grad(
        lambda k: (conv(X, k, feature_group_count=2) ** 2).sum())(m.kernel[...])))(layer)
    assert grads["kernel"].shape == (3, 3, 2, 6)
    assert rel_err(grads["kernel"][...], want) < 1e-5
    with pytest.raises(ValueError, match="feature_group_count"):
        dnnx.DiffConv(4, 6, 3, feature_group_count=3, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="edge_kernel must be a bool"):
        dnnx.DiffConv(4, 6, 3, edge_kernel="yes", rngs=nnx.Rngs(0))


def test_interop_round_trip_layouts():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    sd = {"weight": torch.tensor(rng.standard_normal((6, 2, 3, 5))), "bias": torch.tensor(rng.standard_normal(6)),
          "edge_weight": torch.tensor(rng.standard_normal((6, 2, 3, 5))).to(torch.bfloat16)}
    params = torch_to_flax_params(sd)
    assert params["kernel"].shape == (3, 5, 2, 6) and params["edge_kernel"].shape == (3, 5, 2, 6)
    assert params["kernel"][1, 4, 0, 5] == sd["weight"][5, 0, 1, 4].item()
    back = flax_to_torch_state_dict({"params": params})
    for name, value in sd.items():
        assert back[name].dtype == value.dtype
        assert torch.equal(back[name], value)
    with pytest.raises(ValueError, match="no 'weight'"):
        torch_to_flax_params({"bias": sd["bias"]})


def test_layers_run_on_maps_shorter_than_the_kernel(x64):
    """linen and NNX DiffConv on a 1x2 map with a 5x3 kernel: the functional result, which the
    truth tests cover; on a single sample every ghost is that sample, so a 1x1 map gives the
    sum of the kernel's taps."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 2, 3))
    layer = dlinen.DiffConv(4, (5, 3), edge_kernel=True, param_dtype=jnp.float64)
    params = layer.init(jax.random.key(0), x)
    p = params["params"]
    want = conv(x, p["kernel"], p["bias"], edge_kernel=p["edge_kernel"], edge_bias=p["edge_bias"])
    assert rel_err(layer.apply(params, x), want) < 1e-12

    n = dnnx.DiffConv(3, 4, (5, 3), param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    assert rel_err(n(x), conv(x, n.kernel[...], n.bias[...])) < 1e-12
    one = x[:, :1, :1]
    want_one = one @ n.kernel[...].sum(axis=(0, 1)) + n.bias[...]
    assert rel_err(n(one), want_one) < 1e-12


class Encoder(nnx.Module):
    """Five 'SAME' convolutions, max-pooled from 16x16 down to 1x1."""

    def __init__(self, rngs):
        self.convs = nnx.List([nnx.Conv(c, 4, (3, 3), rngs=rngs) for c in (2, 4, 4, 4, 4)])

    def __call__(self, x):
        for i, c in enumerate(self.convs):
            x = nnx.relu(c(x))
            if i < 4:
                x = nnx.max_pool(x, (2, 2), (2, 2))
        return x.mean(axis=(1, 2))


def test_converted_encoder_reaching_one_pixel_trains_a_step():
    model = dnnx.convert(Encoder(nnx.Rngs(0)))
    assert all(isinstance(c, dnnx.DiffConv) for c in model.convs)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 16, 2)), jnp.float32)
    opt = nnx.Optimizer(model, __import__("optax").sgd(0.1), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x):
        loss, grads = nnx.value_and_grad(lambda m: ((m(x) - 1.0) ** 2).mean())(model)
        opt.update(model, grads)
        return loss, grads

    before = model.convs[4].kernel[...]
    loss, grads = step(model, opt, x)
    last = grads["convs"][4]["kernel"][...]                     # the layer that sees 1x1 maps
    assert np.isfinite(float(loss))
    assert np.isfinite(np.asarray(last)).all() and np.abs(last).max() > 0
    assert not np.array_equal(np.asarray(model.convs[4].kernel[...]), np.asarray(before))
