"""The C++ ghost kernels (``diffconv/torch/csrc/ghosts.cpp``) against the oracle's padding, the
PyTorch operations they stand in for, and their fallback.

Everything else in ``tests/torch`` runs on both paddings (``conftest.ghost_kernels``); these
tests call the kernels directly.
"""

from __future__ import annotations

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
