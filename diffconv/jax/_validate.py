"""Argument checks of the JAX backend (messages name the argument, value and expectation)."""

from __future__ import annotations

from typing import Any, Sequence

from jax import lax

from .._checks import as_tuple, check_conv_shapes, check_float_dtype, check_groups, check_same_dtype
from ..boundary import parse_boundary, parse_order

_PRECISION_NAMES = ("default", "high", "highest", "fastest", "bfloat16", "tensorfloat32", "float32")


def check_array(name: str, value: Any) -> None:
    """``value`` must be array-like with a shape and a dtype (jax/numpy array or tracer)."""
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise TypeError(f"{name} must be a jax or numpy array, got {type(value).__name__}")


def check_precision(precision: Any) -> None:
    """``precision`` as accepted by ``lax.conv_general_dilated``."""
    if precision is None or isinstance(precision, lax.Precision):
        return
    if isinstance(precision, str) and precision.lower() in _PRECISION_NAMES:
        return
    if isinstance(precision, tuple) and len(precision) == 2:
        for p in precision:
            check_precision(p)
        return
    raise ValueError(
        f"precision must be None, a jax.lax.Precision, one of {list(_PRECISION_NAMES)} or a pair of those, "
        f"got {precision!r}"
    )


def validate_conv_args(
    x: Any,
    kernel: Any,
    bias: Any,
    edge_kernel: Any,
    edge_bias: Any,
    strides: int | Sequence[int],
    dilation: int | Sequence[int],
    feature_group_count: int,
    boundary_input_grad: bool,
    precision: Any,
    boundary: Any = "diff",
    order: Any = None,
) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[tuple[str, str], ...], tuple[int | None, ...]]:
    """Check a :func:`diffconv.jax.conv` call; returns ``(nd, strides, dilations, modes, orders)``
    (``modes``/``orders`` per spatial axis, :func:`diffconv.boundary.parse_boundary`/``parse_order``)."""
    named = (("x", x), ("kernel", kernel), ("bias", bias), ("edge_kernel", edge_kernel), ("edge_bias", edge_bias))
    for name, value in named:
        if value is not None or name in ("x", "kernel"):
            check_array(name, value)
    nd = len(kernel.shape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(
            f"kernel must have rank 3, 4 or 5 ((*kernel_size, in_features/groups, out_features) with 1-3 spatial "
            f"dims), got shape {tuple(kernel.shape)}"
        )
    check_float_dtype("x", str(x.dtype))
    for name, value in named[1:]:
        if value is not None:
            check_same_dtype("x", str(x.dtype), name, str(value.dtype))
    check_groups("feature_group_count", feature_group_count)
    rank = len(x.shape)
    check_conv_shapes(
        nd=nd,
        in_channels=x.shape[-1] if rank else -1,
        input_rank=rank,
        kernel_rank=len(kernel.shape),
        kernel_out=kernel.shape[-1],
        kernel_in=kernel.shape[-2],
        groups=feature_group_count,
        bias_shape=None if bias is None else tuple(bias.shape),
        kernel_shape=tuple(kernel.shape),
        edge_kernel_shape=None if edge_kernel is None else tuple(edge_kernel.shape),
        edge_bias_shape=None if edge_bias is None else tuple(edge_bias.shape),
        input_name="x",
        kernel_name="kernel",
        edge_kernel_name="edge_kernel",
        groups_name="feature_group_count",
    )
    spatial = tuple(x.shape[rank - nd - 1:rank - 1])
    if any(n < 1 for n in spatial):
        raise ValueError(
            f"x has a spatial axis of length 0 (shape {tuple(x.shape)}); a convolution needs at least one sample "
            "per spatial axis"
        )
    if not isinstance(boundary_input_grad, bool):
        raise TypeError(f"boundary_input_grad must be a bool, got {boundary_input_grad!r}")
    check_precision(precision)
    modes = parse_boundary(boundary, nd)
    orders = parse_order(order, nd, [k - 1 for k in kernel.shape[:nd]])
    return nd, as_tuple("strides", strides, nd), as_tuple("dilation", dilation, nd), modes, orders
