"""Built-in test fields and the Navier–Stokes solver against independent truths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from diffconv.lab import fields as FL
from diffconv.lab import navier_stokes as ns


@pytest.mark.parametrize("n", [0, 1, 2, 7, 30, 100])
def test_chebyshev_u_matches_scipy(n):
    x = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(FL.chebyshev_u(n, x), special.eval_chebyu(n, x), rtol=1e-10, atol=1e-10 * (n + 1))


def test_chebyshev_field_formula():
    x, y = np.linspace(0.3, 0.8, 5), np.linspace(0.3, 0.8, 4)
    X, Y = np.meshgrid(x, y, indexing="ij")
    expect = special.eval_chebyu(9, X) * special.eval_chebyu(9, Y) * np.sin(9 * (X + Y))
    np.testing.assert_allclose(FL.chebyshev_field(9, x, y), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("degree", [10, 55, 110])
def test_spherical_field_matches_the_unseparated_harmonic(degree):
    theta, phi = np.linspace(1.3, 1.8, 6), np.linspace(0.3, 0.8, 5)
    T, P = np.meshgrid(theta, phi, indexing="ij")
    expect = special.sph_harm_y(degree, degree // 2, T, P).real * np.sin(degree * (T + P))
    np.testing.assert_allclose(FL.spherical_field(degree, theta, phi), expect, rtol=1e-10, atol=1e-12)


def test_extended_axis_keeps_the_image_grid():
    ax = FL.extended_axis(0.3, 0.8, 11, 2, 3)
    np.testing.assert_allclose(ax[2:13], np.linspace(0.3, 0.8, 11), rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.diff(ax), 0.05, rtol=1e-12)
    assert ax.shape == (16,)


@pytest.mark.parametrize(
    "family",
    [FL.chebyshev_family(20, (5,)), FL.spherical_family(20, (30,)), FL.vorticity_family(32, (0.2,), flows=2, dt=0.05)],
    ids=["chebyshev", "spherical", "vorticity"],
)
def test_family_image_does_not_depend_on_the_kernel_reach(family):
    """The extended samples differ per kernel size; the central image must not (up to the scale)."""
    p = family.parameters[0]
    a, b = family.sample(p, 1, 1), family.sample(p, 2, 3)
    s = family.size
    assert family.image_size(1, 1) == family.image_size(2, 3) == s
    assert a.shape[1:] == (s + 2, s + 2) and b.shape[1:] == (s + 5, s + 5) and a.shape[0] == b.shape[0]
    np.testing.assert_allclose(np.abs(a).max(axis=(1, 2)), 1.0)
    ia, ib = a[:, 1:1 + s, 1:1 + s], b[:, 2:2 + s, 2:2 + s]
    ratio = np.abs(ib).max(axis=(1, 2)) / np.abs(ia).max(axis=(1, 2))
    np.testing.assert_allclose(ib, ia * ratio[:, None, None], rtol=1e-12, atol=1e-12)


def test_paper_chebyshev_sampling_is_the_formula_on_the_papers_grid():
    fam = FL.paper_chebyshev_family(points=20, orders=(7,))
    field = fam.sample(7, 1, 1)
    h = np.linspace(0.3, 0.8, 20)
    expect = special.eval_chebyu(7, h)[:, None] * special.eval_chebyu(7, h)[None, :] * np.sin(7 * (h[:, None] + h))
    assert field.shape == (1, 20, 20)
    np.testing.assert_allclose(field[0], expect, rtol=1e-12, atol=1e-12)
    # One grid whatever the kernel; the image is its crop. Not normalised.
    np.testing.assert_array_equal(fam.sample(7, 2, 2), field)
    assert fam.image_size(1, 1) == 18 and fam.image_size(2, 2) == 16
    assert abs(np.abs(field).max() - 1) > 0.1


def test_paper_spherical_sampling_puts_the_azimuth_along_rows():
    points, m = 12, 15
    field = FL.paper_spherical_family(points=points, orders=(m,)).sample(m, 1, 1)[0]
    azimuth = np.linspace(0.4 * np.pi, 0.6 * np.pi, points)[:, None]
    polar = np.linspace(np.pi / 2 - np.pi / 12, np.pi / 2 + np.pi / 12, points)[None, :]
    expect = special.sph_harm_y(2 * m, m, polar, azimuth).real * np.sin(2 * m * (azimuth + polar))
    np.testing.assert_allclose(field, expect, rtol=1e-10, atol=1e-13)


def test_paper_vorticity_stand_in_is_one_fixed_grid():
    fam = FL.paper_vorticity_family(grid=32, solutions=(1, 10), seed=3)
    a, b = fam.sample(10, 1, 1), fam.sample(10, 2, 3)
    assert a.shape == (1, 32, 32) and fam.image_size(1, 1) == 30
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - fam.sample(1, 1, 1)).max() > 1e-3


def test_taylor_green_vortex_decays_exactly():
    """``w = A sin(2 pi x) sin(2 pi y)`` has no advection and decays as ``exp(-2 nu (2 pi)^2 t)``."""
    n, nu = 32, 0.01
    x = np.arange(n) / n
    w0 = 3.0 * np.outer(np.sin(2 * np.pi * x), np.sin(2 * np.pi * x))
    out = ns.solve(w0, [0.5, 2.0], viscosity=nu, dt=0.01)
    for t, w in zip([0.5, 2.0], out):
        # Crank–Nicolson's second-order error: about 2e-6 relative at this step.
        np.testing.assert_allclose(w, w0 * np.exp(-2 * nu * (2 * np.pi) ** 2 * t), rtol=0, atol=1e-5 * 3.0)


def test_kolmogorov_forcing_approaches_its_steady_state():
    """Forcing ``F sin(2 pi x)`` from rest: ``w = F / (nu k^2) (1 - exp(-nu k^2 t)) sin(2 pi x)``."""
    n, nu, F = 32, 0.05, 0.7
    x = np.arange(n) / n
    f = F * np.outer(np.sin(2 * np.pi * x), np.ones(n))
    k2 = (2 * np.pi) ** 2
    out = ns.solve(np.zeros((n, n)), [1.0], viscosity=nu, dt=0.005, forcing=f)[0]
    expect = F / (nu * k2) * (1 - np.exp(-nu * k2 * 1.0)) * np.outer(np.sin(2 * np.pi * x), np.ones(n))
    np.testing.assert_allclose(out, expect, rtol=0, atol=1e-5)


def test_random_flow_conserves_mean_and_loses_energy():
    rng = np.random.default_rng(3)
    n = 32
    w0 = 4 * ns.gaussian_random_field(n, rng, 2) + np.array([0.3, -0.2])[:, None, None]
    times = [0.1 * i for i in range(1, 11)]
    out = ns.solve(w0, times, viscosity=2e-3, dt=0.01)
    np.testing.assert_allclose(out.mean(axis=(-2, -1)), np.broadcast_to(w0.mean(axis=(-2, -1)), (10, 2)), atol=1e-12)
    e = np.concatenate([ns.energy(w0)[None], ns.energy(out)])
    assert np.all(np.diff(e, axis=0) <= 1e-12 * e[0]), e
    assert np.all(e[-1] < e[0])
    assert np.abs(out[-1] - w0).max() > 0.05 * np.abs(w0).max()  # the flow really moved


def test_energy_of_a_single_mode():
    """``w = sin(2 pi x)``: ``psi = w / (2 pi)^2``, ``v = -psi_x``, energy ``1 / (4 (2 pi)^2)``."""
    n = 16
    x = np.arange(n) / n
    w = np.outer(np.sin(2 * np.pi * x), np.ones(n))
    u, v = ns.velocity(w)
    np.testing.assert_allclose(u, 0, atol=1e-14)
    np.testing.assert_allclose(v, -np.outer(np.cos(2 * np.pi * x), np.ones(n)) / (2 * np.pi), atol=1e-14)
    np.testing.assert_allclose(ns.energy(w), 1 / (4 * (2 * np.pi) ** 2), rtol=1e-12)


def test_flows_are_deterministic_per_seed():
    def run(seed: int) -> np.ndarray:
        w0 = ns.gaussian_random_field(32, np.random.default_rng(seed), 1)
        return ns.solve(w0, [0.3], dt=0.05, forcing=ns.benchmark_forcing(32))

    np.testing.assert_array_equal(run(5), run(5))
    assert np.abs(run(5) - run(6)).max() > 1e-3


def test_gaussian_random_field_spectrum():
    """Mode amplitudes follow ``(4 pi^2 |k|^2 + tau^2)^(-alpha/2)``: compare two shells."""
    n, alpha, tau = 64, 2.5, 7.0
    w = ns.gaussian_random_field(n, np.random.default_rng(0), 200, alpha=alpha, tau=tau)
    assert np.abs(w.mean(axis=(-2, -1))).max() < 1e-12
    power = (np.abs(np.fft.fft2(w)) ** 2).mean(axis=0)
    k = np.fft.fftfreq(n, 1 / n)
    K = np.hypot(k[:, None], k[None, :])
    law = lambda r: (4 * np.pi**2 * r**2 + tau**2) ** (-alpha)  # noqa: E731
    ratio = power[np.isclose(K, 1)].mean() / power[np.isclose(K, 8)].mean()
    assert ratio == pytest.approx(law(1) / law(8), rel=0.15)


def test_solver_rejects_bad_arguments():
    w = np.zeros((8, 8))
    with pytest.raises(ValueError, match="dt must be > 0"):
        ns.solve(w, [1.0], dt=0)
    with pytest.raises(ValueError, match="times must be non-decreasing"):
        ns.solve(w, [1.0, 0.5])
    with pytest.raises(ValueError, match="w0 must have shape"):
        ns.solve(np.zeros((8, 6)), [1.0])
    with pytest.raises(ValueError, match="n must be an even int"):
        ns.SpectralGrid.of(7)
    with pytest.raises(ValueError, match="order|n must be"):
        FL.chebyshev_u(-1, 0.5)
