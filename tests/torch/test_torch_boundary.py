"""``boundary=`` and ``order=`` through the torch public API, against the oracle: functionals
and modules in 1-3 d, stride, dilation, even kernels, edge kernel and switch with mixed sides,
transposed layers, short axes, gradcheck; the module surface; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import oracle
from diffconv.torch import DiffConv1d, DiffConv2d, DiffConv3d, DiffConvTranspose2d, convert
from diffconv.torch import functional as DF

CONV = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}
TRANSPOSE = {1: DF.conv_transpose1d, 2: DF.conv_transpose2d, 3: DF.conv_transpose3d}

CASES = [  # lengths, kernel, stride, dilation, boundary, order
    ((11,), (3,), 1, 1, "zeros", None),
    ((9,), (4,), 2, 1, [("reflect", "diff")], 1),
    ((12,), (3,), 1, 3, "circular", None),
    ((2,), (5,), 1, 1, "replicate", None),                              # short axis
    ((8, 9), (3, 3), 1, 1, ("diff", "circular"), None),                 # latitude x longitude
    ((7, 10), (5, 4), (2, 1), (1, 2), [("zeros", "reflect"), ("diff", "replicate")], (2, 1)),
    ((3, 12), (5, 3), 1, 1, ["diff", "circular"], 0),                   # short first axis
    ((5, 6, 7), (3, 3, 3), 2, 1, ["circular", ("diff", "zeros"), "reflect"], (None, 1, 2)),
]


@pytest.mark.parametrize("lengths, ks, stride, dilation, boundary, order", CASES)
@pytest.mark.parametrize("edge", [False, True])
def test_functional_matches_the_oracle(lengths, ks, stride, dilation, boundary, order, edge):
    nd = len(lengths)
    rng = np.random.default_rng(len(lengths) + sum(ks))
    x, w, b = rng.standard_normal((2, 3, *lengths)), rng.standard_normal((4, 3, *ks)), rng.standard_normal(4)
    ew, eb = (rng.standard_normal(w.shape), rng.standard_normal(4)) if edge else (None, None)
    want = oracle.diff_conv(x, w, b, stride, dilation, boundary=boundary, order=order, edge_weight=ew, edge_bias=eb)
    t = lambda a: None if a is None else torch.tensor(a)  # noqa: E731
    got = CONV[nd](t(x), t(w), t(b), stride, dilation, edge_weight=t(ew), edge_bias=t(eb),
                   boundary=boundary, order=order)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("lengths, ks, stride, dilation, boundary, order", CASES[:6])
@pytest.mark.parametrize("switch", [True, False])
def test_gradcheck(lengths, ks, stride, dilation, boundary, order, switch):
    """Gradients in float64; with the switch off, the boundary outputs (reaching a non-circular
    ghost) pass nothing to the input: gradcheck of the interior-masked output."""
    nd = len(lengths)
    g = torch.Generator().manual_seed(nd)
    x = torch.randn(1, 2, *lengths, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, *ks, generator=g, dtype=torch.float64, requires_grad=True)
    if switch:
        f = lambda x, w: CONV[nd](x, w, None, stride, dilation, boundary=boundary, order=order)  # noqa: E731
        assert torch.autograd.gradcheck(f, (x, w))
        return
    mask = torch.tensor(oracle.boundary_mask(lengths, ks, stride, dilation, boundary))
    y = CONV[nd](x, w, None, stride, dilation, boundary=boundary, order=order, boundary_input_grad=False)
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y) * mask)
    assert torch.equal(gx, torch.zeros_like(gx))
    interior = lambda x: CONV[nd](x, w.detach(), None, stride, dilation, boundary=boundary, order=order,  # noqa: E731
                                  boundary_input_grad=False) * ~mask
    assert torch.autograd.gradcheck(interior, (x,))


@pytest.mark.parametrize("lengths, ks, stride, padding, out_pad, dilation, boundary, order", [
    ((6,), (4,), 2, 1, 0, 1, "zeros", None),
    ((3,), (2,), 1, 0, 1, 2, "diff", None),                   # output_padding >= stride (dilation 2)
    ((7,), (3,), 2, 0, 1, 1, [("reflect", "replicate")], 0),
    ((5, 6), (4, 3), 2, (1, 0), 0, 1, ("diff", "circular"), (1, None)),
    ((4, 5, 3), (3, 3, 3), 1, 1, 0, (1, 2, 1), ["replicate", "diff", ("zeros", "diff")], None),
])
def test_transposed_matches_the_oracle(lengths, ks, stride, padding, out_pad, dilation, boundary, order):
    nd = len(lengths)
    rng = np.random.default_rng(nd)
    x, w, b = rng.standard_normal((2, 4, *lengths)), rng.standard_normal((4, 3, *ks)), rng.standard_normal(3)
    want = oracle.conv_transpose(x, w, b, stride, padding, out_pad, 1, dilation, boundary=boundary, order=order)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    got = TRANSPOSE[nd](xt, wt, bt, stride, padding, out_pad, 1, dilation, boundary=boundary, order=order)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-11, atol=1e-11)
    f = lambda x: TRANSPOSE[nd](x, wt.detach(), None, stride, padding, out_pad, 1, dilation,  # noqa: E731
                                boundary=boundary, order=order)
    assert torch.autograd.gradcheck(f, (xt.detach()[:1].requires_grad_(),))


def test_modules_show_the_spec_and_keep_the_state_dict():
    m = DiffConv2d(2, 3, 3, boundary=("diff", "circular"), order=1)
    assert repr(m) == "DiffConv2d(2, 3, kernel_size=(3, 3), stride=(1, 1), boundary=('diff', 'circular'), order=1)"
    plain = torch.nn.Conv2d(2, 3, 3, padding=1)
    assert set(m.state_dict()) == set(plain.state_dict())
    m.load_state_dict(plain.state_dict(), strict=True)
    t = DiffConvTranspose2d(2, 3, 4, 2, 1, boundary="replicate")
    assert "boundary='replicate'" in repr(t)
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    w = m.weight.detach().double()
    want = oracle.diff_conv(x.numpy(), w.numpy(), m.bias.detach().double().numpy(), boundary=("diff", "circular"),
                            order=1)
    np.testing.assert_allclose(m.double()(x).detach().numpy(), want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("make, error, match", [
    (lambda: DiffConv2d(2, 2, 3, boundary="wrap"), ValueError, r"boundary must be one of .*got 'wrap'"),
    (lambda: DiffConv2d(2, 2, 3, boundary=["diff"]), ValueError, r"one entry per spatial axis \(2 for a 2-d"),
    (lambda: DiffConv1d(2, 2, 3, boundary=[("circular", "zeros")]), ValueError, "circular on one side only"),
    (lambda: DiffConv3d(2, 2, 3, order=3), ValueError, r"order 3 on spatial axis 0 is out of range: .*0 to 2"),
    (lambda: DiffConvTranspose2d(2, 2, 4, 2, order=2), ValueError, r"order 2 on spatial axis 0 .* degree 0 to 1"),
    (lambda: DF.conv2d(torch.ones(1, 1, 2, 5), torch.ones(1, 1, 5, 3), boundary=("reflect", "diff")), ValueError,
     r"'reflect' on spatial axis 0 \(low side\) mirrors 2 ghost samples .* needs at least 3 samples; the axis has 2"),
    (lambda: DF.conv1d(torch.ones(1, 1, 1), torch.ones(1, 1, 5), boundary="circular"), ValueError,
     r"'circular' on spatial axis 0 \(low side\) wraps 2 ghost samples around, so it needs at least 2 samples"),
    (lambda: DF.conv2d(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 3, 3), order=[1, 1, 1]), ValueError,
     r"order must be None, an int or one per spatial axis \(2\)"),
])
def test_bad_specs_get_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_circular_layer_equals_torch_circular_padding():
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(3, 4, 5, padding=2, padding_mode="circular").double()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(convert(conv)(x), conv(x), rtol=1e-13, atol=1e-13)
