"""The torch forms, each reached through its inputs alone, against the oracle.

:func:`diffconv.torch.functional.choose_form` picks ``"plain"`` (no ghost reached), ``"padded"``
(eager autograd, one ``GhostConvBackward`` node) or ``"composite"`` (plain differentiable
operations, under tracers and transforms). Which one ran is read off the output's autograd graph.
Also here: the per-layer operation budget, the ghost builder's fold as the exact transpose of its
padding, and inputs in other memory layouts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.profiler import ProfilerActivity, profile

import oracle
from diffconv.torch import DiffConv1d, DiffConv2d, DiffConv3d, DiffConvTranspose2d, DiffConvTranspose3d
from diffconv.torch import functional as DF
from diffconv.torch._ghosts import DENSE_FOLD_MAX, AxisGhosts, fold, pad
from diffconv.torch._padded import layer
from diffconv.boundary import ghost_operator

FUNCS = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}


def form_ran(y: torch.Tensor) -> str:
    """``"padded"`` (our autograd node), ``"composite"`` (the padded input built by a
    concatenation that autograd sees) or ``"plain"`` (a convolution of the input itself)."""
    node = y.grad_fn
    if type(node).__name__ == "GhostConvBackward":
        return "padded"
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n is None or n in seen:
            continue
        seen.add(n)
        if type(n).__name__ == "CatBackward0":
            return "composite"
        todo.extend(f for f, _ in n.next_functions)
    return "plain"


def _arrays(shape, cout, ks, seed=0, groups=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal((cout, shape[1] // groups, *ks)), rng.standard_normal(cout)


@pytest.mark.parametrize("shape, ks, stride, dilation, boundary, order", [
    ((2, 3, 9, 11), (3, 3), 1, 1, "diff", None),
    ((1, 2, 70, 5), (3, 5), (2, 1), (1, 2), ("diff", ("reflect", "zeros")), 1),      # a long axis: sparse fold
    ((1, 2, 7), (4,), 1, 1, "replicate", None),
    ((1, 2, 5, 6, 7), (3, 3, 3), 2, 1, ("circular", "diff", "diff"), (0, 1, 2)),
])
@pytest.mark.parametrize("form", ["padded", "composite"])
def test_each_form_matches_the_oracle_in_value_and_gradient(shape, ks, stride, dilation, boundary, order, form):
    x, w, b = _arrays(shape, 2, ks)
    want = oracle.diff_conv(x, w, b, stride, dilation, boundary=boundary, order=order)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    f = FUNCS[len(ks)]
    if form == "composite":
        with fwAD.dual_level():         # forward-mode AD is one of the transforms that select it
            y = f(xt, wt, bt, stride, dilation, boundary=boundary, order=order)
    else:
        y = f(xt, wt, bt, stride, dilation, boundary=boundary, order=order)
    assert form_ran(y) == form
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-10, atol=1e-10)
    # Gradients at corner samples and a kernel tap: the oracle is linear in x and in w, so the
    # derivative along a unit vector is the oracle of that vector (without the bias).
    ct = np.random.default_rng(1).standard_normal(want.shape)
    gx, gw = torch.autograd.grad(y, (xt, wt), torch.tensor(ct))
    for wrt, grad, idx in (("x", gx, (0, 0) + (0,) * len(ks)), ("x", gx, (0, 1) + tuple(n - 1 for n in shape[2:])),
                           ("w", gw, (1, 0) + (0,) * len(ks))):
        unit = np.zeros(x.shape if wrt == "x" else w.shape)
        unit[idx] = 1.0
        dy = oracle.diff_conv(unit, w, None, stride, dilation, boundary=boundary, order=order) if wrt == "x" \
            else oracle.diff_conv(x, unit, None, stride, dilation, boundary=boundary, order=order)
        assert abs((dy * ct).sum() - grad[idx].item()) < 1e-10 * max(1.0, abs(grad[idx].item()))


def test_no_ghost_reached_runs_the_plain_convolution():
    x = torch.randn(2, 3, 8, 9, requires_grad=True)
    w = torch.randn(4, 3, 1, 1, requires_grad=True)
    y = DF.conv2d(x, w, stride=2)
    assert form_ran(y) == "plain"
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, stride=2), rtol=0, atol=0)
    # A transposed convolution whose outputs read no input outside the data (k = s, padding 0).
    wt = torch.randn(3, 4, 2, 2)
    yt = DF.conv_transpose2d(x, wt, stride=2)
    assert form_ran(yt) == "plain"
    torch.testing.assert_close(yt, torch.nn.functional.conv_transpose2d(x, wt, stride=2), rtol=0, atol=0)


def test_choose_form_under_each_tracer():
    x, w = torch.randn(1, 2, 6, 6), torch.randn(2, 2, 3, 3)
    lay = DF.conv_layout((6, 6), (3, 3), (1, 1), (1, 1), (("diff", "diff"),) * 2, (None, None), False)
    assert DF.choose_form(x, w, lay) == "padded"
    assert DF.choose_form(x.to("meta"), w.to("meta"), lay) == "composite"
    with fwAD.dual_level():
        assert DF.choose_form(fwAD.make_dual(x, torch.ones_like(x)), w, lay) == "composite"
    seen = []
    torch.func.vmap(lambda t: seen.append(DF.choose_form(t[None], w, lay)) or t)(x)
    assert seen == ["composite"]
    compiled = []

    def f(t):
        compiled.append(DF.choose_form(t, w, lay))
        return t * 2
    torch.compile(f, backend="eager", fullgraph=True)(x)
    assert compiled == ["composite"]


# ------------------------------------------------------------------- the per-layer budget

_OPS = ("aten::", "diffconv::")


def _top_level_ops(fn) -> list[str]:
    """The operations ``fn`` issues (aten's and the C++ ghost kernels') whose parent is not one."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name for e in prof.events()
            if e.name.startswith(_OPS) and (e.cpu_parent is None or not e.cpu_parent.name.startswith(_OPS))]


# On the C++ kernels a layer issues what reflect padding's does, plus the padding again in
# backward and, on large maps, the input gradient apart: pad, convolution, pad, backward,
# (transposed convolution), fold and autograd's three detaches.
NATIVE_BUDGET = 9

# A transposed layer on the kernels: the plain layer's convolution and backward, and its ghost
# ring: 3 gathers, 2 scatters, the tap-major weight twice, the weight gradient's share, one
# batched product per bucket of taps and direction (2 buckets in 2-d, 3 in 3-d), the transposes
# around them and autograd's 3 detaches.
TRANSPOSED_NATIVE_BUDGET = 28


def _step(m, x, g):
    def run():
        for t in (x, *m.parameters()):
            t.grad = None
        m(x).backward(g)
    return run


@pytest.mark.parametrize("nd, side, k, stride, budget", [
    (1, 64, 3, 1, 30), (1, 64, 5, 2, 30), (2, 12, 3, 1, 30), (2, 24, 3, 1, 30), (2, 64, 5, 1, 30),
    (2, 24, 3, 2, 30), (2, 96, 3, 1, 40), (2, 96, 5, 2, 40), (3, 16, 3, 1, 40), (3, 12, 5, 2, 40),
])
def test_a_layer_issues_few_operations(nd, side, k, stride, budget, ghost_kernels):
    """Forward + backward of one plain layer: the profiler's top-level operations (zero padding
    issues 2: the convolution and its backward). ``budget``: on the PyTorch operations."""
    m = {1: DiffConv1d, 2: DiffConv2d, 3: DiffConv3d}[nd](8, 8, k, stride=stride)
    x = torch.randn(2, 8, *(side,) * nd, requires_grad=True)
    g = torch.randn_like(m(x))
    ops = _top_level_ops(_step(m, x, g))
    assert len(ops) <= (NATIVE_BUDGET if ghost_kernels == "native" else budget), ops
    assert ("diffconv::ghost_pad" in ops) == (ghost_kernels == "native")


def test_a_transposed_layer_issues_few_operations(ghost_kernels):
    for m, shape in ((DiffConvTranspose2d(8, 4, 4, 2, 1), (2, 8, 24, 24)), (DiffConvTranspose3d(8, 4, 3, 2, 1, 1), (1, 8, 8, 8, 8))):
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn_like(m(x))
        ops = _top_level_ops(_step(m, x, g))
        budget = TRANSPOSED_NATIVE_BUDGET if ghost_kernels == "native" else 30 if x.dim() == 4 else 40
        assert len(ops) <= budget, ops
        assert ("diffconv::ring_gather" in ops) == (ghost_kernels == "native")


# ------------------------------------------------------------------------- the ghost builder

@pytest.mark.parametrize("length", [5, DENSE_FOLD_MAX, DENSE_FOLD_MAX + 3])
@pytest.mark.parametrize("modes, order", [(("diff", "diff"), None), (("reflect", "diff"), 1),
                                          (("circular", "circular"), None), (("zeros", "replicate"), 0)])
def test_pad_is_the_oracle_padding_and_fold_its_transpose(length, modes, order):
    """Dense fold on short axes, sparse on long ones: both exactly the transposed padding."""
    k, d = 5, 1
    before, after = oracle.same_widths(k, d)
    axes = [AxisGhosts.of(2, ghost_operator(length, k, d, before, after, modes, order)),
            AxisGhosts.of(3, ghost_operator(6, 3, 1, 1, 1))]
    rng = np.random.default_rng(length)
    x = rng.standard_normal((2, 3, length, 6))
    want = oracle.pad(x, [(before, after), (1, 1)], [modes, "diff"], [k, 3], 1, [order, None])
    got = pad(torch.tensor(x), axes)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(want.shape)
    lhs = (want * g).sum()
    rhs = (x * fold(torch.tensor(g), axes).numpy()).sum()
    assert abs(lhs - rhs) < 1e-10 * max(1.0, abs(lhs))


def test_nan_on_one_edge_stays_off_the_other_edges_ghosts():
    """Each side's ghosts are their own product: no 0 * NaN crosses over."""
    x = torch.ones(1, 1, 12)
    x[0, 0, 0] = float("nan")
    y = DF.conv1d(x, torch.ones(1, 1, 4))
    assert torch.isnan(y[0, 0, :2]).all()
    assert torch.equal(y[0, 0, 2:], torch.full((10,), 4.0))


# ------------------------------------------------------------------- layouts and grad modes

@pytest.mark.parametrize("layout", ["channels_last", "transposed_view", "sliced"])
@pytest.mark.parametrize("form", ["padded", "composite"])
def test_inputs_in_other_memory_layouts_give_the_same_values(layout, form):
    torch.manual_seed(0)
    base = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    x = {"channels_last": base.to(memory_format=torch.channels_last),
         "transposed_view": base.transpose(2, 3).contiguous().transpose(2, 3),
         "sliced": torch.stack([base, base], -1)[..., 0]}[layout]
    assert torch.equal(x, base)
    want = DF.conv2d(base.contiguous(), w)
    if form == "composite":
        with fwAD.dual_level():
            got = DF.conv2d(x, w)
    else:
        got = DF.conv2d(x.requires_grad_(), w)
        assert form_ran(got) == "padded"
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_no_grad_and_inference_mode_give_the_same_values(mode):
    torch.manual_seed(1)
    m = DiffConv2d(3, 4, 5, stride=2, edge_kernel=True).double()
    x = torch.randn(2, 3, 11, 13, dtype=torch.float64)
    want = m(x)
    with getattr(torch, mode)():
        got = m(x)
    torch.testing.assert_close(got, want.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_on_a_large_map_is_float64_on_the_rounded_operands(dtype):
    """Ghosts in float32, the output rounded once: within a few units of the output's last place
    of the float64 result on the same (rounded) operands."""
    torch.manual_seed(2)
    x = torch.randn(1, 4, 64, 72).to(dtype)
    w = (torch.randn(4, 4, 3, 3) / 6).to(dtype)
    got = DF.conv2d(x, w).double()
    want = DF.conv2d(x.double(), w.double())
    ulp = torch.finfo(dtype).eps
    bound = 8 * ulp * (want.abs() + (x.double().abs().amax() * w.double().abs().sum((1, 2, 3)).amax() * 4.4))
    assert ((got - want).abs() <= bound).all()


@pytest.mark.parametrize("shape, k, stride", [
    ((1, 2, 3000), 5, 1),          # small map, gradients in two steps
    ((1, 2, 7000), 3, 2),          # large map: ghosts computed again, sparse fold
    ((2, 3, 20, 20), 3, 1),        # small map, one convolution_backward, dense fold
    ((2, 3, 50, 50), 5, 2),        # small map, two steps, sparse fold
    ((1, 2, 90, 90), 3, 1),        # large map
    ((1, 2, 12, 12, 12), 3, 1),    # 3-d, one convolution_backward
    ((1, 2, 20, 20, 20), 3, 2),    # 3-d, large
])
def test_backward_paths_equal_autograd_through_the_composite_form(shape, k, stride):
    """Every way the padded form's backward takes (by map size) gives autograd's gradients of
    the same layer built from plain operations."""
    nd = len(shape) - 2
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    x = torch.tensor(rng.standard_normal(shape), requires_grad=True)
    w = torch.tensor(rng.standard_normal((3, shape[1], *(k,) * nd)), requires_grad=True)
    b = torch.tensor(rng.standard_normal(3), requires_grad=True)
    y = FUNCS[nd](x, w, b, stride=stride)
    assert form_ran(y) == "padded"
    g = torch.tensor(rng.standard_normal(y.shape))
    got = torch.autograd.grad(y, (x, w, b), g)
    lay = DF.conv_layout(shape[2:], (k,) * nd, (stride,) * nd, (1,) * nd, (("diff", "diff"),) * nd, (None,) * nd, False)
    want = torch.autograd.grad(layer(x, w, b, None, None, lay=lay, groups=1, boundary_input_grad=True), (x, w, b), g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
