"""Argument checks of the torch backend (messages name the argument, value and expectation)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.autograd.forward_ad as fwAD

from .._checks import as_tuple, check_conv_shapes, check_float_dtype, check_same_dtype


#: Oldest torch with every API the backend calls (``torch.amp.is_autocast_available``,
#: ``torch.get_autocast_dtype``, ``torch.is_autocast_enabled(device_type)``).
MIN_TORCH = (2, 4)


def require_torch(version: str) -> None:
    """Raise ``ImportError`` when torch ``version`` (e.g. ``"2.13.0+cpu"``) predates :data:`MIN_TORCH`."""
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    if tuple(parts) < MIN_TORCH:
        raise ImportError(f"diffconv.torch needs torch >= {'.'.join(map(str, MIN_TORCH))}, found torch {version}")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def autocast_enabled(device_type: str) -> bool:
    """Whether ``torch.autocast`` is active for ``device_type`` (where it picks the conv dtype);
    ``False`` on devices autocast does not know (``meta``)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def transformed(*tensors: torch.Tensor | None) -> bool:
    """Whether PyTorch traces or transforms this call (``torch.compile``/``torch.export``,
    ``torch.jit.trace``, ``torch.func``, forward-mode AD) or runs it on the meta device: then only
    plain differentiable operations will do."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch._C._functorch.peek_interpreter_stack() is not None or fwAD._current_level >= 0
            or any(t is not None and t.is_meta for t in tensors))


def validate_conv_args(
    nd: int,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    edge_weight: torch.Tensor | None,
    edge_bias: torch.Tensor | None,
    stride: int | Sequence[int],
    dilation: int | Sequence[int],
    groups: int,
    boundary_input_grad: bool,
    *,
    transposed: bool = False,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check a convNd (``transposed``: conv_transposeNd, weight ``(in, out/groups, *k)``) call;
    returns ``(strides, dilations)`` as ``nd``-tuples."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias), ("edge_weight", edge_weight), ("edge_bias", edge_bias)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    check_float_dtype("input", dtype_name(input.dtype))
    # Under autocast the convolution casts its operands itself, as torch.nn.functional.conv does.
    mixed_ok = autocast_enabled(input.device.type)
    for name, t in (("weight", weight), ("bias", bias), ("edge_weight", edge_weight), ("edge_bias", edge_bias)):
        if t is None:
            continue
        if mixed_ok:
            check_float_dtype(name, dtype_name(t.dtype))
        else:
            check_same_dtype("input", dtype_name(input.dtype), name, dtype_name(t.dtype))
    check_conv_shapes(
        nd=nd,
        in_channels=input.shape[-nd - 1] if input.dim() >= nd + 1 else -1,
        input_rank=input.dim(),
        kernel_rank=weight.dim(),
        kernel_out=weight.shape[1 if transposed else 0],
        kernel_in=(weight.shape[0 if transposed else 1]) if weight.dim() > 1 else -1,
        groups=groups,
        bias_shape=None if bias is None else tuple(bias.shape),
        kernel_shape=tuple(weight.shape),
        edge_kernel_shape=None if edge_weight is None else tuple(edge_weight.shape),
        edge_bias_shape=None if edge_bias is None else tuple(edge_bias.shape),
        transposed=transposed,
    )
    if any(n < 1 for n in input.shape[-nd:]):
        raise ValueError(f"input has shape {tuple(input.shape)}: a spatial axis has length 0; a convolution needs "
                         "at least one sample per spatial axis")
    if not isinstance(boundary_input_grad, bool):
        raise TypeError(f"boundary_input_grad must be a bool, got {boundary_input_grad!r}")
    strides = as_tuple("stride", stride, nd)
    dils = as_tuple("dilation", dilation, nd)
    return strides, dils
