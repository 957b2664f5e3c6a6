"""Independent truths for the torch tests: polynomial samples, plain VALID convolutions, boundary masks.

Nothing here calls diffconv: the geometry follows the documented semantics directly (dilated extent
``e = (k-1)*d + 1``, ghosts ``(e-1)//2`` before and ``e//2`` after).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def widths(k: int, d: int) -> tuple[int, int]:
    e = (k - 1) * d + 1
    return (e - 1) // 2, e // 2


def rel_err(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    """``max|actual - expected| / max|expected|`` in float64."""
    a = torch.as_tensor(actual).double()
    e = torch.as_tensor(expected).double()
    scale = e.abs().max().item() if e.numel() else 1.0
    return (a - e).abs().max().item() / max(scale, 1e-300) if e.numel() else 0.0


def polynomial_samples(
    lengths: Sequence[int],
    degrees: Sequence[int],
    pads: Sequence[tuple[int, int]],
    channels: int,
    batch: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random polynomials (degree ``<= degrees[a]`` along axis ``a``, one per batch/channel) sampled
    on the data grid ``(batch, channels, *lengths)`` and on the grid extended by ``pads``.

    Coordinates are scaled to about ``[-1, 1]`` so high degrees stay well conditioned.
    """
    nd = len(lengths)
    vander = []
    for L, deg, (lo, hi) in zip(lengths, degrees, pads):
        t = (np.arange(-lo, L + hi) - (L - 1) / 2) / max(L, 1)
        vander.append(t[:, None] ** np.arange(deg + 1)[None, :])
    coef = rng.standard_normal((batch, channels) + tuple(d + 1 for d in degrees))
    letters = "ijk"[:nd]
    grid = "xyz"[:nd]
    spec = "nc" + letters + "," + ",".join(g + l for g, l in zip(grid, letters)) + "->nc" + grid
    ext = np.einsum(spec, coef, *vander)
    inner = ext[(slice(None), slice(None)) + tuple(slice(lo, lo + L) for L, (lo, _) in zip(lengths, pads))]
    return torch.from_numpy(np.ascontiguousarray(inner)), torch.from_numpy(ext)


def valid_conv(ext: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, groups: int = 1) -> torch.Tensor:
    """Ordinary VALID convolution (no padding) of an already extended grid."""
    return CONV[weight.dim() - 2](ext, weight, bias, stride, 0, dilation, groups)


def zero_padded_conv(x: torch.Tensor, weight: torch.Tensor, stride: Sequence[int], dilation: Sequence[int],
                     groups: int = 1) -> torch.Tensor:
    """Size-keeping convolution with zero padding at the same ghost widths (interior outputs agree)."""
    nd = weight.dim() - 2
    pad: list[int] = []
    for a in reversed(range(nd)):
        pad.extend(widths(weight.shape[2 + a], dilation[a]))
    return CONV[nd](F.pad(x, pad), weight, None, tuple(stride), 0, tuple(dilation), groups)


def boundary_mask(lengths: Sequence[int], ks: Sequence[int], dils: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Bool mask of the output grid: True where some tap of the window falls outside the data."""
    nd = len(lengths)
    mask = torch.zeros((1,) * nd, dtype=torch.bool)
    for a, (L, k, d, s) in enumerate(zip(lengths, ks, dils, strides)):
        before, _ = widths(k, d)
        i = torch.arange(math.ceil(L / s))
        first = i * s - before
        last = first + (k - 1) * d
        shape = [1] * nd
        shape[a] = -1
        mask = mask | ((first < 0) | (last > L - 1)).reshape(shape)
    return mask


def lebesgue_factor(k: int, steps: int) -> float:
    """``max_q sum_m |L_m(-q)|`` for q = 1..steps, Lagrange basis on nodes 0..k-1: how much a ghost
    ``steps`` lattice steps out can amplify rounding errors of the samples it is built from."""
    best = 1.0
    for q in range(1, steps + 1):
        total = 0.0
        for m in range(k):
            term = 1.0
            for i in range(k):
                if i != m:
                    term *= abs(-q - i) / abs(m - i)
            total += term
        best = max(best, total)
    return best


def exactness_tol(ks: Sequence[int], dils: Sequence[int], base: float = 1e-9) -> float:
    """``base``, or the float64 rounding bound ``4 eps * prod_a factor_a`` when larger (large kernels, corners)."""
    amp = 1.0
    for k, d in zip(ks, dils):
        amp *= lebesgue_factor(k, -(-widths(k, d)[1] // d)) if k > 1 else 1.0
    return max(base, 4 * np.finfo(np.float64).eps * amp)


def extension_matrix(length: int, k: int, d: int, before: int, after: int) -> np.ndarray:
    """``E`` ``(before + length + after, length)``: the extended axis is ``E @ u``. Rows of data
    are unit rows; a ghost at ``pos`` is the Lagrange polynomial through the ``k`` samples
    nearest it on its lattice (``x = pos mod d``), or through all ``m < k`` of them on a short
    axis, or the nearest edge sample when the lattice is empty (docs/design.md), in exact fractions."""
    rows = []
    for pos in range(-before, length + after):
        row = [Fraction(0)] * length
        if 0 <= pos < length:
            row[pos] = Fraction(1)
        else:
            lattice = sorted((x for x in range(length) if (x - pos) % d == 0), key=lambda x: abs(x - pos))[:k]
            if not lattice:
                row[0 if pos < 0 else length - 1] = Fraction(1)
            for m in lattice:
                basis = Fraction(1)
                for n in lattice:
                    if n != m:
                        basis *= Fraction(pos - n, m - n)
                row[m] = basis
        rows.append(row)
    return np.array([[float(v) for v in r] for r in rows])


def ghost_pad(x: torch.Tensor, ks: Sequence[int], dils: Sequence[int]) -> torch.Tensor:
    """``x`` ``(N, C, *L)`` extended by the size-keeping ghosts of every spatial axis (float64)."""
    out = x.detach().double().numpy()
    for a, (k, d) in enumerate(zip(ks, dils)):
        before, after = widths(k, d)
        E = extension_matrix(out.shape[2 + a], k, d, before, after)
        out = np.moveaxis(np.tensordot(E, out, axes=([1], [2 + a])), 0, 2 + a)
    return torch.from_numpy(np.ascontiguousarray(out))


def ghost_truth(x, weight, bias=None, stride=1, dilation=1, groups=1, edge_weight=None, edge_bias=None) -> torch.Tensor:
    """The layer's output in float64 from :func:`ghost_pad` and a VALID convolution; boundary
    outputs (:func:`boundary_mask`) from the edge parameters when given."""
    nd = weight.dim() - 2
    st = (stride,) * nd if isinstance(stride, int) else tuple(stride)
    dl = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    ks = tuple(weight.shape[2:])
    ext = ghost_pad(x, ks, dl)
    f = lambda t: None if t is None else t.detach().double()  # noqa: E731
    y = valid_conv(ext, f(weight), f(bias), st, dl, groups)
    if edge_weight is not None or edge_bias is not None:
        w_e = f(weight if edge_weight is None else edge_weight)
        b_e = f(bias if edge_bias is None else edge_bias)
        y = torch.where(boundary_mask(x.shape[2:], ks, dl, st), valid_conv(ext, w_e, b_e, st, dl, groups), y)
    return y
