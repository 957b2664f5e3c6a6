"""Boundary accuracy of a ×2 upsampling transposed convolution (the transposed case of the
boundary-accuracy experiment).

A smooth field is sampled at cell centres on an ``n x n`` grid (the half resolution) and on the
``2n x 2n`` grid of the same square (the truth). A fixed interpolation kernel, applied as a
stride-2 transposed convolution, upsamples the coarse samples; every method handles the
border its own way:

* ``zeros``: the plain ``nn.ConvTranspose2d`` (inputs past the edge contribute nothing);
* ``replicate`` / ``reflect`` / ``circular``: the coarse samples padded by the edge value, by
  reflection about the edge sample, or periodically, then the plain transposed convolution,
  cropped (``replicate`` is what ``F.interpolate(..., align_corners=False)`` does at the edge);
* ``diffconv``: :class:`diffconv.torch.DiffConvTranspose2d` (polynomial ghosts).

Kernels: ``linear`` (``k=4, s=2, p=1``, taps ``1/4, 3/4, 3/4, 1/4`` per axis, bilinear) and
``cubic`` (``k=8, s=2, p=3``, Keys' cubic convolution with ``a = -1/2``). The error is the mean
and the largest ``|method - truth|`` over the boundary ring (outputs whose sum reaches past the
coarse grid) and over the interior, for fields scaled to a largest modulus of 1.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from .fields import chebyshev_field

__all__ = ["KERNELS", "METHODS", "boundary_mask", "format_rows", "transpose_accuracy", "upsample"]

METHODS = ("zeros", "replicate", "reflect", "circular", "diffconv")
LO, HI = 0.3, 0.8


def _keys(t: float) -> float:
    t = abs(t)
    if t <= 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t < 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


def _taps(weight: Callable[[float], float], k: int, p: int) -> np.ndarray:
    # Output o sits at coarse coordinate o/2 - 1/4; tap j of input i lands on o = 2i + j - p, so
    # it weighs the input at distance (p - j)/2 + 1/4 from the output.
    return np.array([weight((p - j) / 2 + 0.25) for j in range(k)])


KERNELS: dict[str, tuple[np.ndarray, int]] = {
    "linear": (_taps(lambda t: max(0.0, 1 - abs(t)), 4, 1), 1),
    "cubic": (_taps(_keys, 8, 3), 3),
}


def boundary_mask(n: int, k: int, p: int, stride: int = 2) -> np.ndarray:
    """Outputs (one axis, ``n`` inputs) whose sum reaches an input position outside ``[0, n)``."""
    out_len = (n - 1) * stride - 2 * p + k
    mask = np.zeros(out_len, dtype=bool)
    for o in range(out_len):
        for j in range(k):
            num = o + p - j
            if num % stride == 0 and not 0 <= num // stride < n:
                mask[o] = True
    return mask


def upsample(coarse: np.ndarray, kernel: str, method: str) -> np.ndarray:
    """``coarse`` ``(B, n, n)`` upsampled ×2 by ``kernel`` with border handling ``method``; float64."""
    import torch
    import torch.nn.functional as F

    from diffconv.torch.functional import conv_transpose2d

    taps, p = KERNELS[kernel]
    k = len(taps)
    w = torch.tensor(np.outer(taps, taps), dtype=torch.float64).reshape(1, 1, k, k)
    x = torch.tensor(coarse, dtype=torch.float64)[:, None]
    if method == "diffconv":
        y = conv_transpose2d(x, w, None, 2, p)
    elif method == "zeros":
        y = F.conv_transpose2d(x, w, None, 2, p)
    elif method in ("replicate", "reflect", "circular"):
        g = (k - 1 - p + 1) // 2                      # ghosts each side reach: ceil((k-1-p)/2)
        y = F.conv_transpose2d(F.pad(x, (g,) * 4, mode=method), w, None, 2, p + 2 * g)
    else:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return y[:, 0].numpy()


def _cell_centres(n: int) -> np.ndarray:
    return LO + (np.arange(n) + 0.5) * (HI - LO) / n


def transpose_accuracy(
    fields: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] | None = None,
    sizes: Sequence[int] = (16, 32, 64),
    kernels: Sequence[str] = ("linear", "cubic"),
    methods: Sequence[str] = METHODS,
) -> tuple[list[dict], str]:
    """Run the experiment; returns ``(rows, table)``.

    ``fields``: name -> ``f(x, y)`` on a grid (``x`` rows, ``y`` columns) of ``[0.3, 0.8]^2``;
    by default the Chebyshev products of :mod:`diffconv.lab.fields` of orders 2, 5 and 10. ``sizes``:
    the coarse sides ``n``. One row per field, size, kernel and method with ``boundary_mean``,
    ``boundary_max``, ``interior_mean``, ``interior_max`` (interior ``nan`` when there is none).
    """
    if fields is None:
        fields = {f"chebyshev {n}": (lambda x, y, n=n: chebyshev_field(n, x, y)) for n in (2, 5, 10)}
    rows = []
    for name, field in fields.items():
        for n in sizes:
            fine_axis = _cell_centres(2 * n)
            truth = field(fine_axis, fine_axis)
            scale = float(np.abs(truth).max()) or 1.0
            truth = truth / scale
            coarse = field(_cell_centres(n), _cell_centres(n))[None] / scale
            for kernel in kernels:
                taps, p = KERNELS[kernel]
                edge = boundary_mask(n, len(taps), p)
                ring = edge[:, None] | edge[None, :]
                for method in methods:
                    err = np.abs(upsample(coarse, kernel, method)[0] - truth)
                    inner = err[~ring]
                    rows.append(dict(
                        field=name, size=n, kernel=kernel, method=method,
                        boundary_mean=float(err[ring].mean()), boundary_max=float(err[ring].max()),
                        interior_mean=float(inner.mean()) if inner.size else float("nan"),
                        interior_max=float(inner.max()) if inner.size else float("nan"),
                    ))
    return rows, format_rows(rows)


def format_rows(rows: Sequence[dict]) -> str:
    """Text table: one line per field, size and kernel; boundary mean error per method, and the
    interior mean error of the plain layer (every method shares the interior)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = f"{'field':<14} {'n->2n':>9} {'kernel':<7}" + "".join(f"{m:>11}" for m in methods) + f"{'interior':>11}"
    lines = ["Transposed convolution, x2 upsampling: mean |error| on the boundary ring "
             "(field max |f| = 1)", head, "-" * len(head)]
    keyed: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        keyed.setdefault((r["field"], r["size"], r["kernel"]), {})[r["method"]] = r
    for (name, n, kernel), by_method in keyed.items():
        cells = "".join(f"{by_method[m]['boundary_mean']:>11.2e}" if m in by_method else f"{'':>11}" for m in methods)
        interior = next(iter(by_method.values()))["interior_mean"]
        lines.append(f"{name:<14} {f'{n}->{2 * n}':>9} {kernel:<7}{cells}{interior:>11.2e}")
    return "\n".join(lines)
