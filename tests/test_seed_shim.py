"""The original paper code's API (``diff_conv2d``) over diffconv.torch, held to the reference form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diff_conv2d.functional import DiffConv2d
from diff_conv2d.layers import DiffConv2dLayer
import oracle


def _rel(actual: torch.Tensor, expected: np.ndarray) -> float:
    return float(np.abs(actual.detach().numpy() - expected).max() / np.abs(expected).max())


def test_readme_snippet_runs_as_written():
    any_groups = 2
    input = torch.randn(2, 4, 10, 9, dtype=torch.float64)  # noqa: A001 - the snippet's own names
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64)

    from diff_conv2d.functional import DiffConv2d
    diff = DiffConv2d(kernel_size=3)
    output = diff.conv2d(input, weight, groups=any_groups, keep_img_grad_at_invalid=True,
                         edge_kernel=None, optimized_for='memory')

    assert output.shape == (2, 6, 10, 9)
    assert _rel(output, oracle.diff_conv(input.numpy(), weight.numpy(), groups=any_groups)) < 1e-10


@pytest.mark.parametrize("k", range(1, 10))
@pytest.mark.parametrize("groups", [1, 2])
def test_shim_equals_reference(k, groups):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(1, 2 * groups, k + 3, k + 2, generator=g, dtype=torch.float64)
    w = torch.randn(3 * groups, 2, k, k, generator=g, dtype=torch.float64)
    y = DiffConv2d(k).conv2d(x, w, groups=groups)
    assert y.shape == (1, 3 * groups, k + 3, k + 2)
    assert _rel(y, oracle.diff_conv(x.numpy(), w.numpy(), groups=groups)) < 1e-10


@pytest.mark.parametrize("optimized_for", ["memory", "speed"])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_shim_edge_kernel_equals_reference(k, optimized_for):
    g = torch.Generator().manual_seed(10 + k)
    x = torch.randn(2, 4, 9, 8, generator=g, dtype=torch.float64)
    w = torch.randn(4, 2, k, k, generator=g, dtype=torch.float64)
    ew = torch.randn(4, 2, k, k, generator=g, dtype=torch.float64)
    y = DiffConv2d(k).conv2d(x, w, groups=2, edge_kernel=ew, optimized_for=optimized_for)
    assert _rel(y, oracle.diff_conv(x.numpy(), w.numpy(), groups=2, edge_weight=ew.numpy())) < 1e-10


def test_non_square_kernel_size_pair():
    x = torch.randn(1, 1, 7, 6, dtype=torch.float64)
    w = torch.randn(2, 1, 2, 5, dtype=torch.float64)
    assert _rel(DiffConv2d((2, 5)).conv2d(x, w), oracle.diff_conv(x.numpy(), w.numpy())) < 1e-10


def test_seed_keyword_names_img_and_kernel():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    diff = DiffConv2d(3)
    assert torch.equal(diff.conv2d(img=x, kernel=w), diff.conv2d(x, w))
    with pytest.raises(TypeError, match="both weight and kernel"):
        diff.conv2d(x, w, kernel=w)
    with pytest.raises(TypeError, match="missing required argument 'weight'"):
        diff.conv2d(x)


def _boundary_rows_cols(h, w, k):
    mask = np.zeros((h, w), dtype=bool)
    lo, hi = (k - 1) // 2, k // 2
    mask[:lo, :] = mask[h - hi:, :] = True
    mask[:, :lo] = mask[:, w - hi:] = True
    return mask


def test_keep_img_grad_at_invalid_false():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    diff = DiffConv2d(3)
    y_off = diff.conv2d(x, w, keep_img_grad_at_invalid=False)
    y_on = diff.conv2d(x, w, keep_img_grad_at_invalid=True)
    torch.testing.assert_close(y_off, y_on, rtol=1e-12, atol=1e-12)
    mask = torch.from_numpy(_boundary_rows_cols(7, 8, 3))
    g_out = torch.randn(y_off.shape, generator=g, dtype=torch.float64)
    gx_b, gw_b = torch.autograd.grad((y_off * g_out * mask).sum(), (x, w), retain_graph=True)
    assert torch.equal(gx_b, torch.zeros_like(gx_b))
    assert gw_b.abs().sum() > 0
    gx_i, = torch.autograd.grad((y_off * g_out * ~mask).sum(), x)
    gx_i_on, = torch.autograd.grad((y_on * g_out * ~mask).sum(), x)
    torch.testing.assert_close(gx_i, gx_i_on, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("optimized_for", ["memory", "speed"])
def test_layer_edge_bias_applies_at_boundary(optimized_for):
    torch.manual_seed(4)
    layer = DiffConv2dLayer(4, 6, 3, groups=2, train_edge_kernel=True, optimized_for=optimized_for).double()
    with torch.no_grad():
        layer.edge_layer.bias.add_(5.0)           # make the edge bias clearly different
    x = torch.randn(2, 4, 8, 7, dtype=torch.float64)
    y = layer(x)
    p = {n: t.detach().numpy() for n, t in layer.named_parameters()}
    r = oracle.diff_conv(x.numpy(), p["inter_layer.weight"], p["inter_layer.bias"], groups=2,
                       edge_weight=p["edge_layer.weight"], edge_bias=p["edge_layer.bias"])
    assert _rel(y, r) < 1e-10
    without_edge_bias = oracle.diff_conv(x.numpy(), p["inter_layer.weight"], p["inter_layer.bias"], groups=2,
                                       edge_weight=p["edge_layer.weight"])
    assert _rel(y, without_edge_bias) > 0.1


def test_layer_without_edge_kernel_equals_reference():
    torch.manual_seed(5)
    layer = DiffConv2dLayer(2, 3, 4, keep_img_grad_at_invalid=False).double()
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    r = oracle.diff_conv(x.numpy(), layer.inter_layer.weight.detach().numpy(), layer.inter_layer.bias.detach().numpy())
    assert layer.edge_layer is None
    assert _rel(layer(x), r) < 1e-10


@pytest.mark.parametrize("train_edge_kernel", [False, True])
def test_layer_checkpoint_keys_load(train_edge_kernel):
    torch.manual_seed(6)
    src = DiffConv2dLayer(2, 4, 5, train_edge_kernel=train_edge_kernel)
    keys = {"inter_layer.weight", "inter_layer.bias"}
    if train_edge_kernel:
        keys |= {"edge_layer.weight", "edge_layer.bias"}
    assert set(src.state_dict()) == keys
    checkpoint = {name: torch.randn(t.shape) for name, t in src.state_dict().items()}
    dst = DiffConv2dLayer(2, 4, 5, train_edge_kernel=train_edge_kernel)
    dst.load_state_dict(checkpoint)
    x = torch.randn(1, 2, 10, 10)
    src.load_state_dict(dst.state_dict())
    assert torch.equal(src(x), dst(x))
    assert torch.equal(dst.inter_layer.weight, checkpoint["inter_layer.weight"])


def test_layer_attributes_and_repr():
    layer = DiffConv2dLayer(2, 2, 3, bias=False, keep_img_grad_at_invalid=False, optimized_for="speed")
    assert layer.keep_img_grad_at_invalid is False and layer.optimized_for == "speed"
    assert layer.inter_layer.bias is None
    assert isinstance(layer.inter_layer, torch.nn.Conv2d) and layer.inter_layer.padding == "same"
    assert "optimized_for='speed'" in repr(layer) and "keep_img_grad_at_invalid=False" in repr(layer)


def test_optimized_for_fast_rejected():
    x, w = torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3)
    with pytest.raises(ValueError, match=r"optimized_for must be one of \['memory', 'speed'\], got 'fast'"):
        DiffConv2d(3).conv2d(x, w, optimized_for="fast")
    with pytest.raises(ValueError, match=r"optimized_for must be one of .*got 'fast'"):
        DiffConv2dLayer(1, 1, 3, optimized_for="fast")
    layer = DiffConv2dLayer(1, 1, 3)
    layer.optimized_for = "fast"
    with pytest.raises(ValueError, match=r"optimized_for must be one of .*got 'fast'"):
        layer(x)


@pytest.mark.parametrize("kernel_size,exc,msg", [
    (3.0, TypeError, r"kernel_size must be an int \(or a pair of ints\), got 3.0"),
    ("3", TypeError, r"kernel_size must be an int \(or a pair of ints\), got '3'"),
    (True, TypeError, r"kernel_size must be an int \(or a pair of ints\), got True"),
    (0, ValueError, r"kernel_size must be >= 1, got 0"),
    ((3, 3, 3), ValueError, r"kernel_size must be an int or a sequence of 2 ints"),
])
def test_bad_kernel_size(kernel_size, exc, msg):
    with pytest.raises(exc, match=msg):
        DiffConv2d(kernel_size)


def test_weight_not_matching_kernel_size():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"weight must have shape \(out_channels, in_channels/groups, 3, 3\) "
                                         r"for kernel_size=3, got \(1, 2, 5, 5\)"):
        DiffConv2d(3).conv2d(x, torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"edge_kernel must have the same shape as weight \(1, 2, 3, 3\), got \(1, 2, 3, 2\)"):
        DiffConv2d(3).conv2d(x, torch.randn(1, 2, 3, 3), edge_kernel=torch.randn(1, 2, 3, 2))


def test_keep_img_grad_at_invalid_must_be_bool():
    with pytest.raises(TypeError, match=r"keep_img_grad_at_invalid must be a bool, got 1"):
        DiffConv2d(3).conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), keep_img_grad_at_invalid=1)
