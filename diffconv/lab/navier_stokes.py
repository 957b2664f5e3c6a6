"""A small pseudo-spectral solver for 2-D incompressible Navier–Stokes in vorticity form.

On the periodic unit square, ``w_t + u . grad(w) = nu * lap(w) + f`` with the velocity
``u = (d psi/dy, -d psi/dx)`` from the stream function ``-lap(psi) = w``. Fourier
collocation with the 2/3 dealiasing rule on the nonlinear term; Crank–Nicolson for the
viscous term and Heun's predictor–corrector for advection and forcing (second order). The
default forcing, initial-condition law and viscosity follow the 2-D Navier–Stokes benchmark
of Li et al. 2021 (Fourier Neural Operator, §5.3).

Arrays are ``(..., n, n)`` indexed ``[..., i, j]`` at ``x = i/n``, ``y = j/n``, float64; leading
axes are independent flows advanced together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.fft as sfft

from diffconv._checks import check_finite

__all__ = [
    "SpectralGrid",
    "benchmark_forcing",
    "energy",
    "gaussian_random_field",
    "solve",
    "velocity",
]


@dataclass(frozen=True)
class SpectralGrid:
    """Wavenumbers of an ``n x n`` grid on the unit square (half spectrum along ``y``).

    ``kx``: ``(n, 1)``, ``ky``: ``(1, n//2+1)`` angular wavenumbers ``2*pi*integer``;
    ``k2 = kx**2 + ky**2``; ``inv_k2 = 1/k2`` except 0 for the mean mode (the stream function
    has zero mean); ``dealias``: the 2/3-rule mask, True where ``|integer wavenumber| < n/3``
    on both axes.
    """

    n: int
    kx: np.ndarray
    ky: np.ndarray
    k2: np.ndarray
    inv_k2: np.ndarray
    dealias: np.ndarray

    @classmethod
    def of(cls, n: int) -> "SpectralGrid":
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 4 or n % 2:
            raise ValueError(f"n must be an even int >= 4, got {n!r}")
        ix = np.fft.fftfreq(n, 1.0 / n)[:, None]
        iy = np.fft.rfftfreq(n, 1.0 / n)[None, :]
        kx, ky = 2 * np.pi * ix, 2 * np.pi * iy
        k2 = kx**2 + ky**2
        inv_k2 = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
        dealias = (np.abs(ix) < n / 3) & (np.abs(iy) < n / 3)
        return cls(int(n), kx, ky, k2, inv_k2, dealias)


def _check_field(name: str, w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"{name} must have shape (..., n, n), got {w.shape}")
    return w


def velocity(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Velocity ``(u, v)`` of the vorticity ``w`` ``(..., n, n)``: ``u = psi_y``, ``v = -psi_x``."""
    w = _check_field("w", w)
    g = SpectralGrid.of(w.shape[-1])
    psi_h = sfft.rfft2(w) * g.inv_k2
    n = g.n
    return (sfft.irfft2(1j * g.ky * psi_h, s=(n, n)), sfft.irfft2(-1j * g.kx * psi_h, s=(n, n)))


def energy(w: np.ndarray) -> np.ndarray:
    """Kinetic energy ``0.5 * mean(u**2 + v**2)`` of the vorticity ``w`` ``(..., n, n)``."""
    u, v = velocity(w)
    return 0.5 * (u**2 + v**2).mean(axis=(-2, -1))


def benchmark_forcing(n: int) -> np.ndarray:
    """``f(x, y) = 0.1 * (sin(2 pi (x + y)) + cos(2 pi (x + y)))`` on the ``n x n`` grid."""
    x = np.arange(n) / n
    s = 2 * np.pi * (x[:, None] + x[None, :])
    return 0.1 * (np.sin(s) + np.cos(s))


def gaussian_random_field(
    n: int, rng: np.random.Generator, count: int = 1, *, alpha: float = 2.5, tau: float = 7.0,
) -> np.ndarray:
    """``count`` samples ``(count, n, n)`` of a periodic mean-free Gaussian random field.

    Covariance proportional to ``(-lap + tau**2)**(-alpha)`` (Li et al. 2021 use ``alpha=2.5,
    tau=7``): each Fourier mode gets an independent complex normal coefficient times
    ``sigma = tau**(alpha - 1)`` and the square root of that operator's eigenvalue.
    """
    g = SpectralGrid.of(n)
    kx = 2 * np.pi * np.fft.fftfreq(n, 1.0 / n)
    k2 = kx[:, None] ** 2 + kx[None, :] ** 2
    amp = tau ** (alpha - 1) * (k2 + tau**2) ** (-alpha / 2)
    amp[0, 0] = 0.0
    noise = rng.standard_normal((count, n, n)) + 1j * rng.standard_normal((count, n, n))
    # sqrt(2) * Re(sum_k a_k xi_k e^{ikx}) with complex standard normal xi_k; n*n undoes
    # ifft2's 1/n^2 so the amplitude does not depend on the grid.
    return np.real(np.fft.ifft2(amp * noise)) * (g.n * g.n) * np.sqrt(2.0)


def _advection(w_h: np.ndarray, g: SpectralGrid) -> np.ndarray:
    """Dealiased Fourier coefficients of ``u . grad(w)``."""
    n = g.n
    w_h = w_h * g.dealias
    psi_h = w_h * g.inv_k2
    u, v, w_x, w_y = sfft.irfft2(
        np.stack([1j * g.ky * psi_h, -1j * g.kx * psi_h, 1j * g.kx * w_h, 1j * g.ky * w_h]), s=(n, n)
    )
    return sfft.rfft2(u * w_x + v * w_y) * g.dealias


def solve(
    w0: np.ndarray,
    times: Sequence[float],
    *,
    viscosity: float = 1e-3,
    dt: float = 1e-3,
    forcing: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Advance the vorticity ``w0`` ``(..., n, n)`` and return it at ``times``: ``(len(times), ..., n, n)``.

    ``times`` must be non-decreasing and ``>= 0``; each is reached by whole steps of at most
    ``dt``. ``forcing``: ``(n, n)`` source term ``f`` (None for decaying flow).
    ``progress(done, total)`` is called after every time step.
    """
    w = _check_field("w0", w0)
    check_finite("viscosity", viscosity)
    check_finite("dt", dt)
    if viscosity < 0:
        raise ValueError(f"viscosity must be >= 0, got {viscosity!r}")
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt!r}")
    times = [float(t) for t in times]
    if any(t < 0 for t in times) or any(b < a for a, b in zip(times, times[1:])):
        raise ValueError(f"times must be non-decreasing and >= 0, got {times}")
    g = SpectralGrid.of(w.shape[-1])
    f_h = 0.0 if forcing is None else sfft.rfft2(_check_field("forcing", forcing))

    starts = [0.0] + times[:-1]
    steps = [int(np.ceil((b - a) / dt - 1e-9)) for a, b in zip(starts, times)]
    total, done = sum(steps), 0
    w_h = sfft.rfft2(w)
    out = []
    for start, target, n_steps in zip(starts, times, steps):
        if n_steps > 0:
            h = (target - start) / n_steps
            lo = 1.0 - 0.5 * h * viscosity * g.k2
            hi = 1.0 + 0.5 * h * viscosity * g.k2
            for _ in range(n_steps):
                rhs0 = f_h - _advection(w_h, g)
                pred = (lo * w_h + h * rhs0) / hi
                rhs1 = f_h - _advection(pred, g)
                w_h = (lo * w_h + 0.5 * h * (rhs0 + rhs1)) / hi
                done += 1
                if progress is not None:
                    progress(done, total)
        out.append(sfft.irfft2(w_h, s=(g.n, g.n)))
    result = np.stack(out) if out else np.empty((0,) + w.shape)
    if not np.all(np.isfinite(result)):
        raise FloatingPointError(f"the flow blew up: reduce dt (got {dt}) or raise the resolution (n={g.n})")
    return result
