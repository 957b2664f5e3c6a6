"""The UNet of :mod:`diffconv.lab.models.torch_nets` in Flax linen (channels-last), with a conv-class argument.

``conv`` is called as ``conv(features, kernel_size=(k, k), name=...)``: ``flax.linen.Conv``
(default ``padding='SAME'``: zero padding), ``diffconv.jax.linen.DiffConv``,
:class:`ReplicateConv`, or ``functools.partial(flax.linen.Conv, padding='REFLECT')``. Every
layer is named explicitly, so all choices give the same parameter tree and share one ``init``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

__all__ = ["ReplicateConv", "UNet"]


class ReplicateConv(nn.Conv):
    """``flax.linen.Conv`` with replicate padding (``jnp.pad(mode='edge')``, ``(k-1)//2`` before and
    ``k//2`` after each spatial axis), which linen's ``padding`` does not offer; same parameters."""

    padding: Any = "VALID"

    def __call__(self, inputs: jax.Array) -> jax.Array:
        ks = self.kernel_size if isinstance(self.kernel_size, Sequence) else (self.kernel_size,)
        spatial = [((k - 1) // 2, k // 2) for k in ks]
        widths = [(0, 0)] * (inputs.ndim - 1 - len(ks)) + spatial + [(0, 0)]
        return super().__call__(jnp.pad(inputs, widths, mode="edge"))


class UNet(nn.Module):
    """``(N, H, W, C_in) -> (N, H, W, out_features)``; ``H``, ``W`` divisible by ``2**depth``.

    ``depth`` levels of two size-keeping convs (SiLU) each, 2x2 average pooling down,
    nearest upsampling up, skip connections by concatenation, a 1x1 ``nn.Conv`` head.
    """

    out_features: int = 1
    width: int = 8
    depth: int = 2
    kernel_size: int = 3
    conv: Callable[..., Any] = nn.Conv

    def _double(self, x: jax.Array, features: int, name: str) -> jax.Array:
        k = (self.kernel_size, self.kernel_size)
        x = nn.silu(self.conv(features, kernel_size=k, name=f"{name}_conv0")(x))
        return nn.silu(self.conv(features, kernel_size=k, name=f"{name}_conv1")(x))

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        skips = []
        for i in range(self.depth):
            x = self._double(x, self.width * 2**i, f"down{i}")
            skips.append(x)
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = self._double(x, self.width * 2**self.depth, "bottom")
        for i in reversed(range(self.depth)):
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            x = self._double(jnp.concatenate([x, skips[i]], axis=-1), self.width * 2**i, f"up{i}")
        return nn.Conv(self.out_features, kernel_size=(1, 1), name="head")(x)
