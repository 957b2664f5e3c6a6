"""The Flax twins of :mod:`diffconv.lab.bench.torch_models` (channels-last, ``(N, S, S, C)``).

Each takes ``conv(features, k, strides=1, name=...)`` (:func:`flax_conv`); layers are named
explicitly, so that the zero-padded model and its DiffConv twin share one parameter tree.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["flax_conv", "Stack", "UNet", "Gelu", "ResNet"]


def flax_conv(variant: str, dtype: Any) -> Callable[..., nn.Module]:
    """``conv(features, k, strides=1, name=None)``: ``nn.Conv(padding='SAME')`` (``variant='zero'``),
    or ``DiffConv`` (``'diff'``)."""
    from diffconv.jax.linen import DiffConv

    def conv(features: int, k: int, strides: int = 1, name: str | None = None) -> nn.Module:
        if variant == "diff":
            return DiffConv(features, (k, k), strides=strides, dtype=dtype, param_dtype=dtype, name=name)
        return nn.Conv(features, (k, k), strides=strides, padding="SAME", dtype=dtype, param_dtype=dtype, name=name)

    return conv


class Stack(nn.Module):
    """Twin of :class:`diffconv.lab.bench.torch_models.Stack`."""

    conv: Callable[..., nn.Module]
    channels: int
    k: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(4):
            x = self.conv(self.channels, self.k, name=f"conv{i}")(x)
            x = x if i == 3 else nn.relu(x)
        return x


class UNet(nn.Module):
    """Twin of :class:`diffconv.lab.bench.torch_models.UNet`."""

    conv: Callable[..., nn.Module]
    channels: int
    k: int

    def block(self, x: jax.Array, f: int, name: str) -> jax.Array:
        for i in range(2):
            x = jnp.tanh(self.conv(f, self.k, name=f"{name}_{i}")(x))
        return x

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f = self.channels
        e0 = self.block(x, f, "enc0")
        e1 = self.block(nn.max_pool(e0, (2, 2), (2, 2)), 2 * f, "enc1")
        m = self.block(nn.max_pool(e1, (2, 2), (2, 2)), 4 * f, "mid")
        up1 = nn.ConvTranspose(2 * f, (2, 2), (2, 2), name="up1")(m)
        d1 = self.block(jnp.concatenate([up1, e1], -1), 2 * f, "dec1")
        up0 = nn.ConvTranspose(f, (2, 2), (2, 2), name="up0")(d1)
        d0 = self.block(jnp.concatenate([up0, e0], -1), f, "dec0")
        return nn.Conv(3, (1, 1), name="head")(d0)


class Gelu(nn.Module):
    """Twin of :class:`diffconv.lab.bench.torch_models.Gelu`."""

    conv: Callable[..., nn.Module]
    channels: int
    k: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.channels
        for i, w in enumerate([c, 2 * c, 2 * c, c, 3]):
            x = self.conv(w, self.k, name=f"conv{i}")(x)
            x = x if i == 4 else nn.gelu(x)
        return x


class ResNet(nn.Module):
    """Twin of :class:`diffconv.lab.bench.torch_models.ResNet`."""

    conv: Callable[..., nn.Module]
    channels: int
    k: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        widths = [self.channels, 2 * self.channels, 4 * self.channels]
        x = nn.silu(self.conv(widths[0], self.k, name="stem")(x))
        for i, w in enumerate(widths):
            h = nn.silu(self.conv(w, self.k, name=f"block{i}_0")(x))
            x = nn.silu(x + self.conv(w, self.k, name=f"block{i}_1")(h))
            if i < 2:
                x = nn.silu(self.conv(widths[i + 1], self.k, strides=2, name=f"down{i}")(x))
        return nn.Conv(3, (1, 1), name="head")(x)
