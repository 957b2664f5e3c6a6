"""Short axes (docs/design.md): any length >= 1 works, with lower-order ghosts where a lattice holds
fewer than k samples. Truth: exact-fraction ghost extension written in ``torch_truths`` plus a
VALID convolution in float64; gradients by gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffconv.torch import DiffConv2d, convert
from diffconv.torch import functional as DF
from torch_truths import ghost_truth, rel_err

FUNCS = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}


def _check(lengths, ks, stride=1, dilation=1, edge=False, bgrad=True, seed=0):
    nd = len(lengths)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, 2) + tuple(lengths), generator=g, dtype=torch.float64)
    w = torch.randn((3, 2) + tuple(ks), generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    ew, eb = (torch.randn(w.shape, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)) \
        if edge else (None, None)
    y = FUNCS[nd](x, w, b, stride, dilation, edge_weight=ew, edge_bias=eb, boundary_input_grad=bgrad)
    want = ghost_truth(x, w, b, stride, dilation, 1, ew, eb)
    assert y.shape == want.shape
    assert rel_err(y, want) < 1e-9, (lengths, ks, stride, dilation)


def test_every_short_length_in_1d_for_k_up_to_7_and_dilation_up_to_3():
    for k in range(2, 8):
        for d in (1, 2, 3):
            for length in range(1, k * d):
                _check((length,), (k,), dilation=d)


@pytest.mark.parametrize("stride", [2, 3])
def test_short_1d_axes_with_strides_edge_kernel_and_switch(stride):
    for k, d in ((3, 1), (4, 2), (5, 1), (6, 3), (7, 2)):
        for length in range(1, k * d, 2):
            _check((length,), (k,), stride, d, edge=True, bgrad=length % 2 == 0)


@pytest.mark.parametrize("lengths,ks,stride,dilation", [
    ((1, 1), (3, 3), 1, 1), ((2, 9), (3, 3), 1, 1), ((4, 4), (5, 5), 1, 1), ((2, 3), (7, 4), 2, 1),
    ((5, 2), (3, 3), 1, 3), ((1, 70), (3, 3), 1, 1), ((3, 64), (5, 5), 1, 1),
])
def test_short_2d_axes(lengths, ks, stride, dilation):
    _check(lengths, ks, stride, dilation)
    _check(lengths, ks, stride, dilation, edge=True, bgrad=False, seed=1)


@pytest.mark.parametrize("lengths,ks", [((1, 2, 3), (3, 3, 3)), ((2, 5, 1), (3, 2, 5))])
def test_short_3d_axes(lengths, ks):
    _check(lengths, ks)


@pytest.mark.parametrize("lengths,ks,dilation", [((2, 3), (3, 3), 1), ((1, 4), (5, 3), 1), ((3,), (3,), 2)])
def test_gradients_on_short_axes_by_gradcheck(lengths, ks, dilation):
    nd = len(lengths)
    x = torch.randn((1, 2) + lengths, dtype=torch.float64, requires_grad=True)
    w = torch.randn((2, 2) + ks, dtype=torch.float64, requires_grad=True)
    ew = torch.randn((2, 2) + ks, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: FUNCS[nd](x, w, dilation=dilation), (x, w))
    assert torch.autograd.gradcheck(lambda x, w, ew: FUNCS[nd](x, w, dilation=dilation, edge_weight=ew), (x, w, ew))


def test_lagrange_pad_on_a_short_axis_follows_the_rule():
    """Two samples, k = 3: the ghosts lie on the line through them."""
    x = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    assert DF.lagrange_pad(x, (2, 3), kernel_size=3).tolist() == [[-3.0, -1.0, 1.0, 3.0, 5.0, 7.0, 9.0]]


class _Encoder(nn.Module):
    """Five levels of zero-padded convolutions down to 1x1 (the model of the issue)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in ((3, 8), (8, 16), (16, 16), (16, 16), (16, 16)))
        self.res = nn.Conv2d(16, 16, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.relu(block(x))
            x = nn.functional.max_pool2d(x, 2) if x.shape[-1] > 1 else x
        return self.res(x).mean((2, 3))


def test_converted_deep_encoder_runs_and_trains_down_to_1x1():
    torch.manual_seed(0)
    model = _Encoder()
    x = torch.randn(4, 3, 32, 32)
    model(x)                                            # the zero-padded original runs
    diff = convert(model)
    assert sum(isinstance(m, DiffConv2d) for m in diff.modules()) == 6
    opt = torch.optim.Adam(diff.parameters(), lr=1e-3)
    target = torch.randn(4, 16)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.mse_loss(diff(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in diff.parameters())
    assert losses[1] < losses[0]
