"""The accuracy experiment: exactness on polynomials, wins on smooth fields, the command's outputs."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from diffconv.lab.baselines import boundary_methods, boundary_ring, valid_conv
from diffconv.lab.cli import main
from diffconv.lab.commands.accuracy import DIFFCONV, FIELDS, PRESETS, boundary_errors, diffconv_runner
from diffconv.lab.fields import (
    chebyshev_family,
    extended_axis,
    paper_chebyshev_family,
    spherical_family,
    vorticity_family,
)
import oracle


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
    scale = np.abs(valid_conv(field[:, None], kernels)[..., boundary_ring((size, size), (k, k))]).mean()
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
    truth = valid_conv(field[:, None], kernels)
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
    np.testing.assert_allclose(diffconv_runner(framework)(x, w), oracle.diff_conv(x, w), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape, k", [((2, 1, 12), 3), ((1, 2, 7, 6, 8), 3)])
def test_diffconv_runner_torch_and_jax_agree_in_1d_and_3d(shape, k):
    if not _jax_conv_available():
        pytest.skip("diffconv.jax.conv is not available")
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal(shape), rng.standard_normal((3, shape[1]) + (k,) * (len(shape) - 2))
    np.testing.assert_allclose(diffconv_runner("jax")(x, w), diffconv_runner("torch")(x, w), rtol=1e-10, atol=1e-10)


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


# --- the paper's experiment (--full) -------------------------------------------------------------

@pytest.mark.parametrize(
    "order, published",
    [
        (50, {"zero": 0.95, "reflect": 0.091, "replicate": 0.046, "extrapolation": 0.0077, DIFFCONV: 0.00088}),
        (100, {"zero": 0.81, "reflect": 0.25, DIFFCONV: 0.0076}),
    ],
)
def test_full_chebyshev_errors_match_the_papers_run(order, published):
    """One 500x500 field of the paper's Figure 2, 100 kernels: the figures of the paper's own code."""
    methods = {name: f for name, f in _methods().items() if name in published}
    kernels = np.random.default_rng(0).standard_normal((100, 1, 3, 3))
    errors = boundary_errors(paper_chebyshev_family().sample(order, 1, 1), kernels, 1, methods,
                             np.random.default_rng(0))
    for name, value in published.items():
        assert errors[name] == pytest.approx(value, rel=0.15), name


@pytest.mark.slow
def test_full_run_uses_the_papers_parameters(tmp_path):
    assert main(["accuracy", "--full", "--kernels", "10", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "accuracy.json").read_text())
    paper = PRESETS["full"]
    assert list(results["chebyshev"]) == [str(n) for n in (1, *range(10, 101, 10))] == [str(n) for n in paper.orders]
    assert list(results["spherical"]) == [str(m) for m in range(5, 56, 5)]
    assert list(results["vorticity"]) == [str(n) for n in (1, *range(10, 101, 10))]
    assert "image the central 498x498" in (tmp_path / "accuracy.txt").read_text()


# --- the user's data (--data) --------------------------------------------------------------------

def _run(argv, capsys):
    status = main(["accuracy", *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_data_errors_match_an_independent_torch_computation(tmp_path, capsys):
    """Image = central crop, truth = VALID convolution of the whole array, error on the ring only."""
    import torch
    import torch.nn.functional as F

    fields = np.random.default_rng(5).standard_normal((2, 3, 13, 11))
    np.save(tmp_path / "f.npy", fields)
    status, out, _ = _run(["--data", str(tmp_path / "f.npy"), "--kernels", "4", "--seed", "2",
                           "--out", str(tmp_path / "out")], capsys)
    assert status == 0
    rows = json.loads((tmp_path / "out" / "accuracy.json").read_text())["f"]
    assert list(rows) == ["0", "1", "mean"]
    kernels = torch.from_numpy(np.random.default_rng(2).standard_normal((4, 1, 3, 3)))
    for i in range(2):
        x = torch.from_numpy(fields[i][:, None])                            # channels as separate fields
        truth = F.conv2d(x, kernels)
        for name, mode in (("zero", "constant"), ("replicate", "replicate"), ("reflect", "reflect")):
            got = F.conv2d(F.pad(x[..., 1:-1, 1:-1], (1, 1, 1, 1), mode=mode), kernels)
            err = (got - truth).abs()
            ring = (err.sum() - err[..., 1:-1, 1:-1].sum()) / (err.numel() - err[..., 1:-1, 1:-1].numel())
            assert rows[str(i)][name] == pytest.approx(float(ring), rel=1e-12), (i, name)
    for method in rows["mean"]:
        assert rows["mean"][method] == pytest.approx((rows["0"][method] + rows["1"][method]) / 2, rel=1e-12)
    assert f"{rows['mean']['zero']:13.3e}" in out and "verdict:" in out


def test_data_verdict_names_diffconv_best_on_a_polynomial(tmp_path, capsys):
    np.savez(tmp_path / "p.npz", poly=_polynomial_field(3, 20, seed=1)[0])
    status, out, _ = _run(["--data", str(tmp_path / "p.npz"), "--kernels", "3", "--out", str(tmp_path)], capsys)
    assert status == 0
    assert "verdict: DiffConv has the lowest mean boundary error" in out and "1/1 samples" in out
    assert json.loads((tmp_path / "accuracy.json").read_text())["poly"]["mean"][DIFFCONV] < 1e-10


def test_data_verdict_says_plainly_when_diffconv_is_not_the_best(tmp_path, capsys):
    """A plateau two samples wide at each edge, then a jump: replicate padding is exact, DiffConv is not."""
    profile = np.where((np.arange(16) < 2) | (np.arange(16) > 13), 1.0, 0.0)
    np.save(tmp_path / "step.npy", profile[:, None] + profile[None, :])
    status, out, _ = _run(["--data", str(tmp_path / "step.npy"), "--kernels", "3", "--out", str(tmp_path)], capsys)
    rows = json.loads((tmp_path / "accuracy.json").read_text())["step"]
    assert status == 0 and rows["mean"]["replicate"] < 1e-12 < rows["mean"][DIFFCONV]
    assert "verdict: DiffConv is NOT the best method on this data: replicate has the lowest" in out
    png = (tmp_path / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("ndim, shape", [(1, (3, 2, 17)), (3, (1, 9, 8, 10))])
def test_data_in_1d_and_3d(tmp_path, capsys, ndim, shape):
    """DiffConv is exact on a quadratic in every axis; zero padding is compared with torch."""
    import torch
    import torch.nn.functional as F

    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[-ndim:]], indexing="ij")
    poly = sum(1 + a + 2 * a**2 for a in axes)
    fields = np.broadcast_to(poly, shape) * np.arange(1, shape[0] + 1).reshape((-1,) + (1,) * (len(shape) - 1))
    np.save(tmp_path / "v.npy", fields)
    status, _, _ = _run(["--data", str(tmp_path / "v.npy"), "--ndim", str(ndim), "--kernels", "2",
                         "--out", str(tmp_path)], capsys)
    rows = json.loads((tmp_path / "accuracy.json").read_text())["v"]
    assert status == 0 and list(rows) == [str(i) for i in range(shape[0])] + ["mean"]
    assert rows["mean"][DIFFCONV] < 1e-10 * rows["mean"]["zero"]
    conv = {1: F.conv1d, 3: F.conv3d}[ndim]
    kernels = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1) + (3,) * ndim))
    x = torch.from_numpy(np.ascontiguousarray(fields[-1]).reshape((-1, 1) + shape[-ndim:]))
    inner = (slice(None), slice(None)) + (slice(1, -1),) * ndim
    err = (conv(F.pad(x[inner], (1, 1) * ndim), kernels) - conv(x, kernels)).abs()
    ring = (err.sum() - err[inner].sum()) / (err.numel() - err[inner].numel())
    assert rows[str(shape[0] - 1)]["zero"] == pytest.approx(float(ring), rel=1e-12)


def _bad_file(tmp_path, kind):
    p = tmp_path / "bad.npy"
    if kind == "missing":
        return tmp_path / "missing.npy"
    if kind == "not an array":
        p.write_text("1 2 3\n4 5 6\n")
    elif kind == "non-finite":
        np.save(p, np.full((6, 6), np.nan))
    elif kind == "dtype":
        np.save(p, np.full((6, 6), "x"))
    elif kind == "too small":
        np.save(p, np.zeros((3, 4, 6)))
    elif kind == "rank":
        np.save(p, np.zeros((1, 1, 1, 6, 6)))
    return p


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "missing.npy: no such file"),
        ("not an array", "not a NumPy .npy or .npz array file"),
        ("non-finite", "has 36 non-finite values (NaN or inf)"),
        ("dtype", "has dtype <U1, which cannot be cast to floating point"),
        ("too small", "has spatial shape (4, 6); a kernel of size 3 (k - 1 for the truth's reach, k for the image) "
                      "needs at least 5 samples per axis"),
        ("rank", "has shape (1, 1, 1, 6, 6); 2-D fields need (H, W), (N, H, W) or (N, C, H, W)"),
    ],
)
def test_bad_data_files_give_one_line_and_status_2(tmp_path, capsys, kind, message):
    status, out, err = _run(["--data", str(_bad_file(tmp_path, kind)), "--out", str(tmp_path / "out")], capsys)
    assert status == 2
    assert err.startswith("diffconv accuracy: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists()


def test_data_options_that_do_not_combine(tmp_path, capsys):
    np.save(tmp_path / "f.npy", np.zeros((8, 8)))
    status, _, err = _run(["--data", str(tmp_path / "f.npy"), "--fields", "chebyshev"], capsys)
    assert status == 2 and "--fields chooses built-in fields; it cannot be combined with --data" in err
    status, _, err = _run(["--quick", "--ndim", "1"], capsys)
    assert status == 2 and "--arrays and --ndim apply to --data only" in err
    status, _, err = _run(["--data", str(tmp_path / "f.npy"), "--arrays", "f"], capsys)
    assert status == 2 and "array names apply to .npz archives" in err


def test_transposed_case_removes_the_boundary_error(tmp_path):
    """``--transposed``: x2 upsampling of a smooth field against the field sampled on the fine
    grid; DiffConvTranspose's boundary error is at the level of the interior error, the plain
    layer's and the paddings' far above it."""
    assert main(["accuracy", "--transposed", "--quick", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "accuracy-transposed.json").read_text())
    for field_kernel in {(r["field"], r["kernel"]) for r in rows}:
        by = {r["method"]: r for r in rows if (r["field"], r["kernel"]) == field_kernel}
        diff = by["diffconv"]["boundary_mean"]
        assert diff < 4 * by["diffconv"]["interior_mean"]
        assert diff < min(by[m]["boundary_mean"] for m in ("zeros", "replicate", "reflect", "circular"))
    assert main(["accuracy", "--transposed", "--full", "--out", str(tmp_path)]) == 2


# --- boundaries per axis and the ghost order (--boundary, --orders, --fields periodic-band) ---------

@pytest.mark.parametrize(
    "text, spec",
    [("diff", "diff"), ("diff,circular", ("diff", "circular")),
     ("zeros:diff,circular", (("zeros", "diff"), "circular")), (" replicate , reflect:zeros", ("replicate", ("reflect", "zeros")))],
)
def test_boundary_option_parses_to_the_layers_spec(text, spec):
    from diffconv.lab.commands.accuracy import parse_boundary_option, spec_text, variant_name

    assert parse_boundary_option(text, 2) == spec
    assert parse_boundary_option(spec_text(spec), 2) == spec
    assert variant_name(spec, None) == (DIFFCONV if spec == "diff" else f"{DIFFCONV}[{spec_text(spec)}]")
    assert variant_name(spec, 1).endswith(" p=1")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--boundary", "bogus"], "--boundary 'bogus': boundary must be one of"),
        (["--boundary", "diff,diff,diff"], "one mode or one entry per spatial axis (2 for a 2-d convolution)"),
        (["--boundary", "circular:diff,diff"], "circular on one side only"),
        (["--boundary", "a:b:c"], "has more than two sides"),
        (["--orders", "3"], "--orders 3: order 3 on spatial axis 0 is out of range"),
        (["--orders", "-1"], "--orders -1: order -1"),
        (["--transposed", "--orders", "1"], "--transposed runs its own cases"),
    ],
)
def test_bad_boundary_and_orders_give_one_line_and_status_2(tmp_path, capsys, argv, message):
    status, out, err = _run(["--quick", "--out", str(tmp_path / "out"), *argv], capsys)
    assert status == 2 and err.startswith("diffconv accuracy: error: ") and message in err
    assert err.count("\n") == 1 and out == "" and not (tmp_path / "out").exists()


def test_full_refuses_the_periodic_band(tmp_path, capsys):
    status, _, err = _run(["--full", "--fields", "periodic-band", "--out", str(tmp_path)], capsys)
    assert status == 2 and "runs at the project's sizes" in err


@pytest.fixture(scope="module")
def band_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("band")
    assert main(["accuracy", "--quick", "--fields", "periodic-band", "--kernels", "4", "--orders", "0", "1",
                 "--out", str(out)]) == 0
    return json.loads((out / "accuracy.json").read_text()), (out / "accuracy.txt").read_text()


def test_periodic_band_per_axis_spec_is_circular_on_the_periodic_sides_and_diffconv_on_the_bounded(band_run):
    results, table = band_run
    assert list(results) == ["periodic-band", "periodic-band/periodic sides", "periodic-band/bounded sides",
                             "periodic-band/corners"]
    mixed, zc = f"{DIFFCONV}[diff,circular]", f"{DIFFCONV}[zeros,circular]"
    for t in (f"{t:g}" for t in PRESETS["quick"].ns_times):
        ring = results["periodic-band"][t]
        periodic, bounded = results["periodic-band/periodic sides"][t], results["periodic-band/bounded sides"][t]
        # Periodic sides: the wrap is the truth, so the per-axis spec is exact as circular padding is.
        assert periodic[mixed] == pytest.approx(periodic["circular"], abs=1e-12) and periodic[mixed] < 1e-12
        assert periodic[DIFFCONV] > 1e-4
        # Bounded sides: DiffConv's ghosts, and zeros' ghosts for the hand-written periodic + zero padding.
        assert bounded[mixed] == pytest.approx(bounded[DIFFCONV], rel=1e-9)
        assert bounded[zc] == pytest.approx(bounded["zero"], rel=1e-9)
        # The whole ring: the per-axis spec beats DiffConv everywhere, circular everywhere and zero padding.
        assert ring[mixed] < min(ring[DIFFCONV], ring["circular"], ring["zero"], ring[zc])
    assert "best DiffConv setting: diffconv[diff,circular]" in table


def test_orders_add_columns_and_order_0_is_replicate_padding(band_run):
    results, _ = band_run
    for rows in results.values():
        for errs in rows.values():
            assert {f"{DIFFCONV} p=0", f"{DIFFCONV} p=1", DIFFCONV} <= set(errs)
    bounded = results["periodic-band/bounded sides"]
    for errs in bounded.values():
        assert errs[f"{DIFFCONV} p=0"] == pytest.approx(errs["replicate"], rel=1e-9)


def test_data_orders_and_a_periodic_axis(tmp_path, capsys):
    """--data with --boundary diff,circular: the circular axis is whole and its wrap the truth;
    order 0 is replicate padding; order 2 (k - 1) is the paper's."""
    from diffconv.lab.navier_stokes import gaussian_random_field

    fields = gaussian_random_field(32, np.random.default_rng(3), 2)[:, 8:24, :]     # periodic along W only
    np.save(tmp_path / "band.npy", fields)
    status, out, _ = _run(["--data", str(tmp_path / "band.npy"), "--kernels", "3", "--boundary", "diff,circular",
                           "--orders", "0", "2", "--out", str(tmp_path / "out")], capsys)
    assert status == 0 and "periodic (circular in --boundary) spatial axes [1]" in out
    mean = json.loads((tmp_path / "out" / "accuracy.json").read_text())["band"]["mean"]
    assert mean[f"{DIFFCONV}[diff,circular] p=2"] == pytest.approx(mean[f"{DIFFCONV}[diff,circular]"], rel=1e-12)
    assert mean[f"{DIFFCONV}[diff,circular]"] < mean[DIFFCONV]
    # Order 0 on rows and the wrap on columns is replicate padding except on the periodic sides.
    assert mean[f"{DIFFCONV}[diff,circular] p=0"] < mean["replicate"]
    assert "best DiffConv setting:" in out


def test_data_order_0_is_replicate_padding(tmp_path, capsys):
    np.save(tmp_path / "r.npy", np.random.default_rng(7).standard_normal((2, 12, 13)))
    status, out, _ = _run(["--data", str(tmp_path / "r.npy"), "--kernel-size", "5", "--kernels", "3",
                           "--orders", "0", "4", "--out", str(tmp_path / "out")], capsys)
    rows = json.loads((tmp_path / "out" / "accuracy.json").read_text())["r"]
    assert status == 0 and list(rows["mean"])[:3] == [DIFFCONV, f"{DIFFCONV} p=0", f"{DIFFCONV} p=4"]
    for errs in rows.values():
        assert errs[f"{DIFFCONV} p=0"] == pytest.approx(errs["replicate"], rel=1e-12)
        assert errs[f"{DIFFCONV} p=4"] == pytest.approx(errs[DIFFCONV], rel=1e-12)
