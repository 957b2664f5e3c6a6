"""``diffconv train`` in both frameworks, its synthetic task and metrics, and the example scripts."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffconv.lab.cli import main
from diffconv.lab.models.synthetic import border_distance, error_profile, make_pair, ring_errors, smooth_fields

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    """Tiny convolutions run far faster on one thread than on oversubscribed cores."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_smooth_fields_are_normalised_smooth_and_not_periodic():
    u = smooth_fields(np.random.default_rng(0), 6, 32).astype(np.float64)
    np.testing.assert_allclose(u.mean(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(u.std(axis=(1, 2)), 1, rtol=1e-5)
    step = np.abs(np.diff(u, axis=2)).mean()
    curvature = np.abs(np.diff(u, 2, axis=2)).mean()
    wrap = np.abs(u[:, :, 0] - u[:, :, -1]).mean()
    # Band-limited to 2.5 cycles per window: |second difference| <= (2 pi 2.5 / 32) |first
    # difference| on average (white noise would give ~1.7); a jump across the periodic wrap.
    assert curvature < 0.5 * step and wrap > 3 * step


def test_task_pairs():
    x, y = make_pair("superres", np.random.default_rng(1), 2, 16)
    # Each 4x4 block of the input is the mean of the target over that block.
    blocks = y.reshape(2, 4, 4, 4, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(x, np.repeat(np.repeat(blocks, 4, 1), 4, 2), rtol=1e-6, atol=1e-6)
    x, y = make_pair("denoise", np.random.default_rng(1), 8, 32)
    assert abs(float(np.std(x - y)) - 0.5) < 0.02
    with pytest.raises(ValueError, match="task must be one of"):
        make_pair("deblur", np.random.default_rng(1), 1, 16)
    with pytest.raises(ValueError, match="size must be divisible by 4 for task 'superres', got 18"):
        make_pair("superres", np.random.default_rng(1), 1, 18)


def test_ring_metrics_on_a_known_error():
    size, ring = 10, 2
    target = np.zeros((3, size, size))
    dist = border_distance(size)
    assert dist[0, 5] == 0 and dist[1, 1] == 1 and dist[4, 5] == 4 and dist.max() == 4
    pred = np.where(dist < ring, 3.0, 0.5)[None].repeat(3, 0)
    e = ring_errors(pred, target, ring)
    assert e["boundary_rmse"] == pytest.approx(3.0) and e["interior_rmse"] == pytest.approx(0.5)
    n_ring = (dist < ring).sum()
    assert e["rmse"] == pytest.approx(np.sqrt((9 * n_ring + 0.25 * (size * size - n_ring)) / size**2))
    assert error_profile(pred, target) == pytest.approx([3.0, 3.0, 0.5, 0.5, 0.5])


# Subprocesses compile with XLA's cheap backend settings: tiny models, where compile time is
# nearly all of the run time; the numerics are the same.
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _check_result(out: Path, framework: str, task: str) -> dict:
    assert (out / "train.png").stat().st_size > 10_000
    result = json.loads((out / "train.json").read_text())
    cfg = result["config"]
    assert cfg["framework"] == framework and cfg["task"] == task and cfg["steps"] == 12
    in_ring = (border_distance(cfg["size"]) < cfg["ring"]).mean()
    for r in result["methods"].values():
        assert len(r["loss"]) == 12 and np.all(np.isfinite(r["loss"]))
        assert 0 < r["boundary_rmse"] and 0 < r["interior_rmse"]
        # The overall error is the area-weighted mix of ring and interior errors.
        mix = in_ring * r["boundary_rmse"] ** 2 + (1 - in_ring) * r["interior_rmse"] ** 2
        assert r["rmse"] == pytest.approx(np.sqrt(mix), rel=1e-9)
        assert len(r["rmse_vs_border_distance"]) == cfg["size"] // 2
    return result


@pytest.mark.slow
def test_train_torch_quick(tmp_path, one_thread):
    import torch

    from diffconv.lab.commands.train import batches
    from diffconv.lab.models.torch_nets import UNet
    from diffconv.torch import convert

    out = tmp_path / "torch"
    assert main(["train", "--framework", "torch", "--quick", "--out", str(out), "--seed", "3"]) == 0
    result = _check_result(out, "torch", "superres")
    cfg = result["config"]
    # Step 0's loss of each method is that of the shared initial UNet on the first batch.
    torch.manual_seed(cfg["seed"])
    zero = UNet(1, 1, width=cfg["width"], depth=cfg["depth"])
    diff = convert(copy.deepcopy(zero))
    x, y = (torch.from_numpy(a) for a in batches(cfg)(0))
    with torch.no_grad():
        for method, model in (("zero_padding", zero), ("diffconv", diff)):
            expected = float(torch.nn.functional.mse_loss(model(x), y))
            assert result["methods"][method]["loss"][0] == pytest.approx(expected, rel=1e-5)
    for r in result["methods"].values():
        assert np.mean(r["loss"][-3:]) < r["loss"][0]


@pytest.mark.slow
def test_train_jax_quick(tmp_path):
    pytest.importorskip("flax")
    pytest.importorskip("optax")
    out = tmp_path / "jax"
    env = dict(os.environ, XLA_FLAGS=FAST_XLA, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "diffconv.lab.cli", "train", "--framework", "jax", "--task", "denoise", "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = _check_result(out, "jax", "denoise")
    cfg = result["config"]
    # Step 0's loss of each method is that of the shared initial Flax UNet on the first batch.
    import jax
    import jax.numpy as jnp

    from diffconv.lab.commands.train import batches, flax_conv
    from diffconv.lab.models.flax_unet import UNet

    x, y = (jnp.asarray(a.transpose(0, 2, 3, 1)) for a in batches(cfg)(0))
    params = UNet(out_features=1, width=cfg["width"], depth=cfg["depth"]).init(
        jax.random.key(cfg["seed"]), jnp.zeros((1, cfg["size"], cfg["size"], 1)))
    first = {}
    for method in ("zero_padding", "diffconv"):
        model = UNet(out_features=1, width=cfg["width"], depth=cfg["depth"], conv=flax_conv(method))
        first[method] = float(jnp.mean((model.apply(params, x) - y) ** 2))
        assert result["methods"][method]["loss"][0] == pytest.approx(first[method], rel=1e-4)
    assert first["zero_padding"] != first["diffconv"]
    assert "diffconv" in proc.stdout and "zero_padding" in proc.stdout


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--size", "18"], "--size must be a multiple of 4"),
        (["--lr", "-1"], "--lr must be > 0, got -1"),
        (["--ring", "16"], "--ring must be < size/2 = 16 to leave an interior, got 16"),
        (["--seed", "-2"], "--seed must be >= 0, got -2"),
        (["--array", "u"], "--array applies to --data only"),
    ],
)
def test_train_rejects_bad_options(tmp_path, capsys, argv, match):
    assert main(["train", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffconv train: error: ") and match in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("script", ["torch_train.py", "flax_train.py"])
def test_examples_run(script):
    if script.startswith("flax"):
        pytest.importorskip("flax")
    env = dict(os.environ, OMP_NUM_THREADS="1", XLA_FLAGS=FAST_XLA, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--steps", "2", "--size", "16"],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [l for l in proc.stdout.splitlines() if "RMSE boundary ring" in l]
    assert [l.split()[0] for l in lines] == ["zero", "DiffConv"]
    for l in lines:
        assert np.isfinite(float(l.split()[-3])) and np.isfinite(float(l.split()[-1]))


# --- the user's data (--data) and the padding variants ---------------------------------------------

def _smooth_npy(path: Path, n: int = 6, size: int = 24, channels: int | None = None) -> np.ndarray:
    fields = smooth_fields(np.random.default_rng(11), n * (channels or 1), size).astype(np.float64)
    fields = fields * 3.0 + 5.0                      # not standardised: the command must do it
    if channels:
        fields = fields.reshape(n, channels, size, size)
    np.save(path, fields)
    return fields


def test_split_is_disjoint_seeded_and_holds_out_at_least_one():
    from diffconv.lab.commands.train import split

    train, held = split(10, 0.25, seed=4)
    assert len(held) == 2 and len(train) == 8
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), np.arange(10))
    np.testing.assert_array_equal(split(10, 0.25, seed=4)[1], held)
    assert len(split(3, 0.01, seed=0)[1]) == 1
    with pytest.raises(ValueError, match="leaves no training sample out of 2"):
        split(2, 0.9, seed=0)


def test_data_source_standardises_crops_and_holds_out(tmp_path):
    from diffconv.lab.commands.train import data_source
    from diffconv.lab.models.synthetic import SUPERRES_FACTOR

    fields = _smooth_npy(tmp_path / "u.npy", n=8, size=28, channels=2)
    cfg = {"task": "superres", "seed": 1, "size": None, "batch": 3, "depth": 2, "ring": 3, "eval_samples": None}
    src = data_source(cfg, tmp_path / "u.npy", None, 0.25)
    train, held = src.info["train_samples"], src.info["held_out_samples"]
    assert len(held) == 2 and sorted(train + held) == list(range(8))
    assert cfg["size"] == 28 and cfg["eval_samples"] == 2 and src.channels == 2
    mean = fields[train].mean(axis=(0, 2, 3))
    std = fields[train].std(axis=(0, 2, 3))
    scaled = (fields - mean[:, None, None]) / std[:, None, None]
    # Evaluation: the central 28x28 (the largest multiple of 4) of each held-out sample.
    x_eval, y_eval = src.eval_pair
    np.testing.assert_allclose(y_eval, scaled[held], rtol=1e-5, atol=1e-5)
    f = SUPERRES_FACTOR
    blocks = y_eval.reshape(2, 2, 7, f, 7, f).mean(axis=(3, 5))
    np.testing.assert_allclose(x_eval, np.repeat(np.repeat(blocks, f, -2), f, -1), rtol=1e-5, atol=1e-5)
    # Training batches are crops of training samples only.
    x, y = src.draw(0)
    assert x.shape == y.shape == (3, 2, 28, 28)
    for crop in y:
        assert min(np.abs(crop - scaled[i]).max() for i in train) < 1e-5


def test_data_source_crops_smaller_training_windows(tmp_path):
    from diffconv.lab.commands.train import data_source

    fields = _smooth_npy(tmp_path / "u.npy", n=3, size=40)
    cfg = {"task": "denoise", "seed": 0, "size": 16, "batch": 5, "depth": 1, "ring": 2, "eval_samples": None}
    src = data_source(cfg, tmp_path / "u.npy", None, 0.3)
    x, y = src.draw(3)
    assert y.shape == (5, 1, 16, 16) and src.eval_pair[1].shape == (1, 1, 40, 40)
    train = src.info["train_samples"]
    scaled = (fields - fields[train].mean()) / fields[train].std()
    windows = np.lib.stride_tricks.sliding_window_view(scaled[train], (16, 16), axis=(1, 2))
    for crop in y[:, 0]:
        assert np.abs(windows - crop).max(axis=(-2, -1)).min() < 1e-5
    assert 0.4 < float(np.std(x - y)) < 0.6                  # denoise: noise of std 0.5


@pytest.mark.parametrize(
    "make, argv, message",
    [
        (lambda p: np.save(p / "d.npy", np.zeros((16, 16))), [], "1 sample, but training needs at least 2"),
        (lambda p: np.savez(p / "d.npz", a=np.ones((3, 16, 16)), b=np.ones((3, 16, 16))), [],
         "holds arrays a, b; choose one with --array"),
        (lambda p: np.save(p / "d.npy", np.ones((3, 10, 10))), [], "has spatial shape (10, 10), too small for depth 2"),
        (lambda p: _smooth_npy(p / "d.npy", n=3, size=24), ["--size", "32"],
         "--size 32 does not fit; use --size 24 or less"),
        (lambda p: _smooth_npy(p / "d.npy", n=3, size=24), ["--holdout", "1.5"], "--holdout must be between 0 and 1"),
        (lambda p: np.save(p / "d.npy", np.full((3, 16, 16), np.inf)), [], "non-finite values"),
        (lambda p: (p / "d.npy").write_text("no array here"), [], "not a NumPy .npy or .npz array file"),
        (lambda p: None, [], "d.npy: no such file"),
    ],
)
def test_bad_training_data_gives_one_line_and_status_2(tmp_path, capsys, make, argv, message):
    make(tmp_path)
    path = tmp_path / ("d.npz" if (tmp_path / "d.npz").exists() else "d.npy")
    status = main(["train", "--data", str(path), "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("diffconv train: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "out").exists()


def test_padded_conv_factories_match_torch_padding():
    import torch
    import torch.nn.functional as F

    from diffconv.lab.models.torch_nets import padded_conv

    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    for mode in ("replicate", "reflect"):
        conv = padded_conv(mode)(3, 4, 3, 1).double()
        expect = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), conv.weight, conv.bias)
        torch.testing.assert_close(conv(x), expect)
    with pytest.raises(ValueError, match="mode must be 'replicate' or 'reflect'"):
        padded_conv("circular")


def test_flax_variants_match_torch_padding():
    """The linen variants of the UNet (replicate, reflect) compute torch's padded convolutions."""
    pytest.importorskip("flax")
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    from diffconv.lab.commands.train import flax_conv

    x = np.random.default_rng(0).standard_normal((2, 6, 7, 3)).astype(np.float32)
    for variant, mode in (("replicate_padding", "replicate"), ("reflect_padding", "reflect")):
        layer = flax_conv(variant)(4, kernel_size=(3, 3))
        params = layer.init(jax.random.key(1), jnp.asarray(x))
        assert jax.tree.map(jnp.shape, params) == {"params": {"kernel": (3, 3, 3, 4), "bias": (4,)}}
        got = np.asarray(layer.apply(params, jnp.asarray(x)))
        w = torch.from_numpy(np.asarray(params["params"]["kernel"]).transpose(3, 2, 0, 1).copy())
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        expect = F.conv2d(F.pad(xt, (1, 1, 1, 1), mode=mode), w).numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_train_torch_on_data_with_every_variant(tmp_path, capsys, one_thread):
    import torch

    from diffconv.lab.commands.train import VARIANTS, data_source, torch_models

    _smooth_npy(tmp_path / "u.npy", n=5, size=24, channels=2)
    out = tmp_path / "out"
    argv = ["train", "--data", str(tmp_path / "u.npy"), "--quick", "--variants", *VARIANTS, "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "train.json").read_text())
    cfg = result["config"]
    assert list(result["methods"]) == list(VARIANTS.values()) == cfg["variants"]
    assert result["data"]["eval_side"] == 24 and len(result["data"]["held_out_samples"]) == 1
    assert "verdict:" in printed and "units: training std" in printed
    # Step 0 of every variant is the shared initial UNet, with that variant's padding, on the first batch.
    src = data_source(dict(cfg), tmp_path / "u.npy", None, 0.25)
    x, y = (torch.from_numpy(a) for a in src.draw(0))
    firsts = []
    with torch.no_grad():
        for variant, model in torch_models(cfg, 2).items():
            expected = float(torch.nn.functional.mse_loss(model(x), y))
            assert result["methods"][variant]["loss"][0] == pytest.approx(expected, rel=1e-5), variant
            firsts.append(expected)
    assert len(set(firsts)) == 4                         # the paddings differ only at the border, but differ
    for r in result["methods"].values():
        side, ring = 24, cfg["ring"]
        in_ring = (border_distance(side) < ring).mean()
        mix = in_ring * r["boundary_rmse"] ** 2 + (1 - in_ring) * r["interior_rmse"] ** 2
        assert r["rmse"] == pytest.approx(np.sqrt(mix), rel=1e-9)


@pytest.mark.slow
def test_train_jax_on_data_with_every_variant(tmp_path):
    pytest.importorskip("flax")
    _smooth_npy(tmp_path / "u.npy", n=4, size=16)
    out = tmp_path / "jax"
    env = dict(os.environ, XLA_FLAGS=FAST_XLA, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "diffconv.lab.cli", "train", "--framework", "jax", "--quick", "--data",
           str(tmp_path / "u.npy"), "--variants", "zero", "diffconv", "replicate", "reflect", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "train.json").read_text())
    assert list(result["methods"]) == ["zero_padding", "diffconv", "replicate_padding", "reflect_padding"]
    for r in result["methods"].values():
        assert np.all(np.isfinite(r["loss"])) and np.mean(r["loss"][-3:]) < r["loss"][0]


@pytest.mark.slow
def test_full_training_on_smooth_data_helps_the_boundary(tmp_path):
    """A real run (300 steps) on smooth fields saved to disk: DiffConv's boundary ring beats zero padding's."""
    _smooth_npy(tmp_path / "u.npy", n=40, size=32)
    out = tmp_path / "out"
    assert main(["train", "--data", str(tmp_path / "u.npy"), "--out", str(out)]) == 0
    m = json.loads((out / "train.json").read_text())["methods"]
    assert m["diffconv"]["boundary_rmse"] < m["zero_padding"]["boundary_rmse"]
    assert m["diffconv"]["loss"][-1] < 0.5 * m["diffconv"]["loss"][0]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--boundary", "bogus"], "--boundary 'bogus': boundary must be one of"),
        (["--boundary", "diff,diff,diff"], "one entry per spatial axis"),
        (["--order", "3"], "--order must be 0 .. 2 for the UNet's 3x3 convolutions, got 3"),
        (["--order", "1", "--variants", "zero"], "--boundary and --order set the diffconv variant"),
    ],
)
def test_train_rejects_bad_boundary_and_order(tmp_path, capsys, argv, match):
    assert main(["train", "--quick", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffconv train: error: ") and match in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_config_keeps_the_boundary_and_order():
    from diffconv.lab.cli import build_parser
    from diffconv.lab.commands.train import _config, boundary_spec, periodic_axes

    args = build_parser().parse_args(["train", "--boundary", "zeros:diff,circular", "--order", "1"])
    cfg = _config(args)
    assert (cfg["boundary"], cfg["order"]) == ("zeros:diff,circular", 1)
    assert boundary_spec(cfg) == (("zeros", "diff"), "circular") and periodic_axes(cfg) == (1,)
    cfg = _config(build_parser().parse_args(["train"]))
    assert (cfg["boundary"], cfg["order"], periodic_axes(cfg)) == ("diff", None, ())


def test_data_source_crops_a_periodic_axis_whole(tmp_path):
    """--boundary diff,circular: each training crop spans all W columns, a random shift of a
    training sample's rows band, so its wrap is real data."""
    from diffconv.lab.commands.train import data_source

    fields = _smooth_npy(tmp_path / "u.npy", n=4, size=40)[:, :, :16]          # (4, 40, 16), W periodic here
    np.save(tmp_path / "u.npy", fields)
    cfg = {"task": "denoise", "seed": 0, "size": None, "batch": 6, "depth": 1, "ring": 2, "eval_samples": None,
           "boundary": "diff,circular"}
    src = data_source(cfg, tmp_path / "u.npy", None, 0.25)
    assert cfg["size"] == 16 and src.info["periodic_axes"] == [1] and src.eval_pair[1].shape[-2:] == (16, 16)
    train = src.info["train_samples"]
    scaled = (fields - fields[train].mean()) / fields[train].std()
    _, y = src.draw(1)
    for crop in y[:, 0]:
        assert min(np.abs(np.roll(scaled[i, t:t + 16], s, axis=1) - crop).max()
                   for i in train for t in range(25) for s in range(16)) < 1e-5
    cfg.update(size=8)
    with pytest.raises(ValueError, match="cropped whole; use --size 16"):
        data_source(cfg, tmp_path / "u.npy", None, 0.25)
