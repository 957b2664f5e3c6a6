"""An upsampling decoder (a generator / UNet-decoder head) built from transposed convolutions.

``len(channels)`` transposed convolutions ``channels[i] -> channels[i+1]`` (the last to
``out_channels``), each upsampling by ``stride``, ReLU between. The torch and Flax builders
take the transposed-convolution class, so the same model runs with the plain layer
(``nn.ConvTranspose2d`` / ``flax.linen.ConvTranspose``) or its padding-free twin
(:class:`diffconv.torch.DiffConvTranspose2d` / :class:`diffconv.jax.linen.DiffConvTranspose`);
the two torch variants share state-dict keys, the two Flax variants parameter trees.
Frameworks are imported only by the builder that needs them.

Shapes: torch ``(N, channels[0], H, W) -> (N, out_channels, H*s^n, W*s^n)`` for the default
``k=4, s=2, p=1`` (and ``k=3, s=2, p=1, output_padding=1``); Flax the same channels-last.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["torch_decoder", "flax_decoder"]


def _widths(channels: Sequence[int], out_channels: int) -> list[tuple[int, int]]:
    if len(channels) < 1 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"channels must be a non-empty sequence of ints >= 1, got {channels!r}")
    widths = list(channels) + [out_channels]
    return list(zip(widths[:-1], widths[1:]))


def torch_decoder(
    channels: Sequence[int] = (64, 32, 16, 8),
    out_channels: int = 3,
    *,
    kernel_size: int = 4,
    stride: int = 2,
    padding: int = 1,
    output_padding: int = 0,
    transposed: Any = None,
) -> Any:
    """``nn.Sequential`` of ``transposed(cin, cout, kernel_size, stride, padding, output_padding)``
    layers with ReLU between; ``transposed`` defaults to ``nn.ConvTranspose2d``."""
    from torch import nn

    cls = nn.ConvTranspose2d if transposed is None else transposed
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(_widths(channels, out_channels)):
        if i:
            layers.append(nn.ReLU())
        layers.append(cls(cin, cout, kernel_size, stride, padding, output_padding))
    return nn.Sequential(*layers)


def flax_decoder(
    channels: Sequence[int] = (64, 32, 16, 8),
    out_channels: int = 3,
    *,
    kernel_size: int = 4,
    stride: int = 2,
    padding: int = 1,
    output_padding: int = 0,
    transposed: Any = None,
) -> Any:
    """``flax.linen.Sequential`` of ``transposed`` layers (``flax.linen.ConvTranspose`` by default)
    with torch's geometry: explicit padding ``(e-1-p, e-1-p+output_padding)``, ``e = kernel_size``,
    so it computes what :func:`torch_decoder` computes (kernels flipped, see :mod:`diffconv.interop`).
    ``channels[0]`` is the input's feature count (Flax infers it)."""
    from flax import linen as nn

    cls = nn.ConvTranspose if transposed is None else transposed
    lo = kernel_size - 1 - padding
    pad = ((lo, lo + output_padding),) * 2
    layers: list[Any] = []
    for i, (_, cout) in enumerate(_widths(channels, out_channels)):
        if i:
            layers.append(nn.relu)
        layers.append(cls(cout, (kernel_size, kernel_size), strides=(stride, stride), padding=pad))
    return nn.Sequential(layers)
