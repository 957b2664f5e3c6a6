"""DiffConv layers under PyTorch's transforms, tracers and exporters, in 1-, 2- and 3-D, plain,
with an edge kernel, with the boundary switch off, and the transposed layers.

Each result is held to an independent truth: eager autograd (``torch.autograd.grad``,
``torch.autograd.functional.jacobian/hessian``), the eager output, or onnxruntime's output.
"""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torch import nn

from diffconv.torch import (DiffConv1d, DiffConv2d, DiffConv3d, DiffConvTranspose1d, DiffConvTranspose2d,
                            DiffConvTranspose3d)
from diffconv.torch import _ghosts
from diffconv.torch import functional as DF


BOTH_PADDINGS = False     # tracers and transforms run the composite form (conftest.ghost_kernels)

MODULES = {1: DiffConv1d, 2: DiffConv2d, 3: DiffConv3d}
TRANSPOSED = {1: DiffConvTranspose1d, 2: DiffConvTranspose2d, 3: DiffConvTranspose3d}
SIZES = {1: (7,), 2: (5, 4), 3: (3, 4, 3)}
VARIANTS = {"plain": {}, "edge": dict(edge_kernel=True), "switch": dict(boundary_input_grad=False)}
CASES = [(nd, v) for nd in (1, 2, 3) for v in (*VARIANTS, "transposed")]


def _model(nd: int, variant: str, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(nd)
    if variant == "transposed":     # x2 upsampling, then a dilated stride-1 layer; both reach ghosts
        return nn.Sequential(TRANSPOSED[nd](2, 3, 4, stride=2, padding=1), nn.Tanh(),
                             TRANSPOSED[nd](3, 2, 3, padding=2, dilation=2)).to(dtype)
    m = nn.Sequential(MODULES[nd](2, 3, 3, **VARIANTS[variant]), nn.Tanh(),
                      MODULES[nd](3, 2, 2, dilation=2, **VARIANTS[variant])).to(dtype)
    if variant == "edge":          # edge parameters that differ from the main ones
        with torch.no_grad():
            for layer in (m[0], m[2]):
                layer.edge_weight.mul_(-0.5)
                layer.edge_bias.add_(1.0)
    return m


def _input(nd: int, batch: int = 2, dtype=torch.float64) -> torch.Tensor:
    return torch.randn((batch, 2) + SIZES[nd], dtype=dtype, generator=torch.Generator().manual_seed(7))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max() <= tol * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("nd,variant", CASES)
def test_vmap_equals_the_batched_call(nd, variant):
    m, x = _model(nd, variant), _input(nd, 3)
    _close(torch.func.vmap(lambda xi: m(xi[None])[0])(x), m(x))


@pytest.mark.parametrize("nd,variant", CASES)
def test_func_grad_equals_autograd(nd, variant):
    m, x = _model(nd, variant), _input(nd)
    got = torch.func.grad(lambda xi: m(xi).sin().sum())(x)
    xr = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(m(xr).sin().sum(), xr)
    _close(got, want)
    params = dict(m.named_parameters())
    got_w = torch.func.grad(lambda p: torch.func.functional_call(m, p, (x,)).sin().sum())(params)
    want_w = torch.autograd.grad(m(x).sin().sum(), list(params.values()))
    for name, w in zip(params, want_w):
        _close(got_w[name], w)


@pytest.mark.parametrize("nd,variant", CASES)
def test_jacrev_and_jvp_equal_the_autograd_jacobian(nd, variant):
    m, x = _model(nd, variant), _input(nd, 1)
    want = torch.autograd.functional.jacobian(m, x)
    _close(torch.func.jacrev(m)(x), want)
    _close(torch.func.jacfwd(m)(x), want)
    t = torch.randn_like(x)
    _, jv = torch.func.jvp(m, (x,), (t,))
    _close(jv, (want.reshape(jv.numel(), -1) @ t.reshape(-1)).reshape(jv.shape))


@pytest.mark.parametrize("nd,variant", CASES)
def test_hessian_equals_autograd(nd, variant):
    m, x = _model(nd, variant), _input(nd, 1)
    f = lambda xi: m(xi).sin().sum()  # noqa: E731
    _close(torch.func.hessian(f)(x), torch.autograd.functional.hessian(f, x))


@pytest.mark.parametrize("nd,variant", CASES)
def test_jit_trace_reproduces_the_eager_model(nd, variant):
    m, x = _model(nd, variant), _input(nd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(m, x)
    x2 = torch.randn_like(x)
    _close(traced(x), m(x))
    _close(traced(x2), m(x2))


@pytest.mark.parametrize("nd,variant", CASES)
def test_jit_trace_of_a_model_never_run_before(nd, variant):
    """torch.jit.trace checks its trace by tracing again: with no ghost operator cached yet, the
    first trace builds them, so both traces must build them the same way."""
    DF.conv_layout.cache_clear()
    DF.transpose_layout.cache_clear()
    _ghosts._CACHE.clear()
    m, x = _model(nd, variant), _input(nd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(m, x)
    _close(traced(x), m(x))


@pytest.mark.parametrize("nd,variant", CASES)
def test_meta_device_build_then_materialize(nd, variant):
    """FSDP-style deferred init: build on meta (a forward there gives the shape), then
    ``to_empty`` + ``reset_parameters``, then the real weights."""
    ref, x = _model(nd, variant), _input(nd)
    with torch.device("meta"):
        m = _model(nd, variant)
        assert m(_input(nd).to("meta")).shape == ref(x).shape
    m.to_empty(device="cpu")
    for layer in (m[0], m[2]):
        layer.reset_parameters()
    m.load_state_dict(ref.state_dict())
    _close(m(x), ref(x), 0)


@pytest.mark.parametrize("nd,variant", CASES)
def test_torch_export_and_pickle_reproduce_the_eager_model(nd, variant):
    m, x = _model(nd, variant), _input(nd)
    _close(torch.export.export(m, (x,)).module()(x), m(x))
    _close(pickle.loads(pickle.dumps(m))(x), m(x), 0)


@pytest.mark.parametrize("nd,variant", CASES)
def test_torch_compile_fullgraph_values_and_gradients(nd, variant):
    torch._dynamo.reset()
    m, x = _model(nd, variant), _input(nd).requires_grad_()
    y = torch.compile(m, fullgraph=True, backend="eager")(x)
    (gx,) = torch.autograd.grad(y.sin().sum(), x)
    y_ref = m(x)
    (gx_ref,) = torch.autograd.grad(y_ref.sin().sum(), x)
    _close(y, y_ref)
    _close(gx, gx_ref)


def test_torch_compile_traces_no_coefficient_code_and_warns_nothing(recwarn):
    """Under torch.compile the layout is a constant (``assume_constant_result``): dynamo neither
    traces the exact-fraction coefficient code nor warns about a cache it cannot see through."""
    torch._dynamo.reset()
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    layer = lambda x, w: DF.conv2d(x, w, boundary=("diff", "circular"), order=1)  # noqa: E731
    y = torch.compile(layer, fullgraph=True, backend="eager")(x, w)
    assert not [w for w in recwarn if "diffconv" in str(w.filename) or "lru_cache" in str(w.message)]
    _close(y, layer(x, w))


def test_channels_last_model_keeps_values():
    m, x = _model(2, "plain"), _input(2)
    _close(m(x.to(memory_format=torch.channels_last)), m(x))


onnx = pytest.importorskip  # alias keeps the ONNX tests' skip reason readable


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
@pytest.mark.parametrize("nd,variant", CASES)
def test_onnx_export_runs_in_onnxruntime(nd, variant, dynamo, tmp_path):
    onnx("onnx")
    ort = onnx("onnxruntime")
    if dynamo:
        onnx("onnxscript")
    m, x = _model(nd, variant, torch.float32), _input(nd, dtype=torch.float32)
    path = str(tmp_path / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(m, (x,), dynamo=True).save(path)
        else:
            torch.onnx.export(m, (x,), path, dynamo=False)
    session = ort.InferenceSession(path)
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    _close(torch.from_numpy(y), m(x).detach(), 1e-5)
