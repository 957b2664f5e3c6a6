"""Boundary-handling baselines that DiffConv is compared with, as plain NumPy.

Channels-first arrays ``x: (N, C, H, W)``, weights ``(O, C, kh, kw)`` (cross-correlation, as in
``torch.nn.functional.conv2d``), stride 1, dilation 1, no groups. Every "same" convolution
keeps the size with the ghost widths of :func:`diffconv.plan.axis_plan`: ``(k-1)//2`` before
and ``k//2`` after, per axis.

``pad_width`` everywhere is ``((top, bottom), (left, right))``, the spatial part of
:func:`numpy.pad`'s argument. Padding is axis by axis, rows (H) first, then columns (W), so the
corners see the already padded rows.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .coefficients import ghost_weights
from .plan import axis_plan

__all__ = [
    "BoundaryMethod",
    "PadWidth",
    "boundary_methods",
    "boundary_ring",
    "pad_circular",
    "pad_extrapolate",
    "pad_random",
    "pad_reflect",
    "pad_replicate",
    "pad_zero",
    "partial_conv",
    "same_pad_width",
    "valid_conv2d",
]

PadWidth = tuple[tuple[int, int], tuple[int, int]]


class BoundaryMethod(Protocol):
    """A size-keeping 2-D convolution: ``(x, weight, bias=None, *, rng=None) -> (N, O, H, W)``."""

    def __call__(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray: ...


def _check_image(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def _check_pad_width(pad_width: PadWidth) -> PadWidth:
    try:
        (t, b), (l, r) = pad_width
    except (TypeError, ValueError):
        raise TypeError(f"pad_width must be ((top, bottom), (left, right)), got {pad_width!r}") from None
    for v in (t, b, l, r):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"pad_width must contain ints >= 0, got {pad_width!r}")
    return (int(t), int(b)), (int(l), int(r))


def same_pad_width(kernel_size: tuple[int, int]) -> PadWidth:
    """Ghost widths that make a ``kernel_size`` convolution size-keeping (the README's Semantics)."""
    (kh, kw) = kernel_size
    return ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)


def _numpy_pad(x: np.ndarray, pad_width: PadWidth, mode: str) -> np.ndarray:
    x = _check_image(x)
    (t, b), (l, r) = _check_pad_width(pad_width)
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), mode=mode)


def pad_zero(x: np.ndarray, pad_width: PadWidth) -> np.ndarray:
    """Zero padding (the default of every deep-learning framework)."""
    return _numpy_pad(x, pad_width, "constant")


def pad_reflect(x: np.ndarray, pad_width: PadWidth) -> np.ndarray:
    """Mirror padding without repeating the edge sample (``numpy.pad(mode='reflect')``)."""
    return _numpy_pad(x, pad_width, "reflect")


def pad_replicate(x: np.ndarray, pad_width: PadWidth) -> np.ndarray:
    """Repeat the edge sample (``numpy.pad(mode='edge')``)."""
    return _numpy_pad(x, pad_width, "edge")


def pad_circular(x: np.ndarray, pad_width: PadWidth) -> np.ndarray:
    """Periodic wrap-around (``numpy.pad(mode='wrap')``)."""
    return _numpy_pad(x, pad_width, "wrap")


def _pad_axis_extrapolate(x: np.ndarray, axis: int, before: int, after: int, order: int) -> np.ndarray:
    if before == 0 and after == 0:
        return x
    n = order + 1
    if x.shape[axis] < n:
        raise ValueError(
            f"axis {axis} has length {x.shape[axis]}, but extrapolation of order {order} needs {n} samples"
        )
    # Ghost weights of the degree-`order` polynomial through the `order + 1` edge samples.
    gw = ghost_weights(n, 1, widths=(before, after))
    xm = np.moveaxis(x, axis, -1)
    parts = []
    if before:
        parts.append(xm[..., :n] @ gw.low.T)
    parts.append(xm)
    if after:
        parts.append(xm[..., -n:] @ gw.high.T)
    return np.moveaxis(np.concatenate(parts, axis=-1), -1, axis)


def pad_extrapolate(x: np.ndarray, pad_width: PadWidth, order: int) -> np.ndarray:
    """Polynomial extrapolation padding (Gupta & Ramani 1978 style).

    Each ghost takes the value of the degree-``order`` polynomial through the ``order + 1``
    samples nearest its edge (linear, quadratic, cubic for ``order`` 1, 2, 3). The
    comparison uses ``order = k // 2`` for a ``k``-sized kernel: fewer samples and a lower
    degree than DiffConv's degree-``k-1`` extrapolation through ``k`` samples.
    """
    x = _check_image(x)
    (t, b), (l, r) = _check_pad_width(pad_width)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be an int >= 0, got {order!r}")
    return _pad_axis_extrapolate(_pad_axis_extrapolate(x, 2, t, b, int(order)), 3, l, r, int(order))


def _pad_axis_random(
    x: np.ndarray, axis: int, before: int, after: int, band: int, rng: np.random.Generator,
) -> np.ndarray:
    if before == 0 and after == 0:
        return x
    xm = np.moveaxis(x, axis, -1)
    band = min(band, xm.shape[-1])
    parts = []

    def ghosts(edge: np.ndarray, width: int) -> np.ndarray:
        # One Gaussian per line along the other spatial axis, per sample and channel.
        mean = edge.mean(axis=(-2, -1), keepdims=True)
        std = edge.std(axis=(-2, -1), keepdims=True)
        noise = rng.standard_normal(xm.shape[:-1] + (width,))
        return mean + std * noise

    if before:
        parts.append(ghosts(xm[..., :band], before))
    parts.append(xm)
    if after:
        parts.append(ghosts(xm[..., -band:], after))
    return np.moveaxis(np.concatenate(parts, axis=-1), -1, axis)


def pad_random(x: np.ndarray, pad_width: PadWidth, band: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Random padding (Nguyen et al. 2019): ghosts drawn from a Gaussian fitted to the border.

    The ghosts beyond each edge are i.i.d. normal with the mean and standard deviation of the
    ``band`` samples nearest that edge (the whole edge band, per sample and channel); the
    comparison uses ``band = k // 2 + 1``. ``rng`` defaults to a fresh unseeded generator.
    """
    x = _check_image(x)
    (t, b), (l, r) = _check_pad_width(pad_width)
    if isinstance(band, bool) or not isinstance(band, (int, np.integer)) or band < 1:
        raise ValueError(f"band must be an int >= 1, got {band!r}")
    rng = np.random.default_rng() if rng is None else rng
    return _pad_axis_random(_pad_axis_random(x, 2, t, b, int(band), rng), 3, l, r, int(band), rng)


def valid_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """VALID 2-D cross-correlation: ``(N, C, H, W) x (O, C, kh, kw) -> (N, O, H-kh+1, W-kw+1)``."""
    x = _check_image(x)
    weight = np.asarray(weight)
    if weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight must have shape (O, {x.shape[1]}, kh, kw) for x of shape {x.shape}, got {weight.shape}"
        )
    kh, kw = weight.shape[2:]
    if x.shape[2] < kh or x.shape[3] < kw:
        raise ValueError(f"x spatial shape {x.shape[2:]} is smaller than the kernel {(kh, kw)}")
    n, c, h, w = x.shape
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))          # (N, C, H', W', kh, kw)
    # im2col with the output positions last, so one matmul yields (O, N, H', W') in order.
    cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, -1)
    out = (weight.reshape(weight.shape[0], -1) @ cols).reshape(-1, n, h - kh + 1, w - kw + 1)
    out = out.transpose(1, 0, 2, 3)
    if bias is not None:
        out = out + np.asarray(bias).reshape(1, -1, 1, 1)
    return out


def partial_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Partial-convolution padding (Liu et al. 2018, 2022), size-keeping.

    Zero padding, then each output is re-weighted by ``kh*kw / (#window samples inside the
    image)``; the bias is added after the re-weighting. Interior outputs equal the zero-padded
    convolution.
    """
    x = _check_image(x)
    weight = np.asarray(weight)
    kh, kw = weight.shape[2:]
    pw = same_pad_width((kh, kw))
    out = valid_conv2d(pad_zero(x, pw), weight)
    inside = pad_zero(np.ones((1, 1) + x.shape[2:]), pw)
    count = valid_conv2d(inside, np.ones((1, 1, kh, kw)))          # (1, 1, H, W)
    out = out * (kh * kw / count)
    if bias is not None:
        out = out + np.asarray(bias).reshape(1, -1, 1, 1)
    return out


def _padded(pad: Callable[[np.ndarray, PadWidth], np.ndarray]) -> BoundaryMethod:
    def method(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
               rng: np.random.Generator | None = None) -> np.ndarray:
        return valid_conv2d(pad(x, same_pad_width(np.shape(weight)[2:])), weight, bias)

    method.__doc__ = f"Size-keeping convolution after ``{pad.__name__}``."
    return method


def _extrapolation(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Size-keeping convolution after :func:`pad_extrapolate` of order ``k // 2`` per axis."""
    kh, kw = np.shape(weight)[2:]
    (t, b), (l, r) = same_pad_width((kh, kw))
    padded = _pad_axis_extrapolate(_check_image(x), 2, t, b, kh // 2)
    padded = _pad_axis_extrapolate(padded, 3, l, r, kw // 2)
    return valid_conv2d(padded, weight, bias)


def _random(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Size-keeping convolution after :func:`pad_random` with bands of ``k // 2 + 1`` samples."""
    kh, kw = np.shape(weight)[2:]
    (t, b), (l, r) = same_pad_width((kh, kw))
    rng = np.random.default_rng() if rng is None else rng
    padded = _pad_axis_random(_check_image(x), 2, t, b, kh // 2 + 1, rng)
    padded = _pad_axis_random(padded, 3, l, r, kw // 2 + 1, rng)
    return valid_conv2d(padded, weight, bias)


def _partial(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
             rng: np.random.Generator | None = None) -> np.ndarray:
    return partial_conv(x, weight, bias)


_partial.__doc__ = partial_conv.__doc__


def boundary_methods() -> dict[str, BoundaryMethod]:
    """The baselines by name, each a size-keeping convolution ``(x, weight, bias=None, *, rng=None)``.

    ``zero``, ``reflect``, ``replicate``, ``circular``: the usual paddings; ``extrapolation``:
    order ``k // 2`` polynomial ghosts; ``random``: Gaussian ghosts fitted to the border
    (uses ``rng``); ``partial``: partial-convolution re-weighting.
    """
    return {
        "zero": _padded(pad_zero),
        "reflect": _padded(pad_reflect),
        "replicate": _padded(pad_replicate),
        "circular": _padded(pad_circular),
        "extrapolation": _extrapolation,
        "random": _random,
        "partial": _partial,
    }


def boundary_ring(shape: tuple[int, int], kernel_size: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)`` mask of the size-keeping outputs whose window reaches past the image."""
    mask = np.zeros(shape, dtype=bool)
    for a, (length, k) in enumerate(zip(shape, kernel_size)):
        p = axis_plan(length, k)
        idx = np.arange(length)
        edge = (idx < p.n_low) | (idx >= p.out_len - p.n_high)
        mask |= edge.reshape((-1, 1) if a == 0 else (1, -1))
    return mask

