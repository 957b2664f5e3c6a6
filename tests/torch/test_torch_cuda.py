"""The torch backend on a CUDA device (skipped where torch sees none).

Truths: the transformed-kernel reference form (NumPy, float64) for outputs,
``torch.autograd.gradcheck`` in float64 for gradients, and the same layer on the CPU for a
float32 layer at the sizes the GPU benchmark runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import oracle
from diffconv.torch import DiffConv2d
from diffconv.torch import functional as DF
from torch.autograd import gradcheck
from torch_truths import rel_err


BOTH_PADDINGS = False     # CUDA tensors always take the PyTorch operations (conftest.ghost_kernels)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

FUNCS = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}


def _tensors(nd: int, lengths: tuple[int, ...], k: int, groups: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cin, cout = 2 * groups, 3 * groups
    x = torch.randn((2, cin) + lengths, generator=g, dtype=torch.float64)
    w = torch.randn((cout, cin // groups) + (k,) * nd, generator=g, dtype=torch.float64)
    b = torch.randn(cout, generator=g, dtype=torch.float64)
    return x, w, b


@pytest.mark.parametrize("nd, lengths, k, groups", [
    (2, (9, 8), 3, 1), (2, (11, 12), 5, 2), (2, (15, 14), 7, 1), (1, (10,), 4, 1), (3, (6, 5, 7), 3, 1),
])
def test_cuda_output_equals_reference(nd, lengths, k, groups):
    x, w, b = _tensors(nd, lengths, k, groups)
    y = FUNCS[nd](x.cuda(), w.cuda(), b.cuda(), groups=groups)
    assert y.device.type == "cuda"
    expected = oracle.diff_conv(x.numpy(), w.numpy(), b.numpy(), 1, 1, groups)
    assert rel_err(y.cpu(), expected) < 1e-10


@pytest.mark.parametrize("lengths, k, groups", [((6, 5), 3, 1), ((7, 8), 5, 2)])
def test_cuda_gradcheck(lengths, k, groups):
    x, w, b = (t.cuda().requires_grad_() for t in _tensors(2, lengths, k, groups))
    # nondet_tol: cuDNN's backward and index_add_ sum in a run-dependent order on the GPU.
    assert gradcheck(lambda x, w, b: DF.conv2d(x, w, b, groups=groups), (x, w, b),
                     eps=1e-6, atol=1e-7, rtol=1e-6, nondet_tol=1e-12, fast_mode=True)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_cuda_float32_layer_matches_cpu(k):
    """A float32 layer at the GPU benchmark's map size (224x224; TF32 off), forward and backward."""
    torch.backends.cudnn.allow_tf32, before = False, torch.backends.cudnn.allow_tf32
    try:
        torch.manual_seed(0)
        layer = DiffConv2d(8, 8, k)
        x, gy = torch.randn(2, 8, 224, 224), torch.randn(2, 8, 224, 224)
        results = []
        for device in ("cpu", "cuda"):
            xd = x.to(device).detach().requires_grad_()
            ld = layer.to(device)
            y = ld(xd)
            y.backward(gy.to(device))
            results.append([t.detach().cpu() for t in (y, xd.grad, ld.weight.grad, ld.bias.grad)])
            ld.zero_grad()
        for on_cpu, on_cuda in zip(*results):
            assert rel_err(on_cuda, on_cpu) < 1e-4
    finally:
        torch.backends.cudnn.allow_tf32 = before


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")
def test_cuda_torch_compile_matches_eager():
    torch.manual_seed(0)
    layer = DiffConv2d(4, 4, 5).double().cuda()
    x = torch.randn(2, 4, 70, 66, dtype=torch.float64, device="cuda")
    compiled = torch.compile(layer, fullgraph=True)
    y, y_eager = compiled(x), layer(x)
    assert rel_err(y.cpu(), y_eager.cpu()) < 1e-12
    expected = oracle.diff_conv(x.cpu().numpy(), layer.weight.detach().cpu().numpy(),
                              layer.bias.detach().cpu().numpy(), 1, 1, 1)
    assert rel_err(y.detach().cpu(), np.asarray(expected)) < 1e-10
