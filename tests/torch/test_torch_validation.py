"""Bad input raises TypeError/ValueError whose message names the argument, the value and the expectation."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from diffconv.torch import DiffConv2d
from diffconv.torch import functional as DF


BOTH_PADDINGS = False     # argument checks come before any padding (conftest.ghost_kernels)


def _xw(dtype=torch.float32):
    return torch.randn(1, 4, 8, 8, dtype=dtype), torch.randn(6, 2, 3, 3, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64])
def test_non_float_input(dtype):
    x = torch.ones(1, 2, 6, 6, dtype=dtype)
    with pytest.raises(TypeError, match=rf"input must have a floating dtype .*got {str(dtype)[6:]}"):
        DF.conv2d(x, torch.ones(1, 2, 3, 3, dtype=dtype))


@pytest.mark.parametrize("name", ["weight", "bias", "edge_weight", "edge_bias"])
def test_dtype_mismatch(name):
    x, w = _xw()
    args = {"weight": w, "bias": torch.zeros(6), "edge_weight": w.clone(), "edge_bias": torch.zeros(6)}
    args[name] = args[name].double()
    with pytest.raises(TypeError, match=rf"{name} dtype float64 does not match input dtype float32"):
        DF.conv2d(x, args["weight"], args["bias"], groups=2, edge_weight=args["edge_weight"], edge_bias=args["edge_bias"])


def test_non_tensor_bias():
    x, w = _xw()
    with pytest.raises(TypeError, match="bias must be a torch.Tensor, got list"):
        DF.conv2d(x, w, [0.0] * 6, groups=2)


def test_non_tensor_input():
    x, w = _xw()
    with pytest.raises(TypeError, match="input must be a torch.Tensor, got ndarray"):
        DF.conv2d(x.numpy(), w, groups=2)


@pytest.mark.parametrize("shape", [(8, 8), (1, 1, 4, 8, 8)])
def test_wrong_input_rank(shape):
    with pytest.raises(ValueError, match=rf"input must have rank 3 or 4 for a 2-d convolution, got rank {len(shape)}"):
        DF.conv2d(torch.randn(shape), torch.randn(1, 1, 3, 3))


def test_wrong_weight_rank():
    with pytest.raises(ValueError, match=r"weight must have rank 3 for a 1-d convolution, got shape \(2, 2, 3, 3\)"):
        DF.conv1d(torch.randn(1, 2, 8), torch.randn(2, 2, 3, 3))


def test_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match=r"input channels \(5\) must be divisible by groups \(2\)"):
        DF.conv2d(torch.randn(1, 5, 6, 6), torch.randn(4, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"weight output channels \(5\) must be divisible by groups \(2\)"):
        DF.conv2d(torch.randn(1, 4, 6, 6), torch.randn(5, 2, 3, 3), groups=2)


def test_weight_channels_mismatch():
    with pytest.raises(ValueError, match=r"weight has 3 input channels per group, but input has 4 channels and groups=1 \(expected 4\)"):
        DF.conv2d(torch.randn(1, 4, 6, 6), torch.randn(2, 3, 3, 3))


@pytest.mark.parametrize("groups", [0, -1, 1.5, True])
def test_bad_groups(groups):
    with pytest.raises(ValueError, match=rf"groups must be an int >= 1, got {groups!r}"):
        DF.conv2d(torch.randn(1, 2, 6, 6), torch.randn(2, 2, 3, 3), groups=groups)


def test_edge_kernel_shape_mismatch():
    x, w = _xw()
    with pytest.raises(ValueError, match=r"edge_weight must have the same shape as weight \(6, 2, 3, 3\), got \(6, 2, 5, 5\)"):
        DF.conv2d(x, w, groups=2, edge_weight=torch.randn(6, 2, 5, 5))


@pytest.mark.parametrize("name", ["bias", "edge_bias"])
def test_bias_shape_mismatch(name):
    x, w = _xw()
    with pytest.raises(ValueError, match=rf"{name} must have shape \(6,\), got \(5,\)"):
        DF.conv2d(x, w, groups=2, **{name: torch.zeros(5)})


@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value,exc,msg", [
    (0, ValueError, r"must be >= 1, got 0"),
    (-2, ValueError, r"must be >= 1, got -2"),
    ((1, 0), ValueError, r"must be >= 1, got \(1, 0\)"),
    (1.0, TypeError, r"must be an int or a sequence of 2 ints, got 1.0"),
    ((1, 2.0), TypeError, r"must contain ints, got \(1, 2.0\)"),
    ((1, 2, 3), ValueError, r"must be an int or a sequence of 2 ints, got \(1, 2, 3\) \(3 values\)"),
])
def test_bad_stride_and_dilation(name, value, exc, msg):
    x, w = _xw()
    with pytest.raises(exc, match=f"{name} {msg}"):
        DF.conv2d(x, w, groups=2, **{name: value})


@pytest.mark.parametrize("ks", [(0, 3), (3, 0)])
def test_empty_kernel_rejected(ks):
    with pytest.raises(ValueError, match=r"kernel_size must be an int >= 1, got 0"):
        DF.conv2d(torch.randn(1, 1, 5, 5), torch.randn((1, 1) + ks))


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("kernel_size,exc,msg", [
    (0, ValueError, r"kernel_size must be >= 1, got 0"),
    ((3, 0), ValueError, r"kernel_size must be >= 1, got \(3, 0\)"),
    (2.5, TypeError, r"kernel_size must be an int or a sequence of 2 ints, got 2.5"),
])
def test_bad_module_kernel_size(kernel_size, exc, msg):
    with pytest.raises(exc, match=msg):
        DiffConv2d(1, 1, kernel_size)


@pytest.mark.parametrize("lengths", [(0, 8), (8, 0)])
def test_zero_length_axis_is_an_error(lengths):
    """Short axes work (tests/test_short_axes.py); an empty axis has nothing to convolve."""
    with pytest.raises(ValueError, match=r"a spatial axis has length 0"):
        DF.conv2d(torch.randn((1, 1) + lengths), torch.randn(1, 1, 3, 3))


def test_kernel_size_one_needs_one_sample():
    """A 1x1 kernel reaches no ghost: exactly ``F.conv2d``, at any stride, even on a 1x1 map."""
    w = torch.randn(3, 2, 1, 1)
    for shape, stride in (((1, 2, 1, 1), 1), ((2, 2, 7, 6), 2)):
        x = torch.randn(*shape)
        torch.testing.assert_close(DF.conv2d(x, w, stride=stride), F.conv2d(x, w, stride=stride), rtol=0, atol=0)


def test_bad_boundary_input_grad():
    x, w = _xw()
    with pytest.raises(TypeError, match=r"boundary_input_grad must be a bool, got 0"):
        DF.conv2d(x, w, groups=2, boundary_input_grad=0)


def test_lagrange_pad_errors():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"pad must have an even length"):
        DF.lagrange_pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match=r"pad must contain ints >= 0, got \(-1, 1\)"):
        DF.lagrange_pad(x, (-1, 1))
    with pytest.raises(ValueError, match=r"dim 3 has length 0; there is no sample"):
        DF.lagrange_pad(torch.randn(1, 1, 4, 0), (2, 2))
    with pytest.raises(TypeError, match=r"input must have a floating dtype"):
        DF.lagrange_pad(x.long(), (1, 1))


@pytest.mark.parametrize("version,ok", [("2.4.0", True), ("2.13.0+cpu", True), ("3.0.0a0", True),
                                        ("2.3.1", False), ("1.13.1+cu117", False)])
def test_torch_version_requirement(version, ok):
    from diffconv.torch._validate import require_torch

    if ok:
        require_torch(version)
    else:
        with pytest.raises(ImportError, match=rf"needs torch >= 2\.4, found torch {re.escape(version)}"):
            require_torch(version)
