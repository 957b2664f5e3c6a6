"""The accuracy experiment: exactness on polynomials, wins on smooth fields, the command's outputs."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from diffconv.baselines import boundary_methods, boundary_ring, valid_conv2d
from diffconv.cli import main
from diffconv.commands.accuracy import DIFFCONV, FIELDS, PRESETS, boundary_errors, diffconv_runner
from diffconv.fields import chebyshev_family, extended_axis, spherical_family, vorticity_family
from diffconv.reference import reference_conv


def _jax_conv_available() -> bool:
    try:
        from diffconv.jax import conv  # noqa: F401
    except ImportError:
        return False
    return True


def _methods(framework: str = "torch") -> dict:
    run = diffconv_runner(framework)
    methods = {DIFFCONV: lambda x, w, rng=None: run(x, w)}
    methods.update(boundary_methods())
    return methods


def _polynomial_field(k: int, size: int, seed: int) -> np.ndarray:
    """Random polynomial of degree k-1 in each of x and y, on the grid extended for a k kernel."""
    before, after = (k - 1) // 2, k // 2
    x = extended_axis(-1.0, 1.0, size, before, after)
    coeffs = np.random.default_rng(seed).standard_normal((k, k))
    xx, yy = np.meshgrid(x, x, indexing="ij")
    return np.polynomial.polynomial.polyval2d(xx, yy, coeffs)[None]


@pytest.mark.parametrize("k", [3, 5, 7])
def test_diffconv_is_exact_on_polynomials_and_no_baseline_is(k):
    size = 16
    field = _polynomial_field(k, size, seed=k)
    kernels = np.random.default_rng(1).standard_normal((6, 1, k, k))
    errors = boundary_errors(field, kernels, (k - 1) // 2, _methods(), np.random.default_rng(0))
    scale = np.abs(valid_conv2d(field[:, None], kernels)[..., boundary_ring((size, size), (k, k))]).mean()
    assert errors[DIFFCONV] / scale < 1e-9
    for name, err in errors.items():
        if name != DIFFCONV:
            assert err / scale > 1e-6, name


@pytest.mark.parametrize("k", [3, 5])
def test_diffconv_beats_every_baseline_on_the_smooth_fields(k):
    s = PRESETS["quick"]
    families = [
        chebyshev_family(s.size, s.orders),
        spherical_family(s.size, s.degrees),
        vorticity_family(s.ns_grid, s.ns_times, flows=s.ns_flows, dt=s.ns_dt),
    ]
    kernels = np.random.default_rng(2).standard_normal((4, 1, k, k))
    methods = _methods()
    for fam in families:
        for p in fam.parameters:
            errors = boundary_errors(fam.sample(p, (k - 1) // 2, k // 2), kernels, (k - 1) // 2, methods,
                                     np.random.default_rng(0))
            best = min(v for name, v in errors.items() if name != DIFFCONV)
            assert errors[DIFFCONV] < best, (fam.name, p, errors)


def test_boundary_errors_averages_the_ring_only():
    """A method that is exact inside and off by exactly 1 on the ring has error 1."""
    k, size = 3, 10
    field = np.random.default_rng(0).standard_normal((2, size + 2, size + 2))
    kernels = np.random.default_rng(1).standard_normal((3, 1, k, k))
    truth = valid_conv2d(field[:, None], kernels)
    ring = boundary_ring((size, size), (k, k))
    methods = {"off_on_ring": lambda x, w, rng=None: truth + ring, "off_inside": lambda x, w, rng=None: truth + ~ring}
    errors = boundary_errors(field, kernels, 1, methods, np.random.default_rng(0))
    assert errors == {"off_on_ring": pytest.approx(1.0, abs=1e-12), "off_inside": pytest.approx(0.0, abs=1e-12)}


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_diffconv_runner_matches_the_reference_form(framework):
    if framework == "jax" and not _jax_conv_available():
        pytest.skip("diffconv.jax.conv is not available")
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 1, 9, 11)), rng.standard_normal((3, 1, 5, 5))
    np.testing.assert_allclose(diffconv_runner(framework)(x, w), reference_conv(x, w), rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("accuracy")
    assert main(["accuracy", "--quick", "--out", str(out)]) == 0
    return out


def test_quick_run_writes_the_documented_json(quick_run):
    results = json.loads((quick_run / "accuracy.json").read_text())
    s = PRESETS["quick"]
    expected_params = {"chebyshev": s.orders, "spherical": s.degrees, "vorticity": s.ns_times}
    assert list(results) == list(FIELDS)
    methods = {DIFFCONV, *boundary_methods()}
    for field, rows in results.items():
        assert list(rows) == [f"{p:g}" for p in expected_params[field]]
        for param, errs in rows.items():
            assert set(errs) == methods
            assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in errs.values())
            assert errs[DIFFCONV] < min(v for m, v in errs.items() if m != DIFFCONV), (field, param)


def test_quick_run_writes_table_and_figure(quick_run):
    results = json.loads((quick_run / "accuracy.json").read_text())
    table = (quick_run / "accuracy.txt").read_text()
    for rows in results.values():
        for errs in rows.values():
            assert f"{errs[DIFFCONV]:13.3e}" in table
    png = (quick_run / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 300_000


def test_bad_options_fail_with_a_message(tmp_path, capsys):
    assert main(["accuracy", "--quick", "--kernel-size", "1", "--out", str(tmp_path)]) == 2
    assert "--kernel-size must be >= 2, got 1" in capsys.readouterr().err
    assert main(["accuracy", "--quick", "--kernels", "0", "--out", str(tmp_path)]) == 2
    assert "--kernels must be >= 1, got 0" in capsys.readouterr().err
    assert main(["accuracy", "--quick", "--kernel-size", "41", "--out", str(tmp_path)]) == 2
    assert "too large" in capsys.readouterr().err
    assert not (tmp_path / "accuracy.json").exists()


def test_jax_option_without_the_jax_backend_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffconv.jax", None)     # as if JAX were not installed
    assert main(["accuracy", "--quick", "--framework", "jax", "--out", str(tmp_path)]) == 2
    assert "diffconv.jax.conv" in capsys.readouterr().err
