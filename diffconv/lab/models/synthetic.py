"""Synthetic scientific task: smooth non-periodic random fields, corrupted inputs, error metrics.

NumPy only; both training back ends draw the very same arrays from the same seed.
"""

from __future__ import annotations

import numpy as np

from diffconv._checks import check_choice

__all__ = ["TASKS", "smooth_fields", "degrade", "make_pair", "border_distance", "ring_errors", "error_profile"]

TASKS = ("denoise", "superres")
SUPERRES_FACTOR = 4
NOISE_STD = 0.5


def smooth_fields(rng: np.random.Generator, n: int, size: int, *, modes: int = 8, max_wavenumber: float = 2.5) -> np.ndarray:
    """``(n, size, size)`` float32 fields with zero mean and unit standard deviation each.

    Each field is a sum of ``modes`` plane waves ``a cos(2 pi k.x + phi)`` on the unit
    window with real (non-integer) wavenumbers ``|k_i| <= max_wavenumber``: smooth, and
    not periodic on the window, so its border carries information a network must get right.
    """
    x = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(x, x, indexing="ij")
    k = rng.uniform(-max_wavenumber, max_wavenumber, size=(n, modes, 2))
    amp = rng.normal(size=(n, modes)) / (1.0 + np.hypot(k[..., 0], k[..., 1]))
    phase = rng.uniform(0, 2 * np.pi, size=(n, modes))
    arg = 2 * np.pi * (k[..., 0, None, None] * yy + k[..., 1, None, None] * xx) + phase[..., None, None]
    u = np.einsum("nm,nmyx->nyx", amp, np.cos(arg))
    u -= u.mean(axis=(1, 2), keepdims=True)
    u /= u.std(axis=(1, 2), keepdims=True) + 1e-12
    return u.astype(np.float32)


def degrade(task: str, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The network input for targets ``u`` ``(..., size, size)``, float32.

    ``denoise``: ``u`` plus Gaussian noise of std 0.5. ``superres``: ``u`` averaged over 4x4
    blocks and repeated back to full size (``size`` divisible by 4).
    """
    check_choice("task", task, TASKS)
    if task == "denoise":
        return (u + NOISE_STD * rng.normal(size=u.shape)).astype(np.float32)
    f = SUPERRES_FACTOR
    h, w = u.shape[-2:]
    if h % f or w % f:
        raise ValueError(f"size must be divisible by {f} for task 'superres', got {h if h % f else w}")
    low = u.reshape(*u.shape[:-2], h // f, f, w // f, f).mean(axis=(-3, -1))
    return np.repeat(np.repeat(low, f, axis=-2), f, axis=-1).astype(np.float32)


def make_pair(task: str, rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)``, each ``(n, size, size)`` float32: :func:`degrade` of :func:`smooth_fields`."""
    check_choice("task", task, TASKS)
    if task == "superres" and size % SUPERRES_FACTOR:
        raise ValueError(f"size must be divisible by {SUPERRES_FACTOR} for task 'superres', got {size}")
    u = smooth_fields(rng, n, size)
    return degrade(task, u, rng), u


def border_distance(size: int) -> np.ndarray:
    """``(size, size)`` int: distance in pixels from each pixel to the nearest image edge (0 on the edge)."""
    i = np.arange(size)
    d = np.minimum(i, size - 1 - i)
    return np.minimum(d[:, None], d[None, :])


def ring_errors(pred: np.ndarray, target: np.ndarray, ring: int) -> dict[str, float]:
    """RMSE over the boundary ring (``border_distance < ring``), over the rest, and overall.

    pred, target: ``(n, size, size)``.
    """
    err2 = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2
    in_ring = border_distance(target.shape[-1]) < ring
    return {
        "boundary_rmse": float(np.sqrt(err2[:, in_ring].mean())),
        "interior_rmse": float(np.sqrt(err2[:, ~in_ring].mean())),
        "rmse": float(np.sqrt(err2.mean())),
    }


def error_profile(pred: np.ndarray, target: np.ndarray) -> list[float]:
    """RMSE as a function of the distance to the nearest edge: entry ``d`` for distance ``d``."""
    err2 = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2
    dist = border_distance(target.shape[-1])
    return [float(np.sqrt(err2[:, dist == d].mean())) for d in range(int(dist.max()) + 1)]
