"""Small Flax models rebuilt from published definitions, for the drop-in tests and benchmark.

* :class:`ResNet` (linen): ResNet v1 as in Flax's ``examples/imagenet/models.py`` (7x7 stride-2
  stem with explicit ``(3, 3)`` pads, 'SAME' max pool, basic or bottleneck blocks whose first
  3x3 conv carries the stride, 1x1 ``conv_proj`` shortcuts), with its ``conv`` argument.
* :class:`NnxCNN`: the CNN of Flax's NNX MNIST tutorial (two 3x3 'SAME' convs, 2x2 average
  pools, two linear layers), with its ``conv`` argument.
* :class:`NnxEncoderDecoder`: an NNX model holding every kind of layer :func:`convert` meets
  (strided 'SAME', explicit pads, 'CIRCULAR', 'VALID', a 'SAME' transposed conv).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax.numpy as jnp
from flax import linen as nn
from flax import nnx


class ResNetBlock(nn.Module):
    """Basic block: two 3x3 convs (the first strided), a 1x1 projection when the shape changes."""

    filters: int
    conv: Any
    norm: Any
    act: Callable
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        y = self.act(self.norm()(self.conv(self.filters, (3, 3), self.strides)(x)))
        y = self.norm(scale_init=nn.initializers.zeros_init())(self.conv(self.filters, (3, 3))(y))
        residual = x
        if residual.shape != y.shape:
            residual = self.norm(name="norm_proj")(self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(x))
        return self.act(residual + y)


class BottleneckResNetBlock(nn.Module):
    """1x1 down, strided 3x3, 1x1 up to ``4 * filters``, a 1x1 projection when the shape changes."""

    filters: int
    conv: Any
    norm: Any
    act: Callable
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        y = self.act(self.norm()(self.conv(self.filters, (1, 1))(x)))
        y = self.act(self.norm()(self.conv(self.filters, (3, 3), self.strides)(y)))
        y = self.norm(scale_init=nn.initializers.zeros_init())(self.conv(self.filters * 4, (1, 1))(y))
        residual = x
        if residual.shape != y.shape:
            residual = self.conv(self.filters * 4, (1, 1), self.strides, name="conv_proj")(x)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class ResNet(nn.Module):
    """ResNet v1; ``conv`` is called as ``nn.Conv`` is (``use_bias=False``, the stem with ``padding``)."""

    stage_sizes: Sequence[int]
    block_cls: Any
    num_classes: int
    num_filters: int = 64
    dtype: Any = jnp.float32
    act: Callable = nn.relu
    conv: Any = nn.Conv

    @nn.compact
    def __call__(self, x, train: bool = True):
        conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype)
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype)
        x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
        x = nn.relu(norm(name="bn_init")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = self.block_cls(self.num_filters * 2**i, strides=strides, conv=conv, norm=norm, act=self.act)(x)
        x = jnp.mean(x, axis=(1, 2))
        return jnp.asarray(nn.Dense(self.num_classes, dtype=self.dtype)(x), self.dtype)


def resnet(stages: Sequence[int] = (1, 1, 1), *, bottleneck: bool = False, filters: int = 8, classes: int = 10,
           conv: Any = nn.Conv) -> ResNet:
    """A narrow ResNet (Flax's ``ResNet18`` is ``stages=(2, 2, 2, 2), filters=64``)."""
    return ResNet(stage_sizes=tuple(stages), block_cls=BottleneckResNetBlock if bottleneck else ResNetBlock,
                  num_classes=classes, num_filters=filters, conv=conv)


class NnxCNN(nnx.Module):
    """The NNX MNIST tutorial's CNN; ``conv(in, out, kernel_size, rngs=)`` builds its convs."""

    def __init__(self, *, size: int = 28, channels: int = 1, conv: Any = nnx.Conv, rngs: nnx.Rngs):
        self.conv1 = conv(channels, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.linear1 = nnx.Linear((size // 4) ** 2 * 64, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        x = pool(nnx.relu(self.conv1(x)))
        x = pool(nnx.relu(self.conv2(x)))
        x = nnx.relu(self.linear1(x.reshape(x.shape[0], -1)))
        return self.linear2(x)


class NnxEncoderDecoder(nnx.Module):
    """Stem 3x3 'SAME', strided 3x3 'SAME', 5x3 explicit ghost-width pads, 3x3 'CIRCULAR', 1x1
    'VALID', then a stride-2 'SAME' transposed conv back to the input size. ``conv`` and
    ``conv_transpose`` build the layers as ``nnx.Conv``/``nnx.ConvTranspose`` do (``padding`` passed
    only where it is not 'SAME')."""

    def __init__(self, channels: int = 3, width: int = 8, *, conv: Any = nnx.Conv,
                 conv_transpose: Any = nnx.ConvTranspose, rngs: nnx.Rngs):
        self.stem = conv(channels, width, (3, 3), rngs=rngs)
        self.down = conv(width, width, (3, 3), strides=2, rngs=rngs)
        self.wide = conv(width, width, (5, 3), padding=((2, 2), (1, 1)), rngs=rngs)
        self.ring = nnx.Conv(width, width, (3, 3), padding="CIRCULAR", rngs=rngs)
        self.mix = nnx.Conv(width, width, (1, 1), padding="VALID", rngs=rngs)
        self.up = conv_transpose(width, channels, (3, 3), strides=2, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.stem(x))
        h = nnx.relu(self.down(h))
        h = nnx.relu(self.wide(h))
        h = nnx.relu(self.ring(h))
        return self.up(self.mix(h))
