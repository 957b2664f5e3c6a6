"""Argument validation shared by the PyTorch and JAX backends.

Every check raises ``TypeError``/``ValueError`` whose message names the argument, the value
received and what was expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

__all__ = [
    "as_tuple",
    "check_choice",
    "check_conv_shapes",
    "check_finite",
    "check_float_dtype",
    "check_groups",
    "check_same_dtype",
]

FLOAT_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")


def as_tuple(name: str, value: int | Sequence[int], n: int, *, minimum: int = 1) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints (each ``>= minimum``) as an ``n``-tuple."""
    items = (value,) * n if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    try:
        items = tuple(items)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}") from None
    if len(items) != n:
        raise ValueError(f"{name} must be an int or a sequence of {n} ints, got {value!r} ({len(items)} values)")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must contain ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def check_float_dtype(name: str, dtype_name: str) -> None:
    if dtype_name not in FLOAT_DTYPE_NAMES:
        raise TypeError(f"{name} must have a floating dtype ({', '.join(FLOAT_DTYPE_NAMES)}), got {dtype_name}")


def check_same_dtype(name_a: str, dtype_a: str, name_b: str, dtype_b: str) -> None:
    if dtype_a != dtype_b:
        raise TypeError(f"{name_b} dtype {dtype_b} does not match {name_a} dtype {dtype_a}")


def check_conv_shapes(
    *,
    nd: int,
    in_channels: int,
    input_rank: int,
    kernel_rank: int,
    kernel_out: int,
    kernel_in: int,
    groups: int,
    bias_shape: tuple[int, ...] | None,
    edge_kernel_shape: tuple[int, ...] | None,
    kernel_shape: tuple[int, ...],
    edge_bias_shape: tuple[int, ...] | None,
    input_name: str = "input",
    kernel_name: str = "weight",
    bias_name: str = "bias",
    edge_kernel_name: str = "edge_weight",
    edge_bias_name: str = "edge_bias",
    groups_name: str = "groups",
    batched_ranks: tuple[int, ...] | None = None,
    transposed: bool = False,
) -> None:
    """Shape checks common to every N-d convolution, independent of channel layout.

    ``kernel_in``/``kernel_out``: the kernel's input and output channel dims. A convolution's
    kernel holds ``in/groups`` inputs and all outputs; a transposed one's (``transposed=True``)
    all inputs and ``out/groups`` outputs."""
    ranks = batched_ranks if batched_ranks is not None else (nd + 1, nd + 2)
    if input_rank not in ranks:
        raise ValueError(
            f"{input_name} must have rank {' or '.join(map(str, ranks))} for a {nd}-d convolution, got rank {input_rank}"
        )
    if kernel_rank != nd + 2:
        raise ValueError(f"{kernel_name} must have rank {nd + 2} for a {nd}-d convolution, got shape {kernel_shape}")
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{groups_name} must be an int >= 1, got {groups!r}")
    if in_channels % groups:
        raise ValueError(f"{input_name} channels ({in_channels}) must be divisible by {groups_name} ({groups})")
    if transposed:
        if kernel_in != in_channels:
            raise ValueError(
                f"{kernel_name} has {kernel_in} input channels, but {input_name} has {in_channels} channels"
            )
        kernel_out *= groups
    elif kernel_out % groups:
        raise ValueError(f"{kernel_name} output channels ({kernel_out}) must be divisible by {groups_name} ({groups})")
    if not transposed and kernel_in * groups != in_channels:
        raise ValueError(
            f"{kernel_name} has {kernel_in} input channels per group, but {input_name} has {in_channels} channels "
            f"and {groups_name}={groups} (expected {in_channels // groups})"
        )
    if bias_shape is not None and tuple(bias_shape) != (kernel_out,):
        raise ValueError(f"{bias_name} must have shape ({kernel_out},), got {tuple(bias_shape)}")
    if edge_kernel_shape is not None and tuple(edge_kernel_shape) != tuple(kernel_shape):
        raise ValueError(
            f"{edge_kernel_name} must have the same shape as {kernel_name} {tuple(kernel_shape)}, got {tuple(edge_kernel_shape)}"
        )
    if edge_bias_shape is not None and tuple(edge_bias_shape) != (kernel_out,):
        raise ValueError(f"{edge_bias_name} must have shape ({kernel_out},), got {tuple(edge_bias_shape)}")


def check_groups(name: str, groups: object, **channels: int) -> int:
    """``groups`` (the argument ``name``) must be an int >= 1 dividing every channel count given
    by keyword (e.g. ``in_features=6``); returns it as an int."""
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{name} must be an int >= 1, got {groups!r}")
    for what, count in channels.items():
        if count % groups:
            raise ValueError(f"{what} ({count}) must be divisible by {name} ({groups})")
    return int(groups)
