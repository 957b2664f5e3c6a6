"""The lean torch path (memory, equivalence, torch.compile) and the ``diffconv speed`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffconv.cli import main
from diffconv.reference import reference_conv
from diffconv.torch import DiffConv2d
from diffconv.torch import functional as DF
from diffconv.torch._boundary import geometry
from diffconv.torch.functional import composite

FUNCS = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}


def _saved_activations(module: nn.Module, x: torch.Tensor) -> set[int]:
    """Storages autograd saves while running ``module(x)``, other than the module's parameters."""
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return seen - {p.untyped_storage().data_ptr() for p in module.parameters()}


@pytest.mark.usefixtures("plain_form")
@pytest.mark.parametrize("edge_kernel,big", [(False, True), (True, False)])
@pytest.mark.parametrize("k", [3, 5])
def test_diffconv_saves_no_more_than_zero_padding(k, edge_kernel, big):
    x = torch.randn(2, 4, 20, 18, requires_grad=True)
    zero = nn.Conv2d(4, 6, k, padding="same")
    diff = DiffConv2d(4, 6, k, edge_kernel=edge_kernel, boundary_input_grad=big)
    saved_zero = _saved_activations(zero, x)
    assert saved_zero == {x.untyped_storage().data_ptr()}     # the zero-padded conv saves its input
    assert _saved_activations(diff, x) == saved_zero


def _lean_and_composite(nd, lengths, ks, stride, dilation, groups, edge, big, seed=0):
    g = torch.Generator().manual_seed(seed)
    cin, cout = 2 * groups, 2 * groups
    mk = lambda *s: torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)  # noqa: E731
    x, w, b = mk(2, cin, *lengths), mk(cout, cin // groups, *ks), mk(cout)
    ew, eb = (mk(cout, cin // groups, *ks), mk(cout)) if edge else (None, None)
    tensors = [t for t in (x, w, b, ew, eb) if t is not None]
    y = FUNCS[nd](x, w, b, stride, dilation, groups, edge_weight=ew, edge_bias=eb, boundary_input_grad=big)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    lean_grads = torch.autograd.grad(y, tensors, gy)
    st = (stride,) * nd if isinstance(stride, int) else stride
    dl = (dilation,) * nd if isinstance(dilation, int) else dilation
    geo = geometry(tuple(lengths), tuple(ks), st, dl)
    special = edge or not big
    yc = composite(x, w, b, ew, eb, geo=geo, groups=groups, special=special, boundary_input_grad=big)
    comp_grads = torch.autograd.grad(yc, tensors, gy)
    ref = reference_conv(*(None if t is None else t.detach().numpy() for t in (x, w, b)), st, dl, groups,
                         *(None if t is None else t.detach().numpy() for t in (ew, eb)))
    return y, yc, ref, lean_grads, comp_grads


LEAN_CASES = [
    # nd, lengths, kernel, stride, dilation, groups: short axes (length k*d), strides that skip
    # the last ghost, dilations whose ghosts sit on several lattices, odd and even extents
    (1, (3,), (3,), 1, 1, 1),
    (1, (10,), (5,), 3, 1, 1),
    (1, (12,), (3,), 1, 4, 1),
    (1, (9,), (4,), 2, 1, 1),
    (2, (5, 9), (5, 3), (2, 1), (1, 3), 2),
    (2, (7, 8), (3, 7), (3, 2), 1, 1),
    # the banded form's cases (2-d, stride 1, square odd kernel): short, non-square, grouped
    (2, (5, 5), (5, 5), 1, 1, 1),
    (2, (7, 12), (3, 3), 1, 1, 2),
    (2, (15, 9), (7, 7), 1, 1, 1),
    (3, (6, 4, 6), (3, 2, 3), (1, 2, 2), (2, 1, 1), 1),
]


@pytest.mark.usefixtures("plain_form")
@pytest.mark.parametrize("edge,big", [(False, True), (True, True), (False, False), (True, False)])
@pytest.mark.parametrize("case", LEAN_CASES)
def test_lean_path_matches_reference_and_composite_gradients(case, edge, big):
    y, yc, ref, lean, comp = _lean_and_composite(*case, edge, big)
    scale = np.abs(ref).max()
    assert np.abs(y.detach().numpy() - ref).max() <= 1e-10 * scale
    assert np.abs(yc.detach().numpy() - ref).max() <= 1e-10 * scale
    for a, b in zip(lean, comp):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10 * b.abs().max().item())


def test_lean_path_is_used_for_odd_kernels_and_matches_zero_padding_inside():
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    w = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    assert geometry((16, 16), (5, 5), (1, 1), (1, 1)).lean
    y = DF.conv2d(x, w)
    z = F.conv2d(x, w, padding="same")
    assert torch.allclose(y[..., 2:-2, 2:-2], z[..., 2:-2, 2:-2], rtol=0, atol=1e-12)
    assert not torch.allclose(y[..., :2, :], z[..., :2, :])


def test_double_backward_of_lean_path_matches_composite():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    geo = geometry((7, 6), (3, 3), (1, 1), (1, 1))

    def hessian_vector(f):
        y = f(x, w)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.sum(), w)[0]

    lean = hessian_vector(lambda x, w: DF.conv2d(x, w))
    comp = hessian_vector(lambda x, w: composite(x, w, None, None, None, geo=geo, groups=1, special=False,
                                                 boundary_input_grad=True))
    assert torch.allclose(lean, comp, rtol=1e-10, atol=1e-12)


def test_autocast_bfloat16_boundary_close_to_float32():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    w = torch.randn(4, 3, 5, 5, generator=g) / 5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = DF.conv2d(x, w)
    assert y.dtype == torch.bfloat16
    truth = DF.conv2d(x.bfloat16().double(), w.bfloat16().double())
    err = (y.double() - truth).abs()
    # One bfloat16 rounding of the result (2**-8 relative), not a bfloat16 ghost matmul.
    assert err.max() <= 2 ** -7 * truth.abs().max()


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")
def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(
        DiffConv2d(2, 3, 3), nn.Tanh(),
        DiffConv2d(3, 2, (2, 5), dilation=(2, 1), edge_kernel=True, boundary_input_grad=False),
    ).double()
    x = torch.randn(2, 2, 10, 9, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    y = compiled(x)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    y_ref = model(x)
    (gx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    assert torch.allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(gx, gx_ref, rtol=1e-12, atol=1e-12)


@pytest.fixture
def banded_traces(monkeypatch) -> list:
    """Input shapes of every call of the compile-time banded form (``banded_conv2d``)."""
    from diffconv.torch import functional as functional_module

    calls: list = []
    banded = functional_module.banded_conv2d

    def spy(*args):
        calls.append(args[0].shape)
        return banded(*args)

    monkeypatch.setattr(functional_module, "banded_conv2d", spy)
    return calls


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")
@pytest.mark.parametrize("k,groups,edge", [(3, 1, False), (5, 2, False), (3, 1, True)])
def test_torch_compile_traces_the_banded_form_for_plain_layers(k, groups, edge, banded_traces):
    """Under torch.compile, plain float 2-d stride-1 layers trace the banded form (no padded
    copy of x); edge-kernel layers keep the composite. Values and gradients equal the eager
    composite form (pad, then VALID convolution) in float64."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 4, 11, 13, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4 // groups, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    we = (w.detach() * 0.5).requires_grad_() if edge else None

    def layer(x, w, b, we):
        return DF.conv2d(x, w, b, groups=groups, edge_weight=we)

    y = torch.compile(layer, fullgraph=True, backend="eager")(x, w, b, we)
    leaves = [t for t in (x, w, b, we) if t is not None]
    grads = torch.autograd.grad(y.sin().sum(), leaves)
    geo = geometry((11, 13), (k, k), (1, 1), (1, 1))
    y_ref = composite(x, w, b, we, None, geo=geo, groups=groups, special=edge, boundary_input_grad=True)
    assert len(banded_traces) == (0 if edge else 1)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    _assert_grads_match(grads, torch.autograd.grad(y_ref.sin().sum(), leaves), k)


def _assert_grads_match(grads, grads_ref, k: int) -> None:
    """The banded form's gradients against the composite form's, in float64: the same sums in
    another order, so equal to the rounding of the largest term's size (the k=5 ghost weights
    reach 10-35)."""
    for got, want in zip(grads, grads_ref):
        assert (got - want).abs().max() <= 1e-12 * want.abs().max() * k**4


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")
@pytest.mark.parametrize("k", [3, 5])
def test_torch_compile_banded_form_saves_no_band_taps(k):
    """Compiled (AOT autograd, Inductor's partitioner), the banded form saves for backward what
    the eager one keeps: not the bands' kernel taps (``4O x C x p x k``, more than the weight),
    and at k >= 5 not the bands (the ring is smaller); its gradients still equal the composite
    form's."""
    from functorch.compile import make_boxed_func, min_cut_rematerialization_partition
    from torch._functorch.aot_autograd import aot_module_simplified

    saved: list[tuple[int, ...]] = []

    def forward_compiler(gm, inputs):
        (outputs,) = [node.args[0] for node in gm.graph.nodes if node.op == "output"]
        saved.extend(tuple(o.meta["val"].shape) for o in outputs[1:] if isinstance(o.meta.get("val"), torch.Tensor))
        return make_boxed_func(gm.forward)

    def backend(gm, inputs):
        return aot_module_simplified(gm, inputs, fw_compiler=forward_compiler,
                                     bw_compiler=lambda g, _: make_boxed_func(g.forward),
                                     partition_fn=min_cut_rematerialization_partition)

    torch._dynamo.reset()
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 4, 11, 13, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.compile(lambda x, w: DF.conv2d(x, w), fullgraph=True, backend=backend)(x, w)
    grads = torch.autograd.grad(y.sin().sum(), (x, w))
    p = k // 2
    assert (11 + 2 * p, 13 + 2 * p) not in [s[-2:] for s in saved]      # no padded copy of x
    assert (4 * 6, 4, p, k) not in saved
    assert ((2, 16, 2 * p - 1, 13 + 2 * p) in saved) == (k == 3)
    geo = geometry((11, 13), (k, k), (1, 1), (1, 1))
    y_ref = composite(x, w, None, None, None, geo=geo, groups=1, special=False, boundary_input_grad=True)
    _assert_grads_match(grads, torch.autograd.grad(y_ref.sin().sum(), (x, w)), k)


def test_cpu_peak_memory_follows_allocations():
    from diffconv.commands.speed import _torch_cpu_peak

    def step():
        a = torch.empty(1_000_000, dtype=torch.uint8)
        b = torch.empty(3_000_000, dtype=torch.uint8)
        del a
        c = torch.empty(2_500_000, dtype=torch.uint8)
        del b, c

    peak = _torch_cpu_peak(step)
    assert 5_500_000 <= peak < 5_600_000


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_speed_quick_writes_documented_json(framework, tmp_path):
    if framework == "jax":
        pytest.importorskip("jax")
    path = tmp_path / "speed.json"
    assert main(["speed", "--quick", "--framework", framework, "--models", "stack", "unet", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    from diffconv.commands.speed import RESULT_KEYS

    assert data["result_keys"] == list(RESULT_KEYS)
    assert data["device_names"] == {framework: "cpu"}
    assert {(r["framework"], r["model"]) for r in data["results"]} == {(framework, "stack"), (framework, "unet")}
    for r in data["results"]:
        assert set(RESULT_KEYS) <= set(r)
        for key in ("time_ratio", "time_ratio_paired", "memory_ratio", "time_zero_s", "time_diff_s"):
            assert math.isfinite(r[key]) and r[key] > 0
        assert r["time_ratio_q1"] <= r["time_ratio_paired"] <= r["time_ratio_q3"]
        assert r["memory_zero_bytes"] > 0 and r["memory_diff_bytes"] > 0
        for key in ("compile_zero_s", "compile_diff_s"):       # jitted in JAX; eager torch compiles nothing
            assert (r[key] > 0) if framework == "jax" else r[key] is None


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")
@pytest.mark.parametrize("compiled", [False, True])
def test_speed_torch_compile_runs_the_compiled_models(compiled, tmp_path, banded_traces):
    """``--torch-compile BACKEND`` runs both models through torch.compile: the DiffConv layers
    of the quick stack then trace the banded form's plain-op version, which eager mode never
    calls; the settings record the backend."""
    torch._dynamo.reset()
    path = tmp_path / "speed.json"
    argv = ["speed", "--quick", "--framework", "torch", "--models", "stack", "--json", str(path)]
    assert main(argv + (["--torch-compile", "eager"] if compiled else [])) == 0
    data = json.loads(path.read_text())
    assert data["settings"]["torch_compile"] == ("eager" if compiled else None)
    assert (len(banded_traces) > 0) == compiled
    (r,) = data["results"]
    assert math.isfinite(r["time_ratio_paired"]) and r["memory_diff_bytes"] > 0
    for key in ("compile_zero_s", "compile_diff_s"):
        assert (r[key] > 0) if compiled else r[key] is None


def test_paired_ratio_is_the_median_of_per_round_ratios():
    """Per-round ratios 1.5, 1, 1.5, 0.5: their median is 1.25, while the ratio of the two
    medians (3 / 3) is 1; the report keeps both."""
    from diffconv.commands.speed import _result

    times = {"zero": [1.0, 2.0, 4.0, 8.0], "diff": [1.5, 2.0, 6.0, 4.0]}
    settings = {"batch": 1, "size": 8, "channels": 2, "repeats": 4}
    r = _result("torch", "stack", 3, "cpu", "float32", settings, times, {"zero": 10, "diff": 11}, "test", {})
    assert r.time_ratio == pytest.approx(1.0)
    assert r.time_ratio_paired == pytest.approx(1.25)
    assert r.time_ratio_q1 <= 1.0 and r.time_ratio_q3 >= 1.5


@pytest.mark.parametrize("argv,match", [
    (["--size", "30"], "multiple of 4"),
    (["--repeats", "0"], "--repeats"),
    (["--kernel-sizes", "0"], "--kernel-sizes"),
    (["--size", "16", "--kernel-sizes", "5", "--models", "unet"], "too small for the unet"),
    (["--threads", "0"], "--threads"),
])
def test_speed_rejects_bad_arguments(argv, match):
    with pytest.raises(ValueError, match=match):
        main(["speed", "--framework", "torch", *argv])


def test_jax_memory_counts_arguments_outputs_and_temporaries():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from diffconv.commands.speed import _jax_memory

    x = jnp.ones((256, 256), jnp.float32)                    # 256 KiB in, 256 KiB out
    compiled = jax.jit(lambda a: jnp.tanh(a @ a) + 1.0).lower(x).compile()
    assert 2 * x.nbytes <= _jax_memory(compiled) <= 4 * x.nbytes


@pytest.mark.parametrize("lengths,k,stride,form,channels", [
    ((16, 16), 3, 1, "padded", (2, 2)), ((48, 63), 5, 1, "padded", (2, 2)), ((64, 64), 3, 1, "banded", (2, 2)),
    ((96, 96), 5, 1, "banded", (2, 2)), ((200, 160), 3, 1, "banded", (2, 2)), ((96, 96), 3, 2, "padded", (2, 2)),
    ((128, 128), 3, 2, "padded", (2, 2)), ((129, 128), 3, 2, "corrections", (2, 2)),
    ((160, 160), 3, 2, "corrections", (2, 2)), ((8,), 3, 1, "corrections", (2, 2)),
    ((4096,), 3, 1, "corrections", (2, 2)), ((6, 7, 8), 3, 1, "padded", (2, 2)), ((40, 40, 40), 3, 1, "padded", (2, 2)),
    # fewer input than output channels: the padded buffer while the map fits it, then the bands
    ((96, 96), 3, 1, "padded", (1, 2)), ((128, 128), 5, 1, "padded", (1, 3)), ((129, 128), 3, 1, "banded", (1, 2)),
    ((96, 96), 3, 1, "banded", (2, 1)),
])
def test_plain_layers_pick_their_form_by_size(lengths, k, stride, form, channels, monkeypatch):
    """2-d stride-1 square odd kernels on maps of >= 64 take the banded form, except layers with
    fewer input than output channels on maps that the padded buffer takes; other small maps
    (and 3-d) the padded buffer; the rest the border corrections."""
    from diffconv.torch import _autograd
    calls = []
    for name in ("fill_padded", "band_outputs", "lean_forward"):
        real = getattr(_autograd, name)
        monkeypatch.setattr(_autograd, name, lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    nd = len(lengths)
    x = torch.randn(1, channels[0], *lengths, requires_grad=True)
    w = torch.randn(channels[1], channels[0], *(k,) * nd, requires_grad=True)
    y = FUNCS[nd](x, w, None, stride)
    y.sum().backward()
    picked = {"fill_padded": "padded", "band_outputs": "banded", "lean_forward": "corrections"}
    assert {picked[c] for c in calls} == {form}
    # every form gives the composite form's values
    geo = geometry(tuple(lengths), (k,) * nd, (stride,) * nd, (1,) * nd)
    yc = composite(x, w, None, None, None, geo=geo, groups=1, special=False, boundary_input_grad=True)
    assert torch.allclose(y, yc, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("lengths,ks,strides,dils", [
    ((9,), (4,), (1,), (1,)), ((7, 8), (3, 5), (1, 1), (1, 1)), ((11, 9), (3, 3), (2, 1), (1, 2)),
    ((5, 6, 7), (3, 2, 3), (1, 1, 1), (1, 1, 1)),
])
def test_fold_ghosts_is_the_transpose_of_fill_padded(lengths, ks, strides, dils):
    """<fill_padded(x), G> == <x, fold_ghosts(G)> for random x and G: the input gradient of the
    padded form is exactly the adjoint of building the buffer (corners included)."""
    from diffconv.torch._padded import fill_padded, fold_ghosts, padded_shape
    plans = geometry(lengths, ks, strides, dils).plans
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, *lengths, generator=gen, dtype=torch.float64)
    grad = torch.randn(padded_shape(x, plans), generator=gen, dtype=torch.float64)
    lhs = (fill_padded(x, plans)[0] * grad).sum()
    rhs = (x * fold_ghosts(grad.clone(), plans)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=0)
    assert fold_ghosts(grad.clone(), plans).shape == x.shape


@pytest.mark.parametrize("lengths,ks,dils", [((7, 8), (3, 5), (1, 1)), ((11, 9), (3, 3), (1, 2)), ((5, 6, 7), (3, 2, 3), (1, 1, 1))])
def test_refilled_buffer_equals_a_fresh_one(lengths, ks, dils):
    """The backward pass rebuilds the padded buffer from ``x`` and the forward pass's ghosts
    (one tensor per padded axis); that copy must equal extrapolating again, to the bit."""
    from diffconv.torch._padded import fill_padded
    plans = geometry(lengths, ks, (1,) * len(lengths), dils).plans
    x = torch.randn(2, 3, *lengths, generator=torch.Generator().manual_seed(5))
    fresh, ghosts = fill_padded(x, plans)
    assert len(ghosts) == sum(p.before + p.after > 0 for p in plans)
    assert torch.equal(fill_padded(x, plans, ghosts)[0], fresh)
    some = [g if i % 2 == 0 else None for i, g in enumerate(ghosts)]     # the rest computed again
    assert torch.equal(fill_padded(x, plans, some)[0], fresh)


def test_padded_form_backward_twice_with_retain_graph(plain_form):
    """A second backward through the same graph (retain_graph) gives the same gradients."""
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    y = FUNCS[2](x, w)
    g = torch.randn_like(y)
    first = torch.autograd.grad(y, (x, w), g, retain_graph=True)
    second = torch.autograd.grad(y, (x, w), g)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_keep_freed_memory_keeps_freed_buffers_mapped():
    """glibc by default returns freed 8 MiB buffers to the system (the next ones fault their
    pages in again); after ``keep_freed_memory`` it keeps them: the process's resident memory
    does not drop when 32 MiB of written buffers are freed. Each case runs in a child process,
    since the setting lasts for the whole process."""
    import subprocess
    import sys

    script = """
import os, sys, torch
from diffconv.commands.speed import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
before = resident()
buffers = [torch.ones(2**21) for _ in range(4)]     # 4 x 8 MiB, written in full
held = resident()
del buffers
print(held - before, held - resident())
"""

    def grown_and_returned(mode: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        grown, returned = map(int, out.stdout.split())
        return grown, returned

    mib = 2**20
    grown, returned = grown_and_returned("default")
    assert grown >= 30 * mib and returned >= 30 * mib        # glibc's default gives it back
    grown, returned = grown_and_returned("keep")
    assert grown >= 30 * mib and returned <= 1 * mib


def test_banded_form_with_channels_last_input_matches_composite(monkeypatch):
    """The banded form reads edge slices through views: a channels-last input gives the same
    values and gradients as the composite form."""
    from diffconv.torch import _autograd
    monkeypatch.setattr(_autograd, "_FORM", "banded")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 9, 11, generator=g, dtype=torch.float64).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(6, 2, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = DF.conv2d(x, w, None, 1, 1, 2)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(y, (x, w), gy)
    geo = geometry((9, 11), (5, 5), (1, 1), (1, 1))
    yc = composite(x, w, None, None, None, geo=geo, groups=2, special=False, boundary_input_grad=True)
    want = torch.autograd.grad(yc, (x, w), gy)
    assert torch.allclose(y, yc, rtol=1e-12, atol=1e-12 * yc.abs().max().item())
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12 * b.abs().max().item())


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("bands_first", [True, False])
def test_banded_form_in_either_order_matches_composite(bands_first, k, monkeypatch):
    """The band operations before the big convolution (the CPU's order) or after it (an
    accelerator's) give the composite form's values and gradients."""
    from diffconv.torch import _autograd
    monkeypatch.setattr(_autograd, "_FORM", "banded")
    monkeypatch.setattr(_autograd, "_BANDS_FIRST", bands_first)
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 3, 12, 10, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    y = DF.conv2d(x, w, b)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(y, (x, w, b), gy)
    geo = geometry((12, 10), (k, k), (1, 1), (1, 1))
    yc = composite(x, w, b, None, None, geo=geo, groups=1, special=False, boundary_input_grad=True)
    want = torch.autograd.grad(yc, (x, w, b), gy)
    assert torch.allclose(y, yc, rtol=1e-12, atol=1e-12 * yc.abs().max().item())
    for a, e in zip(got, want):
        assert torch.allclose(a, e, rtol=1e-12, atol=1e-12 * e.abs().max().item())


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("wanted", ["input", "weight"])
def test_fast_forms_give_the_one_gradient_asked_for(plain_form, k, wanted):
    """Only the input (a frozen layer) or only the weight (a first layer) needs a gradient: each
    form's backward computes just that one, equal to the composite form's."""
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64, requires_grad=wanted == "input")
    w = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64, requires_grad=wanted == "weight")
    b = torch.randn(4, generator=g, dtype=torch.float64)
    leaf = x if wanted == "input" else w
    y = DF.conv2d(x, w, b)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (got,) = torch.autograd.grad(y, leaf, gy)
    geo = geometry((9, 11), (k, k), (1, 1), (1, 1))
    (want,) = torch.autograd.grad(composite(x, w, b, None, None, geo=geo, groups=1, special=False,
                                            boundary_input_grad=True), leaf, gy)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12 * want.abs().max().item())


@pytest.mark.parametrize("k,d,before,after", [(3, 1, 1, 1), (5, 2, 4, 4), (4, 1, 1, 2), (2, 1, 0, 1)])
def test_ghost_operator_products_equal_the_block_diagonal_product(k, d, before, after):
    """Side blocks (odd extents) or the block-diagonal matrix: the same ghosts from the same
    edge samples, as the ghost weights of each side applied alone."""
    from diffconv.torch._coeffs import ghost_operator, ghost_tensors
    from diffconv.torch._padded import lead_matmul
    low, high = ghost_tensors(k, d, before, after, torch.device("cpu"), torch.float64)
    op = ghost_operator(k, d, before, after, torch.device("cpu"), torch.float64)
    assert op.dim() == (3 if before == after else 2)
    sides = [m for m in (low, high) if m.shape[0]]
    edges = torch.randn(len(sides) * k * d, 3, 5, dtype=torch.float64)
    want = torch.cat([torch.einsum("gs,sab->gab", m, e) for m, e in zip(sides, edges.split(k * d))])
    assert torch.allclose(lead_matmul(op, edges), want, rtol=1e-13, atol=1e-10)
    g = torch.randn(before + after, 3, 5, dtype=torch.float64)
    want_t = torch.cat([torch.einsum("gs,gab->sab", m, part) for m, part in zip(sides, g.split([m.shape[0] for m in sides]))])
    assert torch.allclose(lead_matmul(op.mT, g), want_t, rtol=1e-13, atol=1e-10)
