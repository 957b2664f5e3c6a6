"""DiffConvNd modules: nn.ConvNd compatibility (subclass, state dicts, repr)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffconv.torch import DiffConv1d, DiffConv2d, DiffConv3d
from diffconv.torch import functional as DF

PAIRS = [(DiffConv1d, nn.Conv1d, 1), (DiffConv2d, nn.Conv2d, 2), (DiffConv3d, nn.Conv3d, 3)]


@pytest.mark.parametrize("diff_cls,conv_cls,nd", PAIRS)
def test_is_conv_subclass(diff_cls, conv_cls, nd):
    m = diff_cls(2, 3, 3)
    assert isinstance(m, conv_cls)
    assert m.padding == (0,) * nd


@pytest.mark.parametrize("diff_cls,conv_cls,nd", PAIRS)
def test_conv_state_dict_loads_and_interior_matches(diff_cls, conv_cls, nd):
    torch.manual_seed(0)
    conv = conv_cls(4, 6, 3, padding=1, groups=2, dtype=torch.float64)
    m = diff_cls(4, 6, 3, groups=2, dtype=torch.float64)
    m.load_state_dict(conv.state_dict())
    assert set(m.state_dict()) == {"weight", "bias"}
    x = torch.randn((2, 4) + (6,) * nd, dtype=torch.float64)
    with torch.no_grad():
        y, z = m(x), conv(x)
    inner = (slice(None), slice(None)) + (slice(1, -1),) * nd
    torch.testing.assert_close(y[inner], z[inner], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(y, z)  # the border differs from zero padding


def test_edge_kernel_fills_edge_parameters_from_conv_checkpoint():
    conv = nn.Conv2d(3, 5, (3, 2), padding="same", dtype=torch.float64)
    m = DiffConv2d(3, 5, (3, 2), edge_kernel=True, dtype=torch.float64)
    m.load_state_dict(conv.state_dict())
    for edge, main in (("edge_weight", "weight"), ("edge_bias", "bias")):
        assert torch.equal(getattr(m, edge), getattr(conv, main))
    # With edge parameters equal to the main ones the layer equals the plain DiffConv2d.
    plain = DiffConv2d(3, 5, (3, 2), dtype=torch.float64)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(1, 3, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), plain(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("edge_kernel", [False, True])
def test_state_dict_round_trip(edge_kernel):
    torch.manual_seed(1)
    a = DiffConv2d(2, 4, 3, stride=2, dilation=2, edge_kernel=edge_kernel, boundary_input_grad=False)
    if edge_kernel:
        with torch.no_grad():
            a.edge_weight.normal_()
            a.edge_bias.normal_()
    b = DiffConv2d(2, 4, 3, stride=2, dilation=2, edge_kernel=edge_kernel, boundary_input_grad=False)
    b.load_state_dict(a.state_dict())
    expected = {"weight", "bias"} | ({"edge_weight", "edge_bias"} if edge_kernel else set())
    assert set(a.state_dict()) == expected
    x = torch.randn(2, 2, 9, 8)
    assert torch.equal(a(x), b(x))


def test_diffconv_state_dict_loads_into_plain_conv():
    m = DiffConv2d(2, 3, 5)
    conv = nn.Conv2d(2, 3, 5, padding=2)
    conv.load_state_dict(m.state_dict())
    assert torch.equal(conv.weight, m.weight) and torch.equal(conv.bias, m.bias)


def test_module_forward_equals_functional():
    torch.manual_seed(2)
    m = DiffConv3d(2, 2, (2, 3, 1), stride=(1, 2, 1), dilation=(2, 1, 1), edge_kernel=True, bias=False)
    x = torch.randn(1, 2, 5, 6, 4)
    y = DF.conv3d(x, m.weight, None, m.stride, m.dilation, edge_weight=m.edge_weight, edge_bias=None)
    assert m.edge_bias is None
    assert torch.equal(m(x), y)


def test_repr_shows_options():
    r = repr(DiffConv2d(2, 3, 3, stride=2, edge_kernel=True, boundary_input_grad=False))
    assert r.startswith("DiffConv2d(2, 3, kernel_size=(3, 3), stride=(2, 2)")
    assert "edge_kernel=True" in r and "boundary_input_grad=False" in r
    plain = repr(DiffConv1d(1, 1, 4))
    assert "edge_kernel" not in plain and "boundary_input_grad" not in plain


def test_module_trains_edge_parameters():
    torch.manual_seed(3)
    m = DiffConv2d(1, 1, 3, edge_kernel=True)
    m(torch.randn(2, 1, 6, 6)).square().sum().backward()
    for p in (m.weight, m.bias, m.edge_weight, m.edge_bias):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name,value", [("edge_kernel", 1), ("boundary_input_grad", "no")])
def test_module_bool_options_validated(name, value):
    with pytest.raises(TypeError, match=f"{name} must be a bool, got {value!r}"):
        DiffConv2d(1, 1, 3, **{name: value})
