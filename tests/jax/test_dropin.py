"""Existing Flax models made padding-free unedited: ``diffconv.jax.linen.padding_free`` and
``diffconv.jax.nnx.convert``, on single layers, rebuilt published models and flaxdiff's UNet."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from jax import lax

from diffconv.jax import conv
from diffconv.jax import linen as dlinen
from diffconv.jax import nnx as dnnx
from diffconv.jax._dropin import flax_grid_conv
from diffconv.jax.linen import padding_free

from flax_models import NnxCNN, NnxEncoderDecoder, resnet
from jaxtest_helpers import rel_err

HAS_BOUNDARY = "boundary" in inspect.signature(conv).parameters
needs_boundary = pytest.mark.skipif(not HAS_BOUNDARY, reason="diffconv.jax.conv has no boundary/order yet")


def rand(*shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def same_eq(a, b) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.shape == y.shape and x.dtype == y.dtype for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def random_like(tree, seed=0):
    """Random values in ``tree``'s shapes (flaxdiff's initialisers compile for ~40 s on XLA:CPU)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), tree)


# --- references -------------------------------------------------------------------------------

def flax_centres(length: int, k: int, s: int, d: int) -> slice:
    """Where a Flax 'SAME' conv centres its windows, as a slice of the stride-1 positions."""
    e = (k - 1) * d + 1
    (lo, _), = lax.padtype_to_pads((length,), (e,), (s,), "SAME")
    start = (e - 1) // 2 - lo
    return slice(start, start + (-(-length // s) - 1) * s + 1, s)


class Conv(nn.Module):
    """Reference for a rerouted 'SAME' ``nn.Conv`` (named like it, so the tree matches): DiffConv's
    stride-1 result (``diffconv.jax.conv``) read at the centres of Flax's own windows."""

    features: int
    kernel_size: tuple
    strides: tuple | int = 1
    padding: object = "SAME"
    use_bias: bool = True
    dtype: object = None
    precision: object = None
    kernel_dilation: int = 1
    feature_group_count: int = 1

    @nn.compact
    def __call__(self, x):
        ks = tuple(self.kernel_size)
        nd = len(ks)
        s = (self.strides,) * nd if isinstance(self.strides, int) else tuple(self.strides)
        d = (self.kernel_dilation,) * nd if isinstance(self.kernel_dilation, int) else tuple(self.kernel_dilation)
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            ks + (x.shape[-1] // self.feature_group_count, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,)) if self.use_bias else None
        y = conv(x, kernel, bias, dilation=d, feature_group_count=self.feature_group_count)
        if self.padding != "SAME":                  # explicit ghost widths: centres 0, s, 2s, ...
            return y[(slice(None),) + tuple(slice(None, None, si) for si in s)]
        return y[(slice(None),) + tuple(flax_centres(n, k, si, di) for n, k, si, di in zip(x.shape[1:-1], ks, s, d))]


def linen_diffconv(features, kernel_size, strides=1, padding="SAME", **kwargs):
    """The model "written with DiffConv": ``nn.Conv``'s call with ``padding`` dropped."""
    return dlinen.DiffConv(features, kernel_size, strides, **kwargs)


def nnx_diffconv(cin, cout, kernel_size, strides=1, padding="SAME", **kwargs):
    return dnnx.DiffConv(cin, cout, kernel_size, strides, **kwargs)


# --- the grid -------------------------------------------------------------------------------

@pytest.mark.parametrize("k,s,d", [(3, 2, 1), (5, 2, 1), (5, 4, 1), (3, 3, 2), (4, 2, 1), (2, 2, 1), (7, 3, 1), (1, 2, 1)])
def test_flax_grid_conv_reads_stride_one_result_at_flax_centres(k, s, d):
    """Every route (conv at the stride, the reversed axis, slicing) gives DiffConv's stride-1
    result at Flax's window centres, with Flax's output length; interior outputs equal Flax's."""
    kernel = rand(k, 2, 3, seed=1)
    e = (k - 1) * d + 1
    for length in (1, 2, 3, 6, 7, 8, 12, 13):
        x = rand(2, length, 2, seed=length)
        pads = lax.padtype_to_pads((length,), (e,), (s,), "SAME")
        y = flax_grid_conv(x, kernel, None, pads=pads, strides=(s,), dilation=(d,))
        flax = lax.conv_general_dilated(x, kernel, (s,), "SAME", rhs_dilation=(d,),
                                        dimension_numbers=("NWC", "WIO", "NWC"))
        want = conv(x, kernel, dilation=d)[:, flax_centres(length, k, s, d)]
        assert y.shape == flax.shape == want.shape
        assert rel_err(y, want) < 1e-5, length
        lo = pads[0][0]
        inner = [i for i in range(y.shape[1]) if i * s - lo >= 0 and i * s - lo + e <= length]
        if inner:
            np.testing.assert_allclose(y[:, inner], flax[:, inner], rtol=1e-5, atol=1e-5)


def test_flax_grid_conv_2d_mixes_routes_per_axis():
    """Axis 0 (even, k=3, s=2) reversed, axis 1 (odd) at the stride, grads through both."""
    x, kernel = rand(1, 10, 9, 4), rand(3, 3, 2, 6, seed=2)
    pads = lax.padtype_to_pads((10, 9), (3, 3), (2, 2), "SAME")
    f = jax.jit(lambda x, k: flax_grid_conv(x, k, None, pads=pads, strides=(2, 2), dilation=(1, 1),
                                            feature_group_count=2))
    want = lambda x, k: conv(x, k, feature_group_count=2)[:, 1::2, 0::2]  # noqa: E731
    assert rel_err(f(x, kernel), want(x, kernel)) < 1e-5
    g, gw = jax.grad(lambda *a: (f(*a) ** 2).sum(), (0, 1))(x, kernel), \
        jax.grad(lambda *a: (want(*a) ** 2).sum(), (0, 1))(x, kernel)
    assert rel_err(g[0], gw[0]) < 1e-5 and rel_err(g[1], gw[1]) < 1e-5


@needs_boundary
def test_flax_grid_conv_reversed_axis_swaps_per_side_boundary():
    x, kernel = rand(1, 10, 9, 2), rand(3, 3, 2, 3, seed=3)
    spec = (("zeros", "replicate"), ("reflect", "diff"))
    pads = lax.padtype_to_pads((10, 9), (3, 3), (2, 2), "SAME")
    y = flax_grid_conv(x, kernel, None, pads=pads, strides=(2, 2), dilation=(1, 1), boundary=spec, order=1)
    want = conv(x, kernel, boundary=spec, order=1)[:, 1::2, 0::2]
    assert rel_err(y, want) < 1e-5


# --- linen: single layers ---------------------------------------------------------------------

class One(nn.Module):
    """One layer, built by ``make`` (so each case is a fresh compact module)."""

    make: object

    @nn.compact
    def __call__(self, x):
        return self.make()(x)


REROUTED = {
    "same": lambda: nn.Conv(6, (3, 3)),
    "same-even-kernel": lambda: nn.Conv(6, (2, 4)),
    "explicit-widths": lambda: nn.Conv(6, (5, 3), padding=((2, 2), (1, 1))),
    "int-widths-strided": lambda: nn.Conv(6, (3, 3), strides=2, padding=1),
    "dilated-grouped": lambda: nn.Conv(6, (3, 3), kernel_dilation=2, feature_group_count=2),
    "strided-same": lambda: nn.Conv(6, (3, 3), strides=(2, 3)),
}
LEFT_ALONE = {
    "valid": lambda: nn.Conv(6, (3, 3), padding="VALID"),
    "reflect": lambda: nn.Conv(6, (3, 3), padding="REFLECT"),
    "other-pads": lambda: nn.Conv(6, (3, 3), padding=((2, 0), (1, 1))),
    "input-dilation": lambda: nn.Conv(6, (3, 3), padding=1, input_dilation=2),
    "masked": lambda: nn.Conv(6, (3, 3), mask=jnp.tril(jnp.ones((3, 3, 4, 6)))),
    "local": lambda: nn.ConvLocal(6, (3, 3)),
    "valid-transpose": lambda: nn.ConvTranspose(6, (3, 3), strides=2, padding="VALID"),
}
X4 = rand(2, 10, 9, 4)


@pytest.mark.parametrize("name", sorted(REROUTED))
def test_rerouted_conv_keeps_tree_and_equals_reference(name):
    model = One(REROUTED[name])
    params = model.init(jax.random.key(0), X4)
    with padding_free():
        inside = model.init(jax.random.key(0), X4)
        y = model.apply(params, X4)
    jax.tree.map(np.testing.assert_array_equal, params, inside)
    layer = REROUTED[name]()
    p = params["params"]["Conv_0"]
    ks = layer.kernel_size
    s = (layer.strides,) * 2 if isinstance(layer.strides, int) else tuple(layer.strides)
    d = (layer.kernel_dilation,) * 2 if isinstance(layer.kernel_dilation, int) else tuple(layer.kernel_dilation)
    full = conv(X4, p["kernel"], p["bias"], dilation=d, feature_group_count=layer.feature_group_count)
    if layer.padding == "SAME":
        want = full[(slice(None),) + tuple(flax_centres(n, k, si, di) for n, k, si, di in zip((10, 9), ks, s, d))]
    else:
        want = full[:, ::s[0], ::s[1]]
    assert y.shape == model.apply(params, X4).shape == want.shape
    assert rel_err(y, want) < 1e-5
    assert rel_err(y, model.apply(params, X4)) > 1e-3


@pytest.mark.parametrize("name", sorted(LEFT_ALONE))
def test_other_layers_are_left_alone(name):
    model = One(LEFT_ALONE[name])
    params = model.init(jax.random.key(0), X4)
    with padding_free():
        y = model.apply(params, X4)
    np.testing.assert_array_equal(y, model.apply(params, X4))


def test_causal_and_subclass_with_own_call_are_left_alone():
    class Own(nn.Conv):
        def __call__(self, x):
            return super().__call__(x) * 2

    for make, x in ((lambda: nn.Conv(5, 3, padding="CAUSAL"), X4[:, :, 0]), (lambda: Own(5, (3, 3)), X4)):
        model = One(make)
        params = model.init(jax.random.key(0), x)
        with padding_free():
            y = model.apply(params, x)
        np.testing.assert_array_equal(y, model.apply(params, x))


def test_circular_stays_circular_and_boundary_overrides_it():
    model = One(lambda: nn.Conv(6, (3, 3), strides=2, padding="CIRCULAR"))
    params = model.init(jax.random.key(0), X4)
    p = params["params"]["Conv_0"]
    with padding_free():
        np.testing.assert_allclose(model.apply(params, X4), model.apply(params, X4), rtol=1e-5, atol=1e-5)
        y = model.apply(params, X4)
    np.testing.assert_allclose(y, model.apply(params, X4), rtol=1e-5, atol=1e-5)
    if HAS_BOUNDARY:
        with padding_free(boundary="diff"):
            y = model.apply(params, X4)
        assert rel_err(y, conv(X4, p["kernel"], p["bias"], strides=2)) < 1e-5


def test_transpose_same_is_difftransposeconv_with_the_same_params():
    make = lambda: nn.ConvTranspose(5, (3, 4), strides=(2, 3), kernel_dilation=(1, 2))  # noqa: E731
    model = One(make)
    params = model.init(jax.random.key(0), X4)
    with padding_free():
        y = model.apply(params, X4)
    twin = dlinen.DiffConvTranspose(5, (3, 4), strides=(2, 3), kernel_dilation=(1, 2))
    want = twin.apply({"params": params["params"]["ConvTranspose_0"]}, X4)
    assert y.shape == model.apply(params, X4).shape
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_batch_dims_dtype_and_precision_follow_flax():
    model = One(lambda: nn.Conv(6, (3, 3), strides=2, dtype=jnp.bfloat16, precision="highest"))
    params = model.init(jax.random.key(0), X4)
    with padding_free():
        many = model.apply(params, X4.reshape(1, 2, 10, 9, 4))
        single = model.apply(params, X4[0])
        y = model.apply(params, X4)
    assert y.dtype == model.apply(params, X4).dtype == jnp.bfloat16
    assert many.shape == (1, 2, 5, 5, 6) and single.shape == (5, 5, 6)
    np.testing.assert_array_equal(many[0], y)
    np.testing.assert_array_equal(single, y[0])


def test_settings_are_checked_on_entry():
    with pytest.raises(ValueError, match="boundary"):
        with padding_free(boundary="mirror"):
            pass
    with pytest.raises(ValueError, match="circular"):
        with padding_free(boundary=[("circular", "zeros")]):
            pass
    with pytest.raises(ValueError, match="order"):
        with padding_free(order=-1):
            pass


@needs_boundary
def test_boundary_and_order_reach_every_rerouted_layer():
    model = One(lambda: nn.Conv(6, (5, 3)))
    params = model.init(jax.random.key(0), X4)
    p = params["params"]["Conv_0"]
    with padding_free(boundary=("replicate", "diff"), order=1):
        y = model.apply(params, X4)
    assert rel_err(y, conv(X4, p["kernel"], p["bias"], boundary=("replicate", "diff"), order=1)) < 1e-5


# --- linen: jit, lifted transforms ----------------------------------------------------------

def test_jit_outside_the_context_is_retraced_inside_it():
    model = One(REROUTED["same"])
    params = model.init(jax.random.key(0), X4)
    apply = jax.jit(model.apply)
    plain = apply(params, X4)
    with padding_free():
        free = apply(params, X4)
        with padding_free(order=None):
            np.testing.assert_array_equal(apply(params, X4), free)
    assert rel_err(free, plain) > 1e-3
    np.testing.assert_array_equal(apply(params, X4), plain)
    decorated = jax.jit(padding_free()(model.apply))
    np.testing.assert_array_equal(decorated(params, X4), free)


class ScanBlock(nn.Module):
    conv: object = nn.Conv

    @nn.compact
    def __call__(self, x, _):
        return nn.relu(self.conv(4, (3, 3))(x)) + x, None


class Lifted(nn.Module):
    conv: object = nn.Conv

    @nn.compact
    def __call__(self, x):
        x = nn.remat(ScanBlock)(conv=self.conv)(x, None)[0]
        scan = nn.scan(ScanBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
        return scan(conv=self.conv)(x, None)[0]


def test_scan_and_remat_modules_are_rerouted():
    params = jax.jit(Lifted().init)(jax.random.key(0), X4)
    with padding_free():
        assert same_eq(jax.eval_shape(Lifted().init, jax.random.key(0), X4), params)
        y = jax.jit(Lifted().apply)(params, X4)
    want = jax.jit(Lifted(conv=linen_diffconv).apply)(params, X4)
    assert rel_err(y, want) < 1e-5


# --- linen: published models ----------------------------------------------------------------

def resnet_loss(model, params, x, train=True):
    def loss(p, x):
        y, _ = model.apply({**params, "params": p}, x, train=train, mutable=["batch_stats"])
        return (y ** 2).mean()
    return jax.jit(jax.value_and_grad(loss, (0, 1)))(params["params"], x)


@pytest.mark.slow
@pytest.mark.parametrize("bottleneck", [False, True])
def test_resnet_equals_the_resnet_written_with_diffconv(bottleneck):
    """At 36x36 every strided 'SAME' conv sees an odd length, where Flax centres its windows at
    0, s, 2s, ...: the model written with DiffConv is the reference, outputs and gradients."""
    x = rand(2, 36, 36, 3)
    model = resnet(bottleneck=bottleneck)
    params = jax.jit(model.init)(jax.random.key(0), x)
    with padding_free():
        assert same_eq(jax.eval_shape(model.init, jax.random.key(0), x), params)
        (loss, grads) = resnet_loss(model, params, x)
    want_loss, want_grads = resnet_loss(resnet(bottleneck=bottleneck, conv=linen_diffconv), params, x)
    plain_loss, _ = resnet_loss(model, params, x)
    assert abs(float(loss) - float(plain_loss)) > 1e-4 * abs(float(plain_loss))
    assert rel_err(loss, want_loss) < 1e-5
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        assert rel_err(g, w) < 1e-4


@pytest.mark.slow
def test_resnet_on_even_maps_keeps_flax_window_centres():
    """At 32x32 the strided 3x3 'SAME' convs pad (0, 1): the reference reads DiffConv's stride-1
    result at Flax's centres 1, 3, 5, ... (the 1x1 projections stay at 0, 2, 4, ...)."""
    x = rand(2, 32, 32, 3)
    model = resnet()
    params = jax.jit(model.init)(jax.random.key(0), x)
    with padding_free():
        loss, grads = resnet_loss(model, params, x)
    want_loss, want_grads = resnet_loss(resnet(conv=Conv), params, x)
    assert rel_err(loss, want_loss) < 1e-5
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        assert rel_err(g, w) < 1e-4


@pytest.mark.slow
def test_flaxdiff_unet_runs_padding_free_unedited(monkeypatch):
    """A third-party linen model: same parameter tree inside the context; outputs and gradients
    (jit) equal the same UNet built with the reference conv in place of ``nn.Conv``."""
    simple_unet = pytest.importorskip("flaxdiff.models.simple_unet")
    model = simple_unet.Unet(output_channels=3, emb_features=16, feature_depths=(8, 16),
                             attention_configs=(None, None), num_res_blocks=1, num_middle_res_blocks=1,
                             norm_groups=4)
    x, t, c = rand(2, 16, 16, 3), jnp.linspace(0.1, 0.9, 2), rand(2, 4, 8, seed=1)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, t, c)
    with padding_free():
        assert same_eq(jax.eval_shape(model.init, jax.random.key(0), x, t, c), shapes)
    params = random_like(shapes)

    def run(p, x):
        return (model.apply(p, x, t, c) ** 2).mean()

    step = jax.jit(jax.value_and_grad(run, (0, 1)))
    plain = step(params, x)
    with padding_free():
        loss, grads = step(params, x)
    monkeypatch.setattr(nn, "Conv", Conv)
    want_loss, want_grads = jax.jit(jax.value_and_grad(run, (0, 1)))(params, x)
    assert rel_err(loss, plain[0]) > 1e-4
    assert rel_err(loss, want_loss) < 1e-5
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        assert rel_err(g, w) < 1e-4


# --- nnx.convert ----------------------------------------------------------------------------

def nnx_loss(model, x):
    def loss(m, x):
        return (m(x) ** 2).mean()
    return nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))(model, x)


@pytest.mark.slow
def test_nnx_convert_equals_the_model_written_with_diffconv():
    """Odd 11x9 maps: the strided 'SAME' conv centres its windows at 0, 2, 4, ..., where the
    model written with DiffConv is the reference (outputs, parameter and input gradients)."""
    x = rand(2, 11, 9, 3)
    model = dnnx.convert(NnxEncoderDecoder(rngs=nnx.Rngs(0)))
    twin = NnxEncoderDecoder(conv=nnx_diffconv, conv_transpose=dnnx.DiffConvTranspose, rngs=nnx.Rngs(1))
    nnx.update(twin, nnx.state(model, nnx.Param))
    assert isinstance(model.stem, dnnx.DiffConv) and isinstance(model.down, dnnx.DiffConv)
    assert isinstance(model.wide, dnnx.DiffConv) and isinstance(model.up, dnnx.DiffConvTranspose)
    assert type(model.mix) is nnx.Conv
    if HAS_BOUNDARY:
        assert isinstance(model.ring, dnnx.DiffConv) and model.ring.boundary == "circular"
    (loss, (g, gx)), (want, (wg, wgx)) = nnx_loss(model, x), nnx_loss(twin, x)
    assert rel_err(loss, want) < 1e-5 and rel_err(gx, wgx) < 1e-4
    for a, b in zip(jax.tree.leaves(nnx.state(g, nnx.Param)), jax.tree.leaves(nnx.state(wg, nnx.Param))):
        assert rel_err(a, b) < 1e-4


def test_nnx_convert_keeps_flax_centres_on_even_maps():
    x = rand(2, 10, 8, 3)
    model = NnxEncoderDecoder(rngs=nnx.Rngs(0))
    plain = model(x)
    model = dnnx.convert(model)
    down = model.down
    h = nnx.relu(model.stem(x))
    want = conv(h, down.kernel[...], down.bias[...])[:, 1::2, 1::2]
    assert rel_err(down(h), want) < 1e-5
    assert model(x).shape == plain.shape


@pytest.mark.slow
def test_nnx_convert_shares_variables_and_a_prior_optimizer_steps_it():
    model = NnxCNN(size=12, rngs=nnx.Rngs(0))
    kernel, bias = model.conv1.kernel, model.conv1.bias
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    assert dnnx.convert(model) is model
    assert isinstance(model.conv1, dnnx.DiffConv) and model.conv1.kernel is kernel and model.conv1.bias is bias
    x, labels = rand(4, 12, 12, 1), jnp.arange(4)

    @nnx.jit
    def step(model, opt, x):
        def loss(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), labels).mean()
        value, grads = nnx.value_and_grad(loss)(model)
        opt.update(model, grads)
        return value

    before = np.asarray(kernel[...])
    losses = [float(step(model, opt, x)) for _ in range(3)]
    assert losses[-1] < losses[0]
    assert not np.array_equal(np.asarray(model.conv1.kernel[...]), before)
    assert int(opt.step[...]) == 3


def test_nnx_convert_of_a_single_layer_and_options():
    layer = nnx.Conv(4, 6, (3, 3), strides=2, rngs=nnx.Rngs(0))
    twin = dnnx.convert(layer, edge_kernel=True, boundary_input_grad=False)
    assert isinstance(twin, dnnx.DiffConv) and twin.kernel is layer.kernel and twin.boundary_input_grad is False
    np.testing.assert_array_equal(twin.edge_kernel[...], layer.kernel[...])
    full = conv(X4, layer.kernel[...], layer.bias[...], edge_kernel=twin.edge_kernel[...],
                edge_bias=twin.edge_bias[...], boundary_input_grad=False)
    assert rel_err(twin(X4), full[:, 1::2, 0::2]) < 1e-5
    masked = nnx.Conv(4, 6, (3, 3), mask=jnp.ones((3, 3, 4, 6)), rngs=nnx.Rngs(0))
    assert dnnx.convert(masked) is masked
    up = nnx.ConvTranspose(4, 5, (3, 2), strides=2, transpose_kernel=True, rngs=nnx.Rngs(0))
    twin = dnnx.convert(up)
    assert isinstance(twin, dnnx.DiffConvTranspose) and twin.kernel is up.kernel and twin.transpose_kernel
    want = dlinen.DiffConvTranspose(5, (3, 2), strides=2, transpose_kernel=True).apply(
        {"params": {"kernel": up.kernel[...], "bias": up.bias[...]}}, X4)
    np.testing.assert_allclose(twin(X4), want, rtol=1e-6, atol=1e-6)
    valid = nnx.ConvTranspose(4, 5, (3, 3), padding="VALID", rngs=nnx.Rngs(0))
    assert dnnx.convert(valid) is valid
    with pytest.raises(TypeError, match="edge_kernel must be a bool"):
        dnnx.convert(layer, edge_kernel=1)


@needs_boundary
def test_nnx_convert_hands_boundary_and_order_to_every_new_layer():
    x = rand(2, 10, 8, 3)
    model = dnnx.convert(NnxEncoderDecoder(rngs=nnx.Rngs(0)), boundary="replicate", order=1)
    for layer in (model.stem, model.down, model.wide, model.ring, model.up):
        assert layer.boundary == "replicate" and layer.order == 1
    want = conv(x, model.stem.kernel[...], model.stem.bias[...], boundary="replicate", order=1)
    assert rel_err(model.stem(x), want) < 1e-5
    h = rand(2, 10, 8, 8, seed=4)
    want = conv(h, model.down.kernel[...], model.down.bias[...], boundary="replicate", order=1)[:, 1::2, 1::2]
    assert rel_err(model.down(h), want) < 1e-5
