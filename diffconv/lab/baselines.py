"""Boundary-handling baselines that DiffConv is compared with, as plain NumPy.

Channels-first arrays ``x: (N, C, *spatial)`` with 1, 2 or 3 spatial axes, weights
``(O, C, *k)`` (cross-correlation, as in ``torch.nn.functional.convNd``), stride 1, dilation 1,
no groups. Every "same" convolution keeps the size with the ghost widths of
:func:`diffconv.plan.axis_plan`: ``(k-1)//2`` before and ``k//2`` after, per axis.

``pad_width`` everywhere is one ``(before, after)`` pair per spatial axis, e.g.
``((top, bottom), (left, right))`` in 2-D: the spatial part of :func:`numpy.pad`'s argument.
Padding is axis by axis, first spatial axis first, so the corners see the already padded rows.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from diffconv.coefficients import ghost_weights
from diffconv.plan import axis_plan

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
    "valid_conv",
]

PadWidth = tuple[tuple[int, int], ...]


class BoundaryMethod(Protocol):
    """A size-keeping convolution: ``(x, weight, bias=None, *, rng=None) -> (N, O, *spatial)``."""

    def __call__(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray: ...


def _check_image(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (3, 4, 5):
        raise ValueError(f"{name} must have shape (N, C, L), (N, C, H, W) or (N, C, D, H, W), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def _check_pad_width(pad_width: PadWidth, spatial: int) -> PadWidth:
    try:
        pairs = tuple((before, after) for before, after in pad_width)
    except (TypeError, ValueError):
        pairs = ()
    if len(pairs) != spatial:
        raise TypeError(
            f"pad_width must hold one (before, after) pair per spatial axis ({spatial} here), got {pad_width!r}"
        )
    for v in (v for pair in pairs for v in pair):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"pad_width must contain ints >= 0, got {pad_width!r}")
    return tuple((int(b), int(a)) for b, a in pairs)


def same_pad_width(kernel_size: Sequence[int]) -> PadWidth:
    """Ghost widths that make a ``kernel_size`` convolution size-keeping (docs/design.md)."""
    return tuple(((k - 1) // 2, k // 2) for k in kernel_size)


def _numpy_pad(x: np.ndarray, pad_width: PadWidth, mode: str) -> np.ndarray:
    x = _check_image(x)
    pw = _check_pad_width(pad_width, x.ndim - 2)
    return np.pad(x, ((0, 0), (0, 0)) + pw, mode=mode)


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


def _extrapolated(x: np.ndarray, pw: PadWidth, orders: Sequence[int]) -> np.ndarray:
    for a, ((before, after), order) in enumerate(zip(pw, orders)):
        x = _pad_axis_extrapolate(x, a + 2, before, after, order)
    return x


def pad_extrapolate(x: np.ndarray, pad_width: PadWidth, order: int) -> np.ndarray:
    """Polynomial extrapolation padding (Gupta & Ramani 1978 style).

    Each ghost takes the value of the degree-``order`` polynomial through the ``order + 1``
    samples nearest its edge (linear, quadratic, cubic for ``order`` 1, 2, 3). The
    comparison uses ``order = k // 2`` for a ``k``-sized kernel: fewer samples and a lower
    degree than DiffConv's degree-``k-1`` extrapolation through ``k`` samples.
    """
    x = _check_image(x)
    pw = _check_pad_width(pad_width, x.ndim - 2)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be an int >= 0, got {order!r}")
    return _extrapolated(x, pw, [int(order)] * len(pw))


def _pad_axis_random(
    x: np.ndarray, axis: int, before: int, after: int, band: int, rng: np.random.Generator,
) -> np.ndarray:
    if before == 0 and after == 0:
        return x
    xm = np.moveaxis(x, axis, -1)
    band = min(band, xm.shape[-1])
    spatial = tuple(range(2, xm.ndim))
    parts = []

    def ghosts(edge: np.ndarray, width: int) -> np.ndarray:
        # One Gaussian per sample and channel, fitted to the whole edge band.
        mean = edge.mean(axis=spatial, keepdims=True)
        std = edge.std(axis=spatial, keepdims=True)
        noise = rng.standard_normal(xm.shape[:-1] + (width,))
        return mean + std * noise

    if before:
        parts.append(ghosts(xm[..., :band], before))
    parts.append(xm)
    if after:
        parts.append(ghosts(xm[..., -band:], after))
    return np.moveaxis(np.concatenate(parts, axis=-1), -1, axis)


def _randomised(x: np.ndarray, pw: PadWidth, bands: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    for a, ((before, after), band) in enumerate(zip(pw, bands)):
        x = _pad_axis_random(x, a + 2, before, after, band, rng)
    return x


def pad_random(x: np.ndarray, pad_width: PadWidth, band: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Random padding (Nguyen et al. 2019): ghosts drawn from a Gaussian fitted to the border.

    The ghosts beyond each edge are i.i.d. normal with the mean and standard deviation of the
    ``band`` samples nearest that edge (the whole edge band, per sample and channel); the
    comparison uses ``band = k // 2 + 1``. ``rng`` defaults to a fresh unseeded generator.
    """
    x = _check_image(x)
    pw = _check_pad_width(pad_width, x.ndim - 2)
    if isinstance(band, bool) or not isinstance(band, (int, np.integer)) or band < 1:
        raise ValueError(f"band must be an int >= 1, got {band!r}")
    rng = np.random.default_rng() if rng is None else rng
    return _randomised(x, pw, [int(band)] * len(pw), rng)


def valid_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """VALID cross-correlation, 1 to 3 spatial axes: ``(N, C, *s) x (O, C, *k) -> (N, O, *(s - k + 1))``."""
    x = _check_image(x)
    weight = np.asarray(weight)
    if weight.ndim != x.ndim or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight must have shape (O, {x.shape[1]}, {', '.join('k' * (x.ndim - 2))}) for x of shape "
            f"{x.shape}, got {weight.shape}"
        )
    ks, spatial = weight.shape[2:], x.shape[2:]
    if any(s < k for s, k in zip(spatial, ks)):
        raise ValueError(f"x spatial shape {spatial} is smaller than the kernel {ks}")
    d = len(ks)
    out_shape = tuple(s - k + 1 for s, k in zip(spatial, ks))
    windows = sliding_window_view(x, ks, axis=tuple(range(2, 2 + d)))      # (N, C, *out, *k)
    # im2col with the output positions last, so one matmul yields (O, N, *out) in order.
    order = (1, *range(2 + d, 2 + 2 * d), 0, *range(2, 2 + d))
    cols = windows.transpose(order).reshape(x.shape[1] * int(np.prod(ks)), -1)
    out = (weight.reshape(weight.shape[0], -1) @ cols).reshape(-1, x.shape[0], *out_shape)
    out = np.moveaxis(out, 0, 1)
    if bias is not None:
        out = out + np.asarray(bias).reshape((1, -1) + (1,) * d)
    return out


def partial_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Partial-convolution padding (Liu et al. 2018, 2022), size-keeping.

    Zero padding, then each output is re-weighted by ``prod(k) / (#window samples inside the
    image)``; the bias is added after the re-weighting. Interior outputs equal the zero-padded
    convolution.
    """
    x = _check_image(x)
    weight = np.asarray(weight)
    ks = weight.shape[2:]
    pw = same_pad_width(ks)
    out = valid_conv(pad_zero(x, pw), weight)
    inside = pad_zero(np.ones((1, 1) + x.shape[2:]), pw)
    count = valid_conv(inside, np.ones((1, 1) + ks))                      # (1, 1, *spatial)
    out = out * (np.prod(ks) / count)
    if bias is not None:
        out = out + np.asarray(bias).reshape((1, -1) + (1,) * len(ks))
    return out


def _padded(pad: Callable[[np.ndarray, PadWidth], np.ndarray]) -> BoundaryMethod:
    def method(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
               rng: np.random.Generator | None = None) -> np.ndarray:
        return valid_conv(pad(x, same_pad_width(np.shape(weight)[2:])), weight, bias)

    method.__doc__ = f"Size-keeping convolution after ``{pad.__name__}``."
    return method


def _extrapolation(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Size-keeping convolution after :func:`pad_extrapolate` of order ``k // 2`` per axis."""
    ks = np.shape(weight)[2:]
    padded = _extrapolated(_check_image(x), same_pad_width(ks), [k // 2 for k in ks])
    return valid_conv(padded, weight, bias)


def _random(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Size-keeping convolution after :func:`pad_random` with bands of ``k // 2 + 1`` samples."""
    ks = np.shape(weight)[2:]
    rng = np.random.default_rng() if rng is None else rng
    padded = _randomised(_check_image(x), same_pad_width(ks), [k // 2 + 1 for k in ks], rng)
    return valid_conv(padded, weight, bias)


def _partial(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, *,
             rng: np.random.Generator | None = None) -> np.ndarray:
    return partial_conv(x, weight, bias)


_partial.__doc__ = partial_conv.__doc__


def boundary_methods() -> dict[str, BoundaryMethod]:
    """The baselines by name, each a size-keeping convolution ``(x, weight, bias=None, *, rng=None)``.

    ``zero``, ``reflect``, ``replicate``, ``circular``: the usual paddings; ``extrapolation``:
    order ``k // 2`` polynomial ghosts; ``random``: Gaussian ghosts fitted to the border
    (uses ``rng``); ``partial``: partial-convolution re-weighting. 1 to 3 spatial axes.
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


def boundary_ring(shape: Sequence[int], kernel_size: Sequence[int]) -> np.ndarray:
    """Bool mask of ``shape`` (1 to 3 axes): the size-keeping outputs whose window reaches past the image."""
    mask = np.zeros(tuple(shape), dtype=bool)
    for a, (length, k) in enumerate(zip(shape, kernel_size)):
        p = axis_plan(length, k)
        idx = np.arange(length)
        edge = (idx < p.n_low) | (idx >= p.out_len - p.n_high)
        mask |= edge.reshape([-1 if b == a else 1 for b in range(len(shape))])
    return mask
