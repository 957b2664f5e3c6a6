"""Built-in test fields of the boundary-accuracy experiment (Leng & Thiyagalingam, §experiments).

Three families, each swept over a parameter that sets how fast the field varies:

* ``chebyshev``: ``U_n(x) U_n(y) sin(n (x + y))`` on ``[0.3, 0.8]^2``, order ``n``;
* ``spherical``: ``Re Y_n^m(theta, phi) sin(n (theta + phi))`` with ``m = n / 2`` on the patch
  ``theta in [1.3, 1.8]`` (around the equator), ``phi in [0.3, 0.8]``, degree ``n``;
* ``vorticity``: Navier–Stokes vorticity (:mod:`diffconv.lab.navier_stokes`) from random initial
  conditions, cut to a square window away from the periodic wrap, time ``t``.

One more case, periodic along one axis and bounded along the other (``periodic_band_family``):
the same vorticity over its full periodic width (columns) and a band of rows across it, as a
global grid is periodic in longitude and bounded in latitude.

Two ways of sampling them:

* **project sampling** (``chebyshev_family`` etc., the default and ``--quick`` runs): the field
  is sampled on the grid *extended* by the ghost widths ``(before, after)`` of the kernel, with
  the spacing of the unextended ``size x size`` grid, so the VALID convolution of the extended
  samples is the exact answer a size-keeping convolution of the central ``size x size``
  samples should give, and the image is the same for every kernel. Samples are scaled to a
  maximum modulus of 1.
* **paper sampling** (``paper_*_family``, ``diffconv accuracy --full``): as the paper's
  published experiment code samples them: a fixed ``500 x 500``
  grid whatever the kernel, the image its central crop, no normalisation; Chebyshev orders
  ``1, 10, ..., 100``; spherical harmonics with the azimuth along rows in ``[0.4 pi, 0.6 pi]``,
  the polar angle along columns in ``[pi/2 - pi/12, pi/2 + pi/12]``, ``m = 5, 10, ..., 55``,
  ``n = 2m``; the vorticity of the paper's data set replaced by the built-in stand-in
  :func:`paper_vorticity_family`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import navier_stokes as ns

__all__ = [
    "FieldFamily",
    "chebyshev_family",
    "chebyshev_field",
    "chebyshev_u",
    "extended_axis",
    "normalise",
    "paper_axis",
    "paper_chebyshev_family",
    "paper_spherical_angles",
    "paper_spherical_family",
    "paper_vorticity_family",
    "periodic_band_family",
    "spherical_family",
    "spherical_field",
    "vorticity_family",
]


def chebyshev_u(n: int, x: ArrayLike) -> np.ndarray:
    """Chebyshev polynomial of the second kind by ``U_0 = 1, U_1 = 2x, U_{k+1} = 2x U_k - U_{k-1}``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    x = np.asarray(x, dtype=np.float64)
    prev, cur = np.ones_like(x), 2 * x
    if n == 0:
        return prev
    for _ in range(n - 1):
        prev, cur = cur, 2 * x * cur - prev
    return cur


def extended_axis(lo: float, hi: float, size: int, before: int, after: int) -> np.ndarray:
    """``size`` points spanning ``[lo, hi]`` plus ``before``/``after`` more at the same spacing."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    h = (hi - lo) / (size - 1)
    return lo + h * np.arange(-before, size + after)


def normalise(f: np.ndarray) -> np.ndarray:
    """``f`` divided by its largest modulus over the last two axes (unchanged where that is 0)."""
    peak = np.abs(f).max(axis=(-2, -1), keepdims=True)
    return f / np.where(peak > 0, peak, 1.0)


def chebyshev_field(order: int, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """``U_n(x) U_n(y) sin(n (x + y))`` on the grid ``x`` (rows) by ``y`` (columns)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.outer(chebyshev_u(order, x), chebyshev_u(order, y)) * np.sin(order * (x[:, None] + y[None, :]))


def spherical_field(degree: int, theta: ArrayLike, phi: ArrayLike) -> np.ndarray:
    """``Re Y_n^m(theta, phi) sin(n (theta + phi))``, ``m = n // 2``, on ``theta`` (rows) by ``phi``.

    ``theta`` is the polar angle, ``phi`` the azimuth, ``Y_n^m`` the orthonormal spherical
    harmonic with the Condon–Shortley phase, ``Y_n^m = N P_n^m(cos theta) e^{i m phi}``.
    """
    from scipy import special

    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"degree must be an int >= 0, got {degree!r}")
    theta, phi = np.asarray(theta, dtype=np.float64), np.asarray(phi, dtype=np.float64)
    m = degree // 2
    # Y_n^m separates: its theta part at phi = 0 times e^{i m phi}; the real part keeps cos(m phi).
    if hasattr(special, "sph_harm_y"):
        polar = special.sph_harm_y(degree, m, theta, 0.0).real
    else:  # scipy < 1.15: sph_harm(m, n, azimuth, polar)
        polar = special.sph_harm(m, degree, 0.0, theta).real
    return np.outer(polar, np.cos(m * phi)) * np.sin(degree * (theta[:, None] + phi[None, :]))


Sampler = Callable[[float, int, int], np.ndarray]


@dataclass
class FieldFamily:
    """One field family of the experiment.

    ``sample(parameter, before, after)`` returns ``(samples, rows, rows)`` float64 arrays
    (several samples for random fields). Project sampling (``fixed_grid=False``): ``rows =
    size + before + after``, the ``size x size`` image grid extended by the reach, each sample
    scaled to max modulus 1. Paper sampling (``fixed_grid=True``): ``rows = size`` whatever the
    reach, not normalised; the image is the central ``size - before - after`` square.
    """

    name: str
    title: str
    parameter: str
    parameters: tuple[float, ...]
    size: int
    sample: Sampler = field(repr=False)
    fixed_grid: bool = False

    def image_size(self, before: int, after: int) -> int:
        """Side of the image the methods see for a kernel with ghost widths ``(before, after)``."""
        return self.size - before - after if self.fixed_grid else self.size


def chebyshev_family(size: int, orders: Sequence[int]) -> FieldFamily:
    """Chebyshev products on ``[0.3, 0.8]^2`` (``size x size`` before extension), one per order."""

    def sample(order: float, before: int, after: int) -> np.ndarray:
        x = extended_axis(0.3, 0.8, size, before, after)
        return normalise(chebyshev_field(int(order), x, x))[None]

    return FieldFamily("chebyshev", "Chebyshev $U_n(x)U_n(y)\\sin(n(x+y))$", "order n",
                       tuple(int(o) for o in orders), size, sample)


def spherical_family(size: int, degrees: Sequence[int]) -> FieldFamily:
    """Spherical-harmonic fields on ``theta in [1.3, 1.8]``, ``phi in [0.3, 0.8]``, one per degree."""

    def sample(degree: float, before: int, after: int) -> np.ndarray:
        theta = extended_axis(1.3, 1.8, size, before, after)
        phi = extended_axis(0.3, 0.8, size, before, after)
        return normalise(spherical_field(int(degree), theta, phi))[None]

    return FieldFamily("spherical", "spherical harmonics Re $Y_n^{n/2}\\sin(n(\\theta+\\phi))$", "degree n",
                       tuple(int(d) for d in degrees), size, sample)


_FLOWS: dict[tuple, np.ndarray] = {}


def _flows(grid: int, times: tuple[float, ...], flows: int, seed: int, viscosity: float, dt: float,
           progress: Callable[[int, int], None] | None) -> np.ndarray:
    """``(len(times), flows, grid, grid)`` vorticity snapshots, simulated once per setting."""
    key = (grid, times, flows, seed, viscosity, dt)
    if key not in _FLOWS:
        w0 = ns.gaussian_random_field(grid, np.random.default_rng(seed), flows)
        _FLOWS.clear()                      # keep one run in memory
        _FLOWS[key] = ns.solve(w0, times, viscosity=viscosity, dt=dt, forcing=ns.benchmark_forcing(grid),
                               progress=progress)
    return _FLOWS[key]


def vorticity_family(
    grid: int,
    times: Sequence[float],
    *,
    flows: int = 3,
    seed: int = 0,
    viscosity: float = 1e-3,
    dt: float = 1e-2,
    progress: Callable[[int, int], None] | None = None,
) -> FieldFamily:
    """Vorticity of ``flows`` forced Navier–Stokes runs on a ``grid x grid`` periodic grid.

    Random initial conditions (:func:`diffconv.lab.navier_stokes.gaussian_random_field`, seeded by
    ``seed``) under the benchmark forcing; the window is the central ``3*grid//4`` square
    (plus the ghost widths), so no window edge meets the periodic wrap. Simulated once, on the
    first call of ``sample``; ``progress(done, total)`` follows the time steps.
    """
    size = 3 * grid // 4
    times = tuple(float(t) for t in times)

    def sample(t: float, before: int, after: int) -> np.ndarray:
        if size + before + after > grid:
            raise ValueError(
                f"ghost widths ({before}, {after}) do not fit the {grid}-point grid around a {size} window"
            )
        snapshot = _flows(grid, times, flows, seed, viscosity, dt, progress)[times.index(float(t))]
        start = (grid - size) // 2 - before
        window = snapshot[:, start:start + size + before + after, start:start + size + before + after]
        return normalise(window)

    return FieldFamily("vorticity", "Navier-Stokes vorticity", "time t", times, size, sample)


def periodic_band_family(
    grid: int,
    times: Sequence[float],
    *,
    flows: int = 3,
    seed: int = 0,
    viscosity: float = 1e-3,
    dt: float = 1e-2,
    progress: Callable[[int, int], None] | None = None,
) -> FieldFamily:
    """The vorticity of :func:`vorticity_family` as a field periodic along columns, bounded along rows.

    The image is the central band of ``grid // 2`` rows over all ``grid`` columns (the full
    periodic width). ``sample`` returns ``(flows, grid // 2 + before + after, grid + before +
    after)``: the rows extended by the real rows beyond the band, the columns by the periodic
    wrap, so the VALID convolution is the exact answer on both axes.
    """
    rows = grid // 2
    times = tuple(float(t) for t in times)

    def sample(t: float, before: int, after: int) -> np.ndarray:
        if max(before, after) > min(grid - rows, grid) // 2:
            raise ValueError(f"ghost widths ({before}, {after}) do not fit around a {rows}-row band of a {grid} grid")
        snapshot = _flows(grid, times, flows, seed, viscosity, dt, progress)[times.index(float(t))]
        start = (grid - rows) // 2 - before
        band = snapshot[:, start:start + rows + before + after]
        return normalise(np.pad(band, ((0, 0), (0, 0), (before, after)), mode="wrap"))

    return FieldFamily("periodic-band", f"NS vorticity: {rows}-row band, all {grid} periodic columns",
                       "time t", times, rows, sample)


def paper_axis(points: int = 500) -> np.ndarray:
    """The paper's coordinate axis ``linspace(0.3, 0.8, points)`` (rows and columns alike)."""
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
        raise ValueError(f"points must be an int >= 2, got {points!r}")
    return np.linspace(0.3, 0.8, points)


def paper_chebyshev_family(points: int = 500, orders: Sequence[int] = (1, *range(10, 101, 10))) -> FieldFamily:
    """``U_n(h) U_n(w) sin(n (h + w))`` on ``paper_axis(points)`` squared, ``h`` along rows; not normalised."""

    def sample(order: float, before: int, after: int) -> np.ndarray:
        h = paper_axis(points)
        return chebyshev_field(int(order), h, h)[None]

    return FieldFamily("chebyshev", "Chebyshev $U_n(h)U_n(w)\\sin(n(h+w))$", "order n",
                       tuple(int(o) for o in orders), points, sample, fixed_grid=True)


def paper_spherical_angles(points: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """``(azimuth h, polar w)``: :func:`paper_axis` rescaled to ``[0, 1]``, then mapped to
    ``h in [0.4 pi, 0.6 pi]`` (rows) and ``w in [pi/2 - pi/12, pi/2 + pi/12]`` (columns)."""
    a = paper_axis(points)
    unit = (a - a.min()) / (a.max() - a.min())
    return 0.4 * np.pi + 0.2 * np.pi * unit, (np.pi / 2 - np.pi / 12) + (np.pi / 6) * unit


def paper_spherical_family(points: int = 500, orders: Sequence[int] = tuple(range(5, 56, 5))) -> FieldFamily:
    """``Re Y(m, n; azimuth h, polar w) sin(n (h + w))``, ``n = 2m``, azimuth along rows; not normalised.

    The parameter is the order ``m``; ``Y`` is orthonormal with the Condon-Shortley phase.
    """

    def sample(m: float, before: int, after: int) -> np.ndarray:
        azimuth, polar = paper_spherical_angles(points)
        # spherical_field puts its polar angle along rows; transposing puts the azimuth there.
        return spherical_field(2 * int(m), polar, azimuth).T[None]

    return FieldFamily("spherical", "spherical harmonics Re $Y_{2m}^m\\sin(2m(h+w))$", "order m (n = 2m)",
                       tuple(int(m) for m in orders), points, sample, fixed_grid=True)


def paper_vorticity_family(
    grid: int = 256, solutions: Sequence[int] = (1, *range(10, 101, 10)), *, seed: int = 0,
) -> FieldFamily:
    """Stand-in for the paper's vorticity at ``t = 0`` of solutions ``1, 10, ..., 100`` of its data set.

    The published ``256 x 256`` data set is not available offline; solution ``i`` here is the
    initial vorticity of a flow of :mod:`diffconv.lab.navier_stokes`, a periodic Gaussian random
    field (Li et al.'s covariance) drawn from ``default_rng([seed, i])``, whole grid, not
    normalised. Its numbers are not the paper's data set's.
    """

    def sample(solution: float, before: int, after: int) -> np.ndarray:
        return ns.gaussian_random_field(grid, np.random.default_rng([seed, int(solution)]), 1)

    return FieldFamily("vorticity", "vorticity at t = 0 (stand-in)", "solution",
                       tuple(int(i) for i in solutions), grid, sample, fixed_grid=True)
