"""The C++ ghost kernels (``diffconv/torch/csrc/ghosts.cpp``) against the oracle's padding, the
PyTorch operations they stand in for, and their fallback.

Everything else in ``tests/torch`` runs on both paddings (``conftest.ghost_kernels``); these
tests call the kernels directly.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings

import numpy as np
import pytest
import torch

import oracle
from diffconv.boundary import ghost_operator
from diffconv.torch import DiffConv2d, _native
from diffconv.torch import functional as DF
from diffconv.torch._ghosts import AxisGhosts, fold, pad

BOTH_PADDINGS = False     # these tests call the kernels themselves (conftest.ghost_kernels)

_CASES = [  # (lengths, kernel sizes, dilation, modes, order)
    ((17,), (3,), 1, ("diff", "diff"), None),
    ((9, 11), (5, 3), 1, ("diff", "diff"), None),
    ((9, 11), (5, 5), 2, ("diff", "diff"), None),
    ((12, 7), (3, 5), 1, ("reflect", "diff"), 1),
    ((8, 10), (3, 3), 1, ("circular", "circular"), None),
    ((10, 6), (5, 3), 1, ("zeros", "replicate"), 0),
    ((6, 7, 8), (3, 5, 3), 1, ("diff", "diff"), None),
    ((6, 7, 9), (5, 3, 3), 2, ("replicate", "diff"), 2),
]


def _axes(lengths, ks, d, modes, order) -> tuple[AxisGhosts, ...]:
    return tuple(AxisGhosts.of(2 + a, ghost_operator(L, k, d, *oracle.same_widths(k, d), modes, order))
                 for a, (L, k) in enumerate(zip(lengths, ks)))


def _oracle_pad(x: np.ndarray, lengths, ks, d, modes, order) -> np.ndarray:
    return oracle.pad(x, [oracle.same_widths(k, d) for k in ks], [modes] * len(lengths), list(ks), d,
                      [order] * len(lengths))


def _plan(axes):
    plan = _native.plan_for(torch.zeros(1, 1, *(g.length for g in axes)), axes)
    if plan is None:
        pytest.skip("the C++ ghost kernels are not built here (no compiler or ninja)")
    return plan


def test_the_kernels_build_where_a_compiler_is():
    if shutil.which("ninja") is None or shutil.which("c++") is None:
        pytest.skip("no C++ compiler or ninja on this machine")
    assert _native.available()


@pytest.mark.parametrize("case", _CASES, ids=lambda c: f"{len(c[0])}d-{c[3][0]}-d{c[2]}")
def test_pad_is_the_oracle_padding_and_fold_its_transpose(case):
    axes = _axes(*case)
    plan = _plan(axes)
    rng = np.random.default_rng(len(case[0]))
    x = rng.standard_normal((2, 3, *case[0]))
    want = _oracle_pad(x, *case)
    got = plan.pad(torch.tensor(x))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(want.shape)
    lhs = (want * g).sum()
    rhs = (x * plan.fold(torch.tensor(g)).numpy()).sum()
    assert abs(lhs - rhs) < 1e-10 * max(1.0, abs(lhs))


@pytest.mark.parametrize("case", _CASES, ids=lambda c: f"{len(c[0])}d-{c[3][0]}-d{c[2]}")
def test_the_kernels_give_what_the_pytorch_operations_give(case):
    axes = _axes(*case)
    plan = _plan(axes)
    x = torch.randn(2, 3, *case[0], dtype=torch.float64)
    torch.testing.assert_close(plan.pad(x), pad(x, axes), rtol=1e-13, atol=1e-12)
    g = torch.randn_like(plan.pad(x))
    torch.testing.assert_close(plan.fold(g.clone()), fold(g.clone(), axes), rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_ghosts_are_summed_in_float32(dtype):
    """Along one axis, one rounding of the float32 sum: what the PyTorch operations give, to one
    unit in the dtype's last place (two float32 sums may round apart). Corners (ghosts of ghosts)
    amplify that unit by their weights: there, no further from the float64 padding than the
    PyTorch operations are."""
    eps = torch.finfo(dtype).eps
    line = _axes((17,), (5,), 1, ("diff", "diff"), None)
    x = (torch.randn(2, 3, 17) * 50).to(dtype)
    got = _plan(line).pad(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), pad(x.float(), line).to(dtype).float(), rtol=2 * eps, atol=0)
    g = torch.randn_like(got)
    torch.testing.assert_close(_plan(line).fold(g.clone()).float(), fold(g.float(), line), rtol=4 * eps, atol=4 * eps)

    case = _CASES[1]
    axes = _axes(*case)
    x = (torch.randn(2, 3, *case[0]) * 50).to(dtype)
    exact = torch.tensor(_oracle_pad(x.double().numpy(), *case))
    err_native = (_plan(axes).pad(x).double() - exact).abs().max()
    err_ops = (pad(x, axes).double() - exact).abs().max()
    assert err_native <= 2 * err_ops + eps * exact.abs().max()


def test_a_nan_stays_in_the_ghosts_that_read_it():
    """A dilation-2 kernel's ghosts read every other sample: a NaN on one lattice stays off the other's."""
    case = ((14,), (3,), 2, ("diff", "diff"), None)
    plan = _plan(_axes(*case))
    x = torch.ones(1, 1, 14, dtype=torch.float64)
    x[0, 0, 1] = float("nan")
    got = plan.pad(x)[0, 0]
    want = torch.tensor(_oracle_pad(np.ones((1, 1, 14)), *case)[0, 0])
    padding = oracle.pad(np.eye(14)[None], [(2, 2)], kernel_sizes=3, dilations=2)[0].T   # (18, 14)
    reads = torch.tensor(padding[:, 1] != 0)
    assert torch.isnan(got[reads]).all()
    assert torch.equal(got[~reads], want[~reads])


def test_a_failed_build_warns_once_and_the_layer_runs_on_pytorch_operations(monkeypatch):
    import torch.utils.cpp_extension as ext

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(ext, "load", no_compiler)
    monkeypatch.setattr(_native, "_state", {"enabled": True, "module": None, "failed": None})
    monkeypatch.setattr(_native, "_PLANS", {})
    m = DiffConv2d(2, 3, 3).double()
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="did not build.*Ninja is required"):
        y = m(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y2 = m(x)
    want = oracle.diff_conv(x.detach().numpy(), m.weight.detach().numpy(), m.bias.detach().numpy())
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    assert torch.equal(y, y2)
    y.sum().backward()
    assert x.grad is not None


def test_disabled_turns_the_kernels_off_and_back_on():
    lay = DF.conv_layout((9, 9), (3, 3), (1, 1), (1, 1), (("diff", "diff"),) * 2, (None, None), False)
    x = torch.randn(1, 2, 9, 9)
    on = _native.plan_for(x, lay.axes)
    with _native.disabled():
        assert _native.plan_for(x, lay.axes) is None
    assert (_native.plan_for(x, lay.axes) is None) == (on is None)
    assert _native.plan_for(x.transpose(2, 3), lay.axes) is None     # not contiguous: PyTorch operations
    assert _native.plan_for(x.to(torch.int32), lay.axes) is None


# ------------------------------------------------------------- a transposed layer's ghost ring

def _slots(rows, buckets, taps):
    if _native.kernels() is None:
        pytest.skip("the C++ ghost kernels are not built here (no compiler or ninja)")
    return _native.kernels().Slots(rows, buckets, taps)


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_ring_slots_gather_their_rows_and_scatter_is_the_transpose(groups):
    """``Slots``: each slot the weighted sum its row names (a row in several slots, empty rows and
    zero slots included), laid out per bucket, tap and group; the scatter is its exact transpose."""
    rng = np.random.default_rng(groups)
    S, Q = 30, 7
    rows = [[(int(i), float(v)) for i, v in zip(rng.choice(S, n, replace=False), rng.normal(size=n))]
            for n in rng.integers(0, 4, Q)]
    taps, per = [3, 2], [4, 1]                                        # two buckets
    buckets = [rng.integers(0, Q + 1, t * p).tolist() for t, p in zip(taps, per)]      # Q: a zero slot
    ring = _slots(rows, buckets, taps)
    N, C = 2, 3 * groups
    x = torch.randn(N, C, 5, 6, dtype=torch.float64)
    got = ring.gather(x, groups)                                      # per bucket (taps * groups, per * N, C / groups)
    for slots, t, p, out in zip(buckets, taps, per, got):
        dense = np.zeros((len(slots), S))                             # slot -> position weights
        for k, q in enumerate(slots):
            for i, v in (rows[q] if q < Q else []):
                dense[k, i] += v
        want = np.einsum("ks,ncs->knc", dense, x.flatten(2).numpy())  # (slots, N, C)
        want = want.reshape(t, p, N, groups, C // groups).transpose(0, 3, 1, 2, 4).reshape(out.shape)
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-13, atol=1e-13)
    cot = [torch.randn(out.shape, dtype=torch.float64) for out in got]
    dx = torch.zeros_like(x)
    ring.scatter_add_(dx, cot)
    torch.testing.assert_close(sum((o * c).sum() for o, c in zip(got, cot)), (dx * x).sum(), rtol=1e-12, atol=1e-12)


def test_ring_taps_are_the_weight_per_tap_and_add_taps_its_transpose():
    if _native.kernels() is None:
        pytest.skip("the C++ ghost kernels are not built here (no compiler or ninja)")
    w = torch.randn(6, 4, 3, 2, dtype=torch.float64)                 # (C_in, C_out/groups, *k), groups 2
    buckets = [[5, 0, 3], [2]]
    got = _native.kernels().taps_of(w, buckets, 2)                    # per bucket (taps * groups, C_in/2, C_out/2)
    shares = [torch.randn(t.shape, dtype=torch.float64) for t in got]
    dw = torch.zeros_like(w)
    _native.kernels().add_taps_(dw, shares, buckets)
    for taps, t in zip(buckets, got):
        assert torch.equal(t, w.reshape(2, 3, 4, 6)[..., taps].permute(3, 0, 1, 2).reshape(t.shape))
    torch.testing.assert_close(sum((t * s).sum() for t, s in zip(got, shares)), (dw * w).sum(),
                               rtol=1e-12, atol=1e-12)


def _transposed(x, w, b, kernels: bool, **kw):
    with contextlib.nullcontext() if kernels else _native.disabled():
        x = x.detach().requires_grad_()
        w = w.detach().requires_grad_()
        y = DF.conv_transpose2d(x, w, b, **kw)
        y.backward(torch.ones_like(y))
    return y.detach(), x.grad, w.grad


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1), dict(stride=2, padding=2, output_padding=1),
                                dict(stride=3, padding=0, dilation=2), dict(stride=2, padding=1, groups=2)])
def test_the_ring_gives_what_the_padded_input_gives(kw):
    """The plain layer plus its ghost ring (C++) against the convolution of the ghost-padded
    input (the PyTorch operations), values and gradients."""
    _slots([], [[0]], [1])
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    w = torch.randn(4, 3, 5, 4, dtype=torch.float64)
    b = torch.randn(3 * kw.get("groups", 1), dtype=torch.float64)
    for got, want in zip(_transposed(x, w, b, True, **kw), _transposed(x, w, b, False, **kw)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_ring_in_low_precision(dtype):
    """Within the precision's own error of the float64 layer, as the padded input is."""
    _slots([], [[0]], [1])
    x, w = torch.randn(2, 8, 6, 6), torch.randn(8, 4, 3, 3)
    kw = dict(stride=2, padding=1, output_padding=1)
    exact = _transposed(x.double(), w.double(), None, True, **kw)
    ring = _transposed(x.to(dtype), w.to(dtype), None, True, **kw)
    padded = _transposed(x.to(dtype), w.to(dtype), None, False, **kw)
    for r, p, e in zip(ring, padded, exact):
        assert r.dtype == dtype
        scale = e.abs().max()
        assert (r.double() - e).abs().max() <= 2 * (p.double() - e).abs().max() + 4e-3 * scale


def test_a_nan_reaches_through_the_ring_what_it_reaches_through_the_padded_input():
    _slots([], [[0]], [1])
    x, w = torch.randn(1, 2, 6, 6, dtype=torch.float64), torch.randn(2, 2, 3, 3, dtype=torch.float64)
    x[0, 1, 5, 2] = float("nan")
    kw = dict(stride=2, padding=1, output_padding=1)
    for got, want in zip(_transposed(x, w, None, True, **kw), _transposed(x, w, None, False, **kw)):
        assert torch.equal(torch.isnan(got), torch.isnan(want))
        torch.testing.assert_close(got.nan_to_num(), want.nan_to_num(), rtol=1e-12, atol=1e-12)


def test_the_ring_takes_channels_last_weights():
    """A channels-last weight makes oneDNN's output channels-last; the ring still adds onto it."""
    _slots([], [[0]], [1])
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    kw = dict(stride=2, padding=1, output_padding=1)
    want = _transposed(x, w, None, False, **kw)
    got = _transposed(x, w.contiguous(memory_format=torch.channels_last), None, True, **kw)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
