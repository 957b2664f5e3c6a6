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

from diffconv.cli import main
from diffconv.models.synthetic import border_distance, error_profile, make_pair, ring_errors, smooth_fields

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


def test_train_torch_quick(tmp_path, one_thread):
    import torch

    from diffconv.commands.train import batches
    from diffconv.models.torch_nets import UNet
    from diffconv.torch import convert

    out = tmp_path / "torch"
    assert main(["train", "--framework", "torch", "--quick", "--out", str(out), "--seed", "3"]) == 0
    result = _check_result(out, "torch", "superres")
    cfg = result["config"]
    # Step 0's loss of each method is that of the shared initial UNet on the first batch.
    torch.manual_seed(cfg["seed"])
    zero = UNet(1, 1, width=cfg["width"], depth=cfg["depth"])
    diff = convert(copy.deepcopy(zero))
    x, y = (torch.from_numpy(a)[:, None] for a in batches(cfg)(0))
    with torch.no_grad():
        for method, model in (("zero_padding", zero), ("diffconv", diff)):
            expected = float(torch.nn.functional.mse_loss(model(x), y))
            assert result["methods"][method]["loss"][0] == pytest.approx(expected, rel=1e-5)
    for r in result["methods"].values():
        assert np.mean(r["loss"][-3:]) < r["loss"][0]


def test_train_jax_quick(tmp_path):
    pytest.importorskip("flax")
    pytest.importorskip("optax")
    out = tmp_path / "jax"
    env = dict(os.environ, XLA_FLAGS=FAST_XLA, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "diffconv.cli", "train", "--framework", "jax", "--task", "denoise", "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = _check_result(out, "jax", "denoise")
    # Both methods start from one init: the very first losses differ only through the border.
    first = [r["loss"][0] for r in result["methods"].values()]
    assert first[0] == pytest.approx(first[1], rel=0.5) and first[0] != first[1]
    assert "diffconv" in proc.stdout and "zero_padding" in proc.stdout


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--size", "18"], "--size must be a multiple of 4"),
        (["--lr", "-1"], "--lr must be > 0, got -1"),
        (["--ring", "16"], "--ring must be < size/2 = 16 to leave an interior, got 16"),
        (["--seed", "-2"], "--seed must be >= 0, got -2"),
    ],
)
def test_train_rejects_bad_options(tmp_path, argv, match):
    with pytest.raises(ValueError, match=match):
        main(["train", "--out", str(tmp_path), *argv])


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
