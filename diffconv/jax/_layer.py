"""Helpers shared by the Flax linen and NNX layers: constructor arguments and the call."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from flax.linen.linear import canonicalize_padding

from . import functional as F
from .conv_transpose import broadcast_per_axis, layer_transpose


def kernel_size_tuple(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    """Flax convention: an int ``k`` is the 1-d kernel ``(k,)``; sequences give 1-3 spatial dims."""
    if isinstance(kernel_size, numbers.Integral) and not isinstance(kernel_size, bool):
        ks: tuple = (int(kernel_size),)
    else:
        try:
            ks = tuple(kernel_size)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"kernel_size must be an int or a sequence of 1-3 ints, got {kernel_size!r}") from None
    if not 1 <= len(ks) <= 3 or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1 for k in ks):
        raise ValueError(f"kernel_size must be an int >= 1 or a sequence of 1-3 ints >= 1, got {kernel_size!r}")
    return tuple(int(k) for k in ks)


def freeze_spec(value: Any) -> Any:
    """A ``boundary`` or ``order`` spec with its lists made tuples (hashable, as layer attributes
    and jit's static arguments need)."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze_spec(v) for v in value)
    return value


def per_axis(value: None | int | Sequence[int], nd: int) -> int | tuple[int, ...]:
    """Flax's ``None`` sentinel means 1; sequences are passed on for validation as they are."""
    if value is None:
        return 1
    return value if isinstance(value, numbers.Integral) else tuple(value)


def check_input_rank(inputs: jax.Array, kernel_size: tuple[int, ...]) -> None:
    nd = len(kernel_size)
    if inputs.ndim < nd + 1:
        raise ValueError(
            f"inputs must have at least rank {nd + 1} ((*batch, *spatial, features)) for kernel_size "
            f"{kernel_size}, got shape {tuple(inputs.shape)}"
        )


def apply_conv(inputs: jax.Array, kernel: jax.Array, nd: int, **options: Any) -> jax.Array:
    """:func:`diffconv.jax.conv` over ``inputs`` ``(*batch, *spatial, features)``: several leading
    batch dims are flattened into one for the convolution and restored after, as ``nn.Conv`` does."""
    batch_shape = inputs.shape[: inputs.ndim - nd - 1]
    if len(batch_shape) > 1:
        inputs = jnp.reshape(inputs, (-1,) + inputs.shape[len(batch_shape):])
    y = F.conv(inputs, kernel, **options)
    if len(batch_shape) > 1:
        y = jnp.reshape(y, batch_shape + y.shape[1:])
    return y


def apply_conv_transpose(layer: Any, inputs: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """The linen and NNX ``DiffConvTranspose`` call: :func:`.conv_transpose.layer_transpose` with the
    layer's ``padding``, ``strides``, ``kernel_dilation``, ``transpose_kernel``, ``precision`` and
    ``preferred_element_type`` read as Flax's ``ConvTranspose`` reads them, and its ``boundary``
    and ``order``."""
    nd = kernel.ndim - 2
    return layer_transpose(
        inputs, kernel, bias, padding=canonicalize_padding(layer.padding, nd),
        strides=broadcast_per_axis(layer.strides, nd, "strides"),
        kernel_dilation=broadcast_per_axis(layer.kernel_dilation, nd, "kernel_dilation"),
        transpose_kernel=layer.transpose_kernel, precision=layer.precision,
        preferred_element_type=layer.preferred_element_type, boundary=layer.boundary, order=layer.order,
    )
