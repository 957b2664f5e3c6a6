"""Numerical behaviour: NaN/Inf, empty batch, determinism, float16/bfloat16 and autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import oracle
from diffconv.torch import DiffConv2d, DiffConvTranspose2d
from diffconv.torch import functional as DF
from torch_truths import rel_err, zero_padded_conv


def test_interior_nan_and_inf_propagate_like_ordinary_conv():
    torch.manual_seed(0)
    w = torch.rand(2, 1, 3, 3) + 0.1             # positive: no inf - inf inside the kernel sum
    for bad in (float("nan"), float("inf")):
        x = torch.rand(1, 1, 12, 12)
        x[0, 0, 6, 5] = bad
        y = DF.conv2d(x, w)
        z = F.conv2d(x, w, padding="same")
        assert torch.equal(torch.isnan(y), torch.isnan(z))
        assert torch.equal(torch.isinf(y), torch.isinf(z))
        assert torch.isfinite(y).sum() == y.numel() - 2 * 9


def test_border_nan_reaches_exactly_the_outputs_that_depend_on_it():
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 1.5, (1, 1, 3, 4))
    x = np.ones((1, 1, 9, 10))
    x[0, 0, 2, 0] = np.nan
    y = DF.conv2d(torch.from_numpy(x), torch.from_numpy(w))
    # Dependence on that sample, from the linear reference: its response to a unit impulse there.
    impulse = np.zeros_like(x)
    impulse[0, 0, 2, 0] = 1.0
    depends = np.abs(oracle.diff_conv(impulse, w)) > 1e-12
    in_window = zero_padded_conv(torch.from_numpy(impulse), torch.from_numpy(w), (1, 1), (1, 1)).abs() > 0
    assert depends.sum() > in_window.sum()       # the ghosts spread it beyond the plain windows
    assert np.array_equal(torch.isnan(y).numpy(), depends)


@pytest.mark.parametrize("edge", [False, True])
def test_empty_batch(edge):
    w = torch.randn(3, 2, 3, 2, requires_grad=True)
    x = torch.randn(0, 2, 6, 5, requires_grad=True)
    y = DF.conv2d(x, w, stride=2, edge_weight=w.detach().clone() if edge else None)
    assert y.shape == (0, 3, 3, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_deterministic_on_cpu():
    torch.manual_seed(2)
    m = DiffConv2d(3, 4, 5, stride=2, edge_kernel=True)
    x = torch.randn(2, 3, 11, 12, requires_grad=True)
    runs = []
    for _ in range(3):
        x.grad = None
        m.zero_grad()
        y = m(x)
        y.square().sum().backward()
        runs.append((y.detach().clone(), x.grad.clone(), m.weight.grad.clone()))
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))


def _smooth(shape, dtype=torch.float32):
    grids = torch.meshgrid(*[torch.linspace(0, 1, n) for n in shape[2:]], indexing="ij")
    base = torch.sin(3 * grids[0] + 1) * torch.cos(2 * grids[1] - 0.5) + 0.5 * grids[0] * grids[1]
    scale = torch.arange(1, shape[0] * shape[1] + 1, dtype=torch.float32).reshape(shape[:2] + (1, 1)) / 4
    return (base * scale).to(dtype)


def _low_precision_case(k, dtype):
    x32 = _smooth((2, 3, 16, 14))
    g = torch.Generator().manual_seed(k)
    w32 = torch.randn(4, 3, k, k, generator=g) / k
    b32 = torch.randn(4, generator=g)
    args32 = (x32, w32, b32, w32 * 1.5, b32 - 1)
    return args32, tuple(t.to(dtype) for t in args32)


def _run(x, w, b, ew, eb):
    return DF.conv2d(x, w, b, edge_weight=ew, edge_bias=eb)


# The rounding of the input itself is amplified by the ghost weights (docs/limits.md): beyond
# these kernel sizes the low-precision input no longer determines its border to this accuracy.
@pytest.mark.parametrize("dtype,tol,k", [
    (torch.float16, 0.01, 2), (torch.float16, 0.01, 3), (torch.float16, 0.01, 4),
    (torch.bfloat16, 0.05, 2), (torch.bfloat16, 0.05, 3),
])
def test_low_precision_close_to_float32(dtype, tol, k):
    args32, args_lp = _low_precision_case(k, dtype)
    y = _run(*args_lp)
    assert y.dtype == dtype
    assert rel_err(y.float(), _run(*args32)) < tol


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 0.01), (torch.bfloat16, 0.03)])
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_low_precision_close_to_float32_of_the_same_samples(dtype, tol, k):
    """What the implementation adds on top of the input's own rounding stays at the dtype's precision."""
    _, args_lp = _low_precision_case(k, dtype)
    y = _run(*args_lp)
    assert rel_err(y.float(), _run(*(t.float() for t in args_lp))) < tol


def _corner_mask(shape, pad):
    rows = torch.zeros(shape[-2], dtype=torch.bool)
    cols = torch.zeros(shape[-1], dtype=torch.bool)
    rows[: pad[2]] = rows[shape[-2] - pad[3]:] = True
    cols[: pad[0]] = cols[shape[-1] - pad[1]:] = True
    return rows[:, None] & cols[None, :]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_edge_ghosts_are_float32_ghosts_rounded(dtype):
    """Ghosts beside the data equal float32 extrapolation of the same low-precision samples, rounded once."""
    x = _smooth((1, 2, 9, 8)).to(dtype)
    pad = (2, 2, 2, 2)
    padded = DF.lagrange_pad(x, pad)
    assert padded.dtype == dtype
    expected = DF.lagrange_pad(x.float(), pad).to(dtype)
    keep = ~_corner_mask(padded.shape, pad)
    assert torch.equal(padded[..., keep], expected[..., keep])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_corner_ghosts_rounded_once(dtype):
    x = _smooth((1, 2, 9, 8)).to(dtype)
    pad = (2, 2, 2, 2)
    assert torch.equal(DF.lagrange_pad(x, pad), DF.lagrange_pad(x.float(), pad).to(dtype))


def _autocast_case():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 12, 11, generator=g)
    w = torch.randn(4, 3, 5, 4, generator=g)
    b = torch.randn(4, generator=g)
    return x, w, b


def test_autocast_bfloat16_runs_and_returns_bfloat16():
    x, w, b = _autocast_case()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = DF.conv2d(x, w, b)
        y_mod = DiffConv2d(3, 4, (5, 4)).forward(x)
    assert y.dtype == torch.bfloat16 and y_mod.dtype == torch.bfloat16
    ref = DF.conv2d(x.double(), w.double(), b.double())
    assert rel_err(y.float(), ref) < 0.05


def test_autocast_accepts_mixed_input_and_weight_dtypes():
    """As with F.conv2d under autocast, a bfloat16 input meets float32 parameters."""
    x, w, b = _autocast_case()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = DF.conv2d(x.bfloat16(), w, b)
        z = F.conv2d(x.bfloat16(), w, b)
    assert y.dtype == z.dtype == torch.bfloat16
    torch.testing.assert_close(y, DF.conv2d(x.bfloat16(), w.bfloat16(), b.bfloat16()), rtol=0, atol=0)


def test_autocast_runs_as_on_inputs_cast_to_bfloat16():
    """Autocast casts once, as for a convolution, then the layer runs as on bfloat16 inputs
    (whose ghosts and boundary terms are computed in float32)."""
    x, w, b = _autocast_case()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = DF.conv2d(x, w, b)
    assert torch.equal(y, DF.conv2d(x.bfloat16(), w.bfloat16(), b.bfloat16()))


def test_autocast_leaves_float64_alone_like_f_conv():
    x, w, b = (t.double() for t in _autocast_case())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = DF.conv2d(x, w, b)
        assert F.conv2d(x, w, b).dtype == torch.float64
    assert y.dtype == torch.float64
    assert rel_err(y, oracle.diff_conv(x.numpy(), w.numpy(), b.numpy())) < 1e-10


@pytest.mark.parametrize("make, shape", [
    (lambda: DiffConvTranspose2d(3, 4, 4, 2, 1), (2, 3, 6, 7)),
    (lambda: DiffConv2d(3, 4, 3, stride=2), (2, 3, 9, 8)),
])
def test_autocast_follows_the_convolution_rule_for_both_layers(make, shape):
    """Under ``torch.autocast`` both layers cast their operands to autocast's dtype as
    ``nn.ConvTranspose2d``/``nn.Conv2d`` do (float32 weights, bfloat16 compute), and equal the same
    layer called on the cast operands."""
    torch.manual_seed(4)
    m = make()
    x = torch.randn(*shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16
    args = (x.bfloat16(), m.weight.bfloat16(), m.bias.bfloat16())
    if isinstance(m, DiffConvTranspose2d):
        want = DF.conv_transpose2d(*args, m.stride, m.padding, 0, 1, 1)
    else:
        want = DF.conv2d(*args, m.stride)
    torch.testing.assert_close(y, want, rtol=0, atol=0)
