"""Per-axis geometry of a padding-free transposed convolution (docs/design.md, "Transposed convolution").

Framework-neutral (plain ints; the ghost weights come from :mod:`diffconv.coefficients`), so
the PyTorch and JAX backends extend the same ghosts by the same matrices.

One axis of a transposed convolution with kernel size ``k``, stride ``s`` and dilation ``d``
sums ``out[o] = sum x[i] w[j]`` over ``i*s + j*d - crop = o`` (torch's ``padding`` is
``crop``; Flax's explicit paddings give other, possibly negative, crops). The padding-free
version lets ``i`` run outside ``[0, L)`` where it reaches: ``before`` ghosts at ``i < 0``,
``after`` ghosts at ``i >= L``. The ``i`` that one output reads are ``d' = d/gcd(s, d)`` apart,
at most ``m = ceil(k*gcd(s, d)/s)`` of them, so a ghost is the degree-``m-1`` polynomial
through the ``m`` samples nearest its edge on its lattice of step ``d'``: DiffConv's ghost
rule with kernel size ``m`` and dilation ``d'``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

from .coefficients import GhostWeights, ghost_weights

__all__ = [
    "TransposeAxis",
    "lax_transpose_padding",
    "torch_out_len",
    "transpose_axis",
    "transpose_axis_lax",
    "transpose_axis_torch",
]


@dataclass(frozen=True)
class TransposeAxis:
    """Geometry of one spatial axis of a transposed convolution.

    Output ``o`` (``0 <= o < out_len``) sums ``x[i] w[j]`` over ``i*stride + j*dilation - crop = o``;
    ``before``/``after``: ghost samples this reaches outside the ``length`` data samples;
    ``lattice`` (``d'``) and ``nodes`` (``m``): the ghost rule, see the module docstring.
    """

    length: int
    kernel_size: int
    stride: int
    dilation: int
    crop: int
    out_len: int
    before: int
    after: int
    lattice: int
    nodes: int

    @property
    def has_ghosts(self) -> bool:
        return bool(self.before or self.after)

    def ghost_weights(self) -> GhostWeights:
        """The ``before``/``after`` ghost rows over the edge samples (:class:`~diffconv.coefficients.GhostWeights`).

        ``low`` is ``(before, span)`` over ``x[:span]``, ``high`` ``(after, span)`` over ``x[-span:]``.
        """
        return ghost_weights(self.nodes, self.lattice, widths=(self.before, self.after), length=self.length)


def _int(name: str, value: object, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def transpose_axis(length: int, kernel_size: int, stride: int, dilation: int, crop: int, out_len: int) -> TransposeAxis:
    """Plan one axis from its sum's geometry (``crop`` any int, ``out_len >= 1``)."""
    L = _int("length", length, 1)
    k = _int("kernel_size", kernel_size, 1)
    s = _int("stride", stride, 1)
    d = _int("dilation", dilation, 1)
    crop = _int("crop", crop, None)
    n = _int("out_len", out_len, None)
    if n < 1:
        raise ValueError(f"the transposed convolution's output would have length {n} on an axis of {L} samples")
    # i*s = o + crop - j*d over o in [0, n), j in [0, k): i from ceil((crop - (k-1)d)/s) to floor((n-1+crop)/s).
    i_first = -((-(crop - (k - 1) * d)) // s)
    i_last = (n - 1 + crop) // s
    g = math.gcd(s, d)
    return TransposeAxis(
        length=L, kernel_size=k, stride=s, dilation=d, crop=crop, out_len=n,
        before=max(0, -i_first), after=max(0, i_last - (L - 1)),
        lattice=d // g, nodes=-(-(k * g) // s),
    )


def torch_out_len(length: int, kernel_size: int, stride: int, padding: int, output_padding: int, dilation: int) -> int:
    """``nn.ConvTransposeNd``'s output length: ``(L-1)s - 2p + d(k-1) + output_padding + 1``."""
    return (length - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def transpose_axis_torch(
    length: int, kernel_size: int, stride: int, padding: int, output_padding: int, dilation: int
) -> TransposeAxis:
    """Plan one axis of ``F.conv_transposeNd`` (``padding``/``output_padding`` in torch's meaning)."""
    n = torch_out_len(length, kernel_size, stride, padding, output_padding, dilation)
    return transpose_axis(length, kernel_size, stride, dilation, padding, n)


def transpose_axis_lax(
    length: int, kernel_size: int, stride: int, dilation: int, pad: tuple[int, int]
) -> TransposeAxis:
    """Plan one axis of ``lax.conv_transpose`` with explicit ``pad = (lo, hi)`` of the stride-dilated
    input, for the torch-form kernel (``lax``'s kernel flipped; see :mod:`diffconv.jax.conv_transpose`)."""
    lo, hi = pad
    extent = (kernel_size - 1) * dilation
    n = (length - 1) * stride + 1 + lo + hi - extent
    return transpose_axis(length, kernel_size, stride, dilation, extent - lo, n)


def lax_transpose_padding(
    padding: str | Sequence[tuple[int, int]],
    kernel_size: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
    """``lax.conv_transpose``'s padding of the stride-dilated input for ``'SAME'``, ``'VALID'`` or
    explicit ``(lo, hi)`` pairs (used as given), one pair per spatial axis."""
    if not isinstance(padding, str):
        return [(int(lo), int(hi)) for lo, hi in padding]
    pairs = []
    for k, s, d in zip(kernel_size, strides, dilation):
        e = (k - 1) * d + 1
        if padding == "SAME":
            total = e + s - 2
            lo = e - 1 if s > e - 1 else -(-total // 2)
        elif padding == "VALID":
            total = e + s - 2 + max(e - s, 0)
            lo = e - 1
        else:
            raise ValueError(f"padding must be 'SAME', 'VALID' or (low, high) pairs, got {padding!r}")
        pairs.append((lo, total - lo))
    return pairs
