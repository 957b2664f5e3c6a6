"""``diffconv train``: the same small UNet trained with zero padding and with DiffConv.

Both runs start from the same weights and see the same batches of an on-the-fly synthetic
task (:mod:`diffconv.models.synthetic`); the command writes ``train.json`` (loss curves, and
per method the held-out RMSE in the boundary ring, in the interior and per distance to the
border) and ``train.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..models.synthetic import TASKS, error_profile, make_pair, ring_errors

METHODS = ("zero_padding", "diffconv")
EVAL_SEED_OFFSET = 1_000_003

# --quick: tiny enough for a CI test, still a real run of both methods.
QUICK = {"steps": 12, "size": 16, "batch": 4, "width": 4, "depth": 1, "eval_samples": 4}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--framework", choices=("torch", "jax"), default="torch", help="default torch")
    parser.add_argument("--task", choices=TASKS, default="superres", help="default superres (4x)")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per method (default 300)")
    parser.add_argument("--out", type=Path, default=Path("train_out"), help="output folder (default train_out)")
    parser.add_argument("--quick", action="store_true", help=f"tiny run for tests: {QUICK}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32, help="image side, divisible by 4 (default 32)")
    parser.add_argument("--batch", type=int, default=16, help="default 16")
    parser.add_argument("--width", type=int, default=8, help="UNet channels at full resolution (default 8)")
    parser.add_argument("--depth", type=int, default=2, help="UNet levels (default 2)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    parser.add_argument("--ring", type=int, default=3, help="boundary ring width in pixels (default 3)")
    parser.add_argument("--eval-samples", type=int, default=64, help="held-out fields (default 64)")


def _config(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("framework", "task", "steps", "seed", "size", "batch", "width", "depth", "lr", "ring", "eval_samples")
    cfg = {k: getattr(args, k) for k in keys}
    if args.quick:
        cfg.update(QUICK)
    for name in ("steps", "batch", "width", "depth", "ring", "eval_samples"):
        if cfg[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {cfg[name]}")
    multiple = max(4, 2 ** cfg["depth"])
    if cfg["size"] % multiple or cfg["size"] // 2 ** cfg["depth"] < 3:
        raise ValueError(
            f"--size must be a multiple of {multiple} leaving >= 3 pixels at depth {cfg['depth']}, got {cfg['size']}"
        )
    if cfg["ring"] >= cfg["size"] // 2:
        raise ValueError(f"--ring must be < size/2 = {cfg['size'] // 2} to leave an interior, got {cfg['ring']}")
    if cfg["seed"] < 0:
        raise ValueError(f"--seed must be >= 0, got {cfg['seed']}")
    if not cfg["lr"] > 0:
        raise ValueError(f"--lr must be > 0, got {cfg['lr']}")
    return cfg


def batches(cfg: dict[str, Any]) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """``step -> (inputs, targets)`` ``(batch, size, size)``; the same for every method and framework."""
    def draw(step: int) -> tuple[np.ndarray, np.ndarray]:
        return make_pair(cfg["task"], np.random.default_rng([cfg["seed"], step]), cfg["batch"], cfg["size"])
    return draw


def eval_set(cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([cfg["seed"], EVAL_SEED_OFFSET])
    return make_pair(cfg["task"], rng, cfg["eval_samples"], cfg["size"])


def _progress(steps: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(range(steps), desc=desc, leave=False, mininterval=0.5)


def train_torch(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method: ``loss`` (list per step) and ``pred`` (eval predictions, ``(n, size, size)``)."""
    import copy

    import torch

    from ..models.torch_nets import UNet
    from ..torch import convert

    torch.manual_seed(cfg["seed"])
    base = UNet(1, 1, width=cfg["width"], depth=cfg["depth"])
    models = {"zero_padding": base, "diffconv": convert(copy.deepcopy(base))}
    draw = batches(cfg)
    x_eval, _ = eval_set(cfg)
    out = {}
    for method, model in models.items():
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        losses = []
        for step in _progress(cfg["steps"], f"torch {method}"):
            x, y = (torch.from_numpy(a)[:, None] for a in draw(step))
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        with torch.no_grad():
            pred = model(torch.from_numpy(x_eval)[:, None])[:, 0].numpy()
        out[method] = {"loss": losses, "pred": pred}
    return out


def train_jax(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """As :func:`train_torch`, with the Flax linen UNet and optax Adam."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    from ..jax.linen import DiffConv
    from ..models.flax_unet import UNet

    models = {
        "zero_padding": UNet(width=cfg["width"], depth=cfg["depth"], conv=nn.Conv),
        "diffconv": UNet(width=cfg["width"], depth=cfg["depth"], conv=DiffConv),
    }
    draw = batches(cfg)
    x_eval, _ = eval_set(cfg)
    # One init shared by both: the parameter trees are identical.
    sample = jnp.zeros((1, cfg["size"], cfg["size"], 1))
    params0 = jax.jit(models["zero_padding"].init)(jax.random.key(cfg["seed"]), sample)["params"]
    tx = optax.adam(cfg["lr"])
    out = {}
    for method, model in models.items():

        def loss_fn(params, x, y, model=model):
            return jnp.mean((model.apply({"params": params}, x) - y) ** 2)

        @jax.jit
        def step_fn(params, opt_state, x, y, loss_fn=loss_fn):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        params, opt_state = params0, tx.init(params0)
        losses = []
        for step in _progress(cfg["steps"], f"jax {method}"):
            x, y = (jnp.asarray(a)[..., None] for a in draw(step))
            params, opt_state, loss = step_fn(params, opt_state, x, y)
            losses.append(float(loss))
        pred = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(x_eval)[..., None]))[..., 0]
        out[method] = {"loss": losses, "pred": pred}
    return out


def summarize(cfg: dict[str, Any], runs: dict[str, dict[str, Any]], target: np.ndarray) -> dict[str, Any]:
    """The ``train.json`` content: config, and per method losses and held-out errors."""
    methods = {}
    for method in METHODS:
        pred = runs[method]["pred"]
        methods[method] = {
            "loss": runs[method]["loss"],
            "final_loss": float(np.mean(runs[method]["loss"][-max(1, cfg["steps"] // 10):])),
            **ring_errors(pred, target, cfg["ring"]),
            "rmse_vs_border_distance": error_profile(pred, target),
        }
    return {"config": cfg, "methods": methods}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, r in result["methods"].items():
        ax0.semilogy(r["loss"], label=method, lw=1)
        ax1.semilogy(r["rmse_vs_border_distance"], "o-", label=method, ms=3)
    cfg = result["config"]
    ax0.set(xlabel="step", ylabel="training MSE", title=f"{cfg['framework']}: {cfg['task']}")
    ax1.set(xlabel="distance to the image edge (pixels)", ylabel="held-out RMSE", title="error vs distance to border")
    ax1.axvspan(-0.5, cfg["ring"] - 0.5, color="0.9", label="boundary ring")
    for ax in (ax0, ax1):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    t0 = time.perf_counter()
    runs = (train_torch if cfg["framework"] == "torch" else train_jax)(cfg)
    _, target = eval_set(cfg)
    result = summarize(cfg, runs, target)
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "train.png")
    print(f"{cfg['framework']} UNet, task {cfg['task']}, {cfg['steps']} steps, {cfg['size']}x{cfg['size']}: held-out RMSE")
    print(f"  {'method':14s} {'ring<' + str(cfg['ring']) + 'px':>10s} {'interior':>10s} {'all':>10s}")
    for method, r in result["methods"].items():
        print(f"  {method:14s} {r['boundary_rmse']:10.4f} {r['interior_rmse']:10.4f} {r['rmse']:10.4f}")
    print(f"wrote {out / 'train.json'} and {out / 'train.png'} ({result['wall_s']} s)")
    return 0
