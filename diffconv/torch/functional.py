"""Padding-free convolution for PyTorch (channels-first, weights ``(out, in/groups, *k)``).

Fast form: pad every spatial axis with Lagrange ghosts (:func:`lagrange_pad`), then run the
ordinary VALID ``F.convNd``. The ghost weights come from :mod:`diffconv.coefficients`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .._checks import as_tuple, check_conv_shapes, check_float_dtype, check_same_dtype
from ..coefficients import min_length
from ..plan import AxisPlan, axis_plan
from ._coeffs import ghost_tensors

__all__ = ["conv1d", "conv2d", "conv3d", "lagrange_pad"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _pad_axis(x: torch.Tensor, dim: int, kernel_size: int, dilation: int, before: int, after: int) -> torch.Tensor:
    """Append ``before``/``after`` ghosts to ``x`` along ``dim`` (ghosts computed in >= float32)."""
    if before == 0 and after == 0:
        return x
    length = x.shape[dim]
    work = torch.float32 if x.dtype in _LOW_PRECISION else x.dtype
    low_w, high_w = ghost_tensors(kernel_size, dilation, x.device, work)
    low_w, high_w = low_w[low_w.shape[0] - before:], high_w[:after]
    span = low_w.shape[1] if before else high_w.shape[1]
    xm = x.movedim(dim, -1)
    parts = []
    if before:
        parts.append((xm[..., :span].to(work) @ low_w.T).to(x.dtype))
    parts.append(xm)
    if after:
        parts.append((xm[..., length - span:].to(work) @ high_w.T).to(x.dtype))
    return torch.cat(parts, dim=-1).movedim(-1, dim)


def lagrange_pad(
    input: torch.Tensor,
    pad: Sequence[int],
    *,
    kernel_size: int | Sequence[int] | None = None,
    dilation: int | Sequence[int] = 1,
) -> torch.Tensor:
    """Pad with polynomial-extrapolated ghosts; ``pad`` as in :func:`torch.nn.functional.pad`.

    ``pad = (last_lo, last_hi, second_last_lo, second_last_hi, ...)``. For each padded axis the
    ghosts follow the degree-``k-1`` polynomial through the ``k`` samples nearest each edge on
    the ghost's dilation lattice; ``kernel_size`` defaults to ``(lo + hi) // dilation + 1``,
    the kernel that this padding makes size-keeping. Ghost widths may not exceed those of
    that kernel. Axes are padded last-first, corners by tensor product.
    """
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > input.dim():
        raise ValueError(f"pad must have an even length of at most 2*input.dim()={2 * input.dim()}, got {pad}")
    n = len(pad) // 2
    for v in pad:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"pad must contain ints >= 0, got {pad}")
    check_float_dtype("input", _dtype_name(input.dtype))
    dils = as_tuple("dilation", dilation, n)
    if kernel_size is None:
        ks = tuple((pad[2 * i] + pad[2 * i + 1]) // dils[i] + 1 for i in range(n))
    else:
        ks = as_tuple("kernel_size", kernel_size, n)
    out = input
    for i in range(n):
        dim = input.dim() - 1 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        if lo == 0 and hi == 0:
            continue
        need = min_length(ks[i], dils[i])
        width = (ks[i] - 1) * dils[i]
        if lo + hi > width or max(lo, hi) > width:
            raise ValueError(
                f"pad ({lo}, {hi}) on dim {dim} exceeds the extent of kernel_size={ks[i]}, dilation={dils[i]}"
            )
        if input.shape[dim] < need:
            raise ValueError(
                f"dim {dim} has length {input.shape[dim]}, but kernel_size={ks[i]} with dilation={dils[i]} "
                f"needs at least {need} samples to extrapolate its border"
            )
        out = _pad_axis(out, dim, ks[i], dils[i], lo, hi)
    return out


def _boundary_mask(plans: Sequence[AxisPlan], device: torch.device) -> torch.Tensor:
    """Bool tensor of output spatial shape: True where the window reaches a ghost."""
    nd = len(plans)
    mask = torch.zeros((1,) * nd, dtype=torch.bool, device=device)
    for a, p in enumerate(plans):
        i = torch.arange(p.out_len, device=device)
        shape = [1] * nd
        shape[a] = p.out_len
        mask = mask | ((i < p.n_low) | (i >= p.out_len - p.n_high)).reshape(shape)
    return mask


def _conv_nd(
    nd: int,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | Sequence[int],
    dilation: int | Sequence[int],
    groups: int,
    edge_weight: torch.Tensor | None,
    edge_bias: torch.Tensor | None,
    boundary_input_grad: bool,
) -> torch.Tensor:
    for name, t in (("input", input), ("weight", weight), ("bias", bias), ("edge_weight", edge_weight), ("edge_bias", edge_bias)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    check_float_dtype("input", _dtype_name(input.dtype))
    for name, t in (("weight", weight), ("bias", bias), ("edge_weight", edge_weight), ("edge_bias", edge_bias)):
        if t is not None:
            check_same_dtype("input", _dtype_name(input.dtype), name, _dtype_name(t.dtype))
    check_conv_shapes(
        nd=nd,
        in_channels=input.shape[-nd - 1] if input.dim() >= nd + 1 else -1,
        input_rank=input.dim(),
        kernel_rank=weight.dim(),
        kernel_out=weight.shape[0],
        kernel_in=weight.shape[1] if weight.dim() > 1 else -1,
        groups=groups,
        bias_shape=None if bias is None else tuple(bias.shape),
        kernel_shape=tuple(weight.shape),
        edge_kernel_shape=None if edge_weight is None else tuple(edge_weight.shape),
        edge_bias_shape=None if edge_bias is None else tuple(edge_bias.shape),
    )
    if not isinstance(boundary_input_grad, bool):
        raise TypeError(f"boundary_input_grad must be a bool, got {boundary_input_grad!r}")
    strides = as_tuple("stride", stride, nd)
    dils = as_tuple("dilation", dilation, nd)
    unbatched = input.dim() == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    ks = tuple(weight.shape[2:])
    plans = [axis_plan(x.shape[2 + a], ks[a], dils[a], strides[a], axis=a) for a in range(nd)]

    padded = x
    for a in reversed(range(nd)):
        p = plans[a]
        padded = _pad_axis(padded, 2 + a, p.kernel_size, p.dilation, p.before, p.after)
    conv = _CONV[nd]
    out = conv(padded, weight, bias, strides, 0, dils, groups)

    special = edge_weight is not None or edge_bias is not None or not boundary_input_grad
    if special and any(p.n_low or p.n_high for p in plans):
        w_edge = weight if edge_weight is None else edge_weight
        b_edge = bias if edge_bias is None else edge_bias
        src = padded if boundary_input_grad else padded.detach()
        out_edge = conv(src, w_edge, b_edge, strides, 0, dils, groups)
        out = torch.where(_boundary_mask(plans, x.device), out_edge, out)
    return out.squeeze(0) if unbatched else out


_SIGNATURE_DOC = """Size-keeping padding-free {nd}-d convolution.

    input: ``(N, C, *L)`` or unbatched ``(C, *L)`` with {nd} spatial dims; weight:
    ``(O, C/groups, *k)``; returns ``(N, O, *ceil(L/stride))``. Like
    ``F.conv{nd}d(padding='same')`` at stride 1, but the border sees Lagrange ghosts instead of
    zeros. Outputs whose window reaches a ghost use ``edge_weight``/``edge_bias`` when given,
    and pass no gradient to ``input`` when ``boundary_input_grad=False``.
    """


def conv1d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, groups: int = 1, *,
           edge_weight: torch.Tensor | None = None, edge_bias: torch.Tensor | None = None,
           boundary_input_grad: bool = True) -> torch.Tensor:
    return _conv_nd(1, input, weight, bias, stride, dilation, groups, edge_weight, edge_bias, boundary_input_grad)


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, groups: int = 1, *,
           edge_weight: torch.Tensor | None = None, edge_bias: torch.Tensor | None = None,
           boundary_input_grad: bool = True) -> torch.Tensor:
    return _conv_nd(2, input, weight, bias, stride, dilation, groups, edge_weight, edge_bias, boundary_input_grad)


def conv3d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, groups: int = 1, *,
           edge_weight: torch.Tensor | None = None, edge_bias: torch.Tensor | None = None,
           boundary_input_grad: bool = True) -> torch.Tensor:
    return _conv_nd(3, input, weight, bias, stride, dilation, groups, edge_weight, edge_bias, boundary_input_grad)


for _nd, _f in ((1, conv1d), (2, conv2d), (3, conv3d)):
    _f.__doc__ = _SIGNATURE_DOC.format(nd=_nd)
