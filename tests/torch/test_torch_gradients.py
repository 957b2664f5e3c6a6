"""Gradients: gradcheck/gradgradcheck in float64, and the boundary input-gradient switch."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from diffconv.torch import functional as DF
from torch_truths import boundary_mask, zero_padded_conv

FUNCS = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}

# (nd, lengths, kernel, stride, dilation, groups, edge, boundary_input_grad)
GRAD_CASES = {
    "plain-2d": (2, (4, 3), (3, 2), 1, 1, 1, False, True),
    "plain-2d-square-kernel": (2, (5, 4), (3, 3), 1, 1, 1, False, True),
    "plain-2d-k5-grouped": (2, (5, 6), (5, 5), 1, 1, 2, False, True),
    "plain-1d-even": (1, (6,), (4,), 1, 1, 1, False, True),
    "plain-3d": (3, (3, 2, 2), (3, 1, 2), 1, 1, 1, False, True),
    "edge-kernel-2d": (2, (3, 4), (3, 2), 1, 1, 1, True, True),
    "boundary-switch": (2, (4, 3), (3, 2), 1, 1, 1, False, False),
    "edge-and-switch": (1, (7,), (3,), 1, 1, 1, True, False),
    "strided": (2, (5, 4), (3, 2), (2, 3), 1, 1, False, True),
    "dilated": (2, (6, 3), (3, 2), 1, (2, 1), 1, False, True),
    "grouped-strided-dilated": (1, (9,), (3,), 2, 2, 2, True, True),
}



# Second order with an edge kernel costs seconds in 2-d (one small convolution per boundary
# block); the 1-d edge cases ("edge-and-switch", "grouped-strided-dilated") cover it.
FIRST_ORDER_ONLY = {"edge-kernel-2d"}


def _grad_inputs(nd, lengths, ks, groups, edge, input_grad, seed=0):
    g = torch.Generator().manual_seed(seed)
    cin, cout = 2 * groups if groups > 1 else 1, 2
    mk = lambda *shape: torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)  # noqa: E731
    # With boundary_input_grad=False the input gradient is deliberately not the derivative: hold x fixed.
    x = mk(1, cin, *lengths).requires_grad_(input_grad)
    w = mk(cout, cin // groups, *ks)
    b = mk(cout)
    tensors = [x, w, b]
    if edge:
        tensors += [mk(cout, cin // groups, *ks), mk(cout)]
    return tensors


@pytest.mark.parametrize("case", list(GRAD_CASES), ids=list(GRAD_CASES))
def test_gradcheck_and_gradgradcheck(case):
    nd, lengths, ks, stride, dilation, groups, edge, big = GRAD_CASES[case]
    tensors = _grad_inputs(nd, lengths, ks, groups, edge, input_grad=big)

    def f(x, w, b, ew=None, eb=None):
        return FUNCS[nd](x, w, b, stride, dilation, groups, edge_weight=ew, edge_bias=eb, boundary_input_grad=big)

    assert gradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=True)
    if case not in FIRST_ORDER_ONLY:
        assert gradgradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=True)


def _switch_setup(nd, lengths, ks, stride, dilation, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, 3) + lengths, generator=g, dtype=torch.float64)
    w = torch.randn((4, 3) + ks, generator=g, dtype=torch.float64)
    ew = torch.randn(w.shape, generator=g, dtype=torch.float64)
    mask = boundary_mask(lengths, ks, dilation, stride)
    return x, w, ew, mask


def _grads(nd, x, w, ew, stride, dilation, big, weights_out):
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    ew = ew.clone().requires_grad_(True)
    y = FUNCS[nd](x, w, None, stride, dilation, edge_weight=ew, boundary_input_grad=big)
    (y * weights_out).sum().backward()
    return x.grad, w.grad, ew.grad


SWITCH_CASES = [
    (1, (8,), (3,), (1,), (1,)),
    (2, (6, 7), (3, 4), (1, 1), (1, 1)),
    (2, (9, 8), (3, 2), (2, 3), (2, 1)),
    (3, (4, 5, 4), (2, 3, 3), (1, 2, 1), (1, 1, 1)),
]


@pytest.mark.parametrize("nd,lengths,ks,stride,dilation", SWITCH_CASES)
def test_boundary_outputs_pass_no_input_gradient(nd, lengths, ks, stride, dilation):
    x, w, ew, mask = _switch_setup(nd, lengths, ks, stride, dilation)
    assert mask.any() and not mask.all()
    g_out = torch.randn((2, 4) + tuple(mask.shape), dtype=torch.float64) * mask
    gx, gw, gew = _grads(nd, x, w, ew, stride, dilation, False, g_out)
    assert torch.equal(gx, torch.zeros_like(gx))
    # The weights still learn from the boundary outputs: same gradients as with the switch on.
    gx_on, gw_on, gew_on = _grads(nd, x, w, ew, stride, dilation, True, g_out)
    assert gx_on.abs().max() > 0
    assert gew.abs().max() > 0
    torch.testing.assert_close(gw, gw_on, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gew, gew_on, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd,lengths,ks,stride,dilation", SWITCH_CASES)
def test_interior_gradients_unchanged_by_switch(nd, lengths, ks, stride, dilation):
    x, w, ew, mask = _switch_setup(nd, lengths, ks, stride, dilation, seed=1)
    g_out = torch.randn((2, 4) + tuple(mask.shape), dtype=torch.float64) * ~mask
    gx_off, gw_off, _ = _grads(nd, x, w, ew, stride, dilation, False, g_out)
    # Interior windows never see a ghost, so a zero-padded convolution is an independent truth there.
    xz = x.clone().requires_grad_(True)
    wz = w.clone().requires_grad_(True)
    (zero_padded_conv(xz, wz, stride, dilation) * g_out).sum().backward()
    torch.testing.assert_close(gx_off, xz.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw_off, wz.grad, rtol=1e-12, atol=1e-12)
    gx_on, _, _ = _grads(nd, x, w, ew, stride, dilation, True, g_out)
    torch.testing.assert_close(gx_off, gx_on, rtol=1e-12, atol=1e-12)


def test_switch_does_not_change_forward_values():
    x, w, ew, _ = _switch_setup(2, (6, 6), (3, 3), (1, 1), (1, 1))
    on = DF.conv2d(x, w, edge_weight=ew)
    off = DF.conv2d(x, w, edge_weight=ew, boundary_input_grad=False)
    torch.testing.assert_close(on, off, rtol=1e-12, atol=1e-12)
