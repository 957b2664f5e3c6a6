"""``diffconv train``: the same small UNet trained with zero padding, DiffConv, and other paddings.

Every variant (``--variants``: zero, diffconv, replicate, reflect) starts from the same weights
and sees the same batches. The fields are an on-the-fly synthetic task
(:mod:`diffconv.lab.models.synthetic`) or, with ``--data FILE``, the user's arrays: a seeded
held-out split of the samples, random square crops of the training samples (standardised per
channel with the training samples' mean and standard deviation), the task's degradation
(super-resolution or denoising) applied to them, and evaluation on the central square of every
held-out sample. ``--boundary SPEC`` and ``--order P`` set the DiffConv variant's boundary and
ghost order (``diffconv accuracy``'s syntax); with ``--data``, an axis the spec makes circular is
taken as periodic and cropped whole (training crops are shifted along it at random). The command writes ``train.json`` (loss curves, and per variant the held-out
RMSE in the boundary ring, in the interior and per distance to the border) and ``train.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..models.synthetic import TASKS, degrade, error_profile, make_pair, ring_errors
from .accuracy import parse_boundary_option, spec_text

KERNEL_SIZE = 3          # the UNet's convolutions

# --variants name -> the variant's key in train.json and the table.
VARIANTS = {"zero": "zero_padding", "diffconv": "diffconv", "replicate": "replicate_padding",
            "reflect": "reflect_padding"}
EVAL_SEED_OFFSET = 1_000_003
SPLIT_SEED_OFFSET = 1_000_033
DEFAULT_SIZE = 32
DEFAULT_EVAL_SAMPLES = 64

# --quick: tiny enough for a CI test, still a real run of every variant.
QUICK = {"steps": 12, "size": 16, "batch": 4, "width": 4, "depth": 1, "eval_samples": 4}

Pair = tuple[np.ndarray, np.ndarray]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--framework", choices=("torch", "jax"), default="torch", help="default torch")
    parser.add_argument("--task", choices=TASKS, default="superres", help="default superres (4x)")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per variant (default 300)")
    parser.add_argument("--out", type=Path, default=Path("train_out"), help="output folder (default train_out)")
    parser.add_argument("--quick", action="store_true", help=f"tiny run for tests: {QUICK}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=None,
                        help=f"training image side, divisible by 4 (default {DEFAULT_SIZE}; with --data at most "
                             "the fields' side)")
    parser.add_argument("--batch", type=int, default=16, help="default 16")
    parser.add_argument("--width", type=int, default=8, help="UNet channels at full resolution (default 8)")
    parser.add_argument("--depth", type=int, default=2, help="UNet levels (default 2)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    parser.add_argument("--ring", type=int, default=3, help="boundary ring width in pixels (default 3)")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help=f"held-out fields (default {DEFAULT_EVAL_SAMPLES}; with --data every held-out sample)")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["zero", "diffconv"],
                        help="paddings to train (default: zero diffconv)")
    parser.add_argument("--data", type=Path, metavar="FILE",
                        help="train on your own fields: .npy or .npz, shape (N, H, W) or (N, C, H, W), N >= 2")
    parser.add_argument("--array", metavar="NAME",
                        help="with --data: the .npz array to use (needed when it holds several)")
    parser.add_argument("--holdout", type=float, default=0.25, metavar="FRACTION",
                        help="with --data: fraction of the samples held out for evaluation (default 0.25, at least 1)")
    parser.add_argument("--boundary", metavar="SPEC",
                        help="the diffconv variant's boundary: a mode (diff, zeros, reflect, replicate, circular) or "
                             "one comma-separated entry per axis (H,W), each a mode or low:high, e.g. diff,circular; "
                             "with --data a circular axis is periodic and cropped whole (default diff)")
    parser.add_argument("--order", type=int, metavar="P",
                        help=f"the diffconv variant's ghost order, 0 .. {KERNEL_SIZE - 1} (default {KERNEL_SIZE - 1}, "
                             "the paper's)")


def _config(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("framework", "task", "steps", "seed", "size", "batch", "width", "depth", "lr", "ring", "eval_samples")
    cfg = {k: getattr(args, k) for k in keys}
    cfg["variants"] = [VARIANTS[v] for v in dict.fromkeys(args.variants)]
    if args.quick:
        cfg.update(QUICK)
    if args.data is None:
        if args.array is not None:
            raise ValueError("--array applies to --data only")
        cfg["size"] = DEFAULT_SIZE if cfg["size"] is None else cfg["size"]
        cfg["eval_samples"] = DEFAULT_EVAL_SAMPLES if cfg["eval_samples"] is None else cfg["eval_samples"]
    elif not 0 < args.holdout < 1:
        raise ValueError(f"--holdout must be between 0 and 1, got {args.holdout}")
    for name in ("steps", "batch", "width", "depth", "ring", "size", "eval_samples"):
        if cfg[name] is not None and cfg[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {cfg[name]}")
    if cfg["size"] is not None:
        _check_side("--size", cfg["size"], cfg)
    if cfg["seed"] < 0:
        raise ValueError(f"--seed must be >= 0, got {cfg['seed']}")
    cfg.update(_diffconv_options(args, cfg["variants"]))
    if not cfg["lr"] > 0:
        raise ValueError(f"--lr must be > 0, got {cfg['lr']}")
    return cfg


def _diffconv_options(args: argparse.Namespace, variants: list[str]) -> dict[str, Any]:
    """``boundary`` (``--boundary`` text, ``"diff"`` by default) and ``order`` of the diffconv variant."""
    boundary = "diff" if args.boundary is None else spec_text(parse_boundary_option(args.boundary, 2))
    if args.order is not None and not 0 <= args.order <= KERNEL_SIZE - 1:
        raise ValueError(f"--order must be 0 .. {KERNEL_SIZE - 1} for the UNet's {KERNEL_SIZE}x{KERNEL_SIZE} "
                         f"convolutions, got {args.order}")
    if (args.boundary is not None or args.order is not None) and "diffconv" not in variants:
        raise ValueError("--boundary and --order set the diffconv variant; add diffconv to --variants")
    return {"boundary": boundary, "order": args.order}


def boundary_spec(cfg: dict[str, Any]) -> Any:
    """The diffconv variant's boundary as the spec the layers take."""
    return parse_boundary_option(cfg.get("boundary", "diff"), 2)


def periodic_axes(cfg: dict[str, Any]) -> tuple[int, ...]:
    """Spatial axes (0: H, 1: W) that the diffconv variant's boundary makes circular."""
    from diffconv.boundary import parse_boundary

    return tuple(a for a, (low, _) in enumerate(parse_boundary(boundary_spec(cfg), 2)) if low == "circular")


def _multiple(cfg: dict[str, Any]) -> int:
    return max(4, 2 ** cfg["depth"])


def _check_side(what: str, side: int, cfg: dict[str, Any]) -> None:
    multiple = _multiple(cfg)
    if side % multiple or side // 2 ** cfg["depth"] < 3:
        raise ValueError(
            f"{what} must be a multiple of {multiple} leaving >= 3 pixels at depth {cfg['depth']}, got {side}"
        )
    if cfg["ring"] >= side // 2:
        raise ValueError(f"--ring must be < size/2 = {side // 2} to leave an interior, got {cfg['ring']}")


@dataclass
class Source:
    """Training batches and the held-out set, channels-first float32.

    ``draw(step) -> (inputs, targets)`` ``(batch, channels, size, size)``; ``eval_pair``:
    ``(n, channels, side, side)``; ``info``: what ``train.json`` records about the data.
    """

    channels: int
    draw: Callable[[int], Pair]
    eval_pair: Pair
    info: dict[str, Any]


def batches(cfg: dict[str, Any]) -> Callable[[int], Pair]:
    """Synthetic ``step -> (inputs, targets)`` ``(batch, 1, size, size)``; the same for every variant and framework."""
    def draw(step: int) -> Pair:
        x, y = make_pair(cfg["task"], np.random.default_rng([cfg["seed"], step]), cfg["batch"], cfg["size"])
        return x[:, None], y[:, None]
    return draw


def eval_set(cfg: dict[str, Any]) -> Pair:
    """The synthetic held-out pairs ``(eval_samples, 1, size, size)``."""
    rng = np.random.default_rng([cfg["seed"], EVAL_SEED_OFFSET])
    x, y = make_pair(cfg["task"], rng, cfg["eval_samples"], cfg["size"])
    return x[:, None], y[:, None]


def synthetic_source(cfg: dict[str, Any]) -> Source:
    return Source(1, batches(cfg), eval_set(cfg), {"fields": "synthetic smooth random fields"})


def split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(train, held_out)`` sample indices, each sorted; ``round(holdout * n)`` held out, at least 1."""
    held = max(1, int(round(holdout * n)))
    if n - held < 1:
        raise ValueError(f"--holdout {holdout} leaves no training sample out of {n}")
    perm = np.random.default_rng([seed, SPLIT_SEED_OFFSET]).permutation(n)
    return np.sort(perm[held:]), np.sort(perm[:held])


def data_source(cfg: dict[str, Any], path: Path, array: str | None, holdout: float) -> Source:
    """The user's fields as a :class:`Source`; fills ``cfg['size']``/``cfg['eval_samples']`` when unset.

    Raises :class:`diffconv.lab.userdata.DataError` (a ``ValueError``) with a one-line message.
    """
    from ..userdata import DataError, load_arrays

    arrays = load_arrays(path, 2, [array] if array else None)
    if len(arrays) > 1:
        raise DataError(f"{path}: holds arrays {', '.join(a.name for a in arrays)}; choose one with --array")
    fields = arrays[0].samples
    n, channels, h, w = fields.shape
    where = f"{path}: array {arrays[0].name!r}"
    if n < 2:
        raise DataError(f"{where} has shape {arrays[0].shape}: 1 sample, but training needs at least 2 "
                        "(one to train on, one held out); stack samples as (N, H, W) or (N, C, H, W)")
    side = min(h, w) // _multiple(cfg) * _multiple(cfg)
    periodic = periodic_axes(cfg)
    if periodic:
        side = _periodic_side(cfg, (h, w), periodic, where)
    try:
        _check_side("the fields' side", side, cfg)
    except ValueError as exc:
        raise DataError(f"{where} has spatial shape {(h, w)}, too small for depth {cfg['depth']} and ring "
                        f"{cfg['ring']}: {exc}") from None
    if cfg["size"] is None:
        cfg["size"] = side if periodic else min(DEFAULT_SIZE, side)
    elif cfg["size"] > min(h, w):
        raise DataError(
            f"{where} has spatial shape {(h, w)}: --size {cfg['size']} does not fit; use --size {side} or less"
        )
    train, held = split(n, holdout, cfg["seed"])
    if cfg["eval_samples"] is not None:
        held = held[:cfg["eval_samples"]]
    cfg["eval_samples"] = len(held)
    mean = fields[train].mean(axis=(0, 2, 3), keepdims=True)[0]
    std = fields[train].std(axis=(0, 2, 3), keepdims=True)[0]
    if np.any(std == 0):
        raise DataError(f"{where}: a channel is constant over the training samples; nothing to learn")
    scaled = ((fields - mean) / std).astype(np.float32)
    size, task = cfg["size"], cfg["task"]

    def draw(step: int) -> Pair:
        rng = np.random.default_rng([cfg["seed"], step])
        pick = train[rng.integers(len(train), size=cfg["batch"])]
        tops = rng.integers(0, h - size + 1, size=cfg["batch"])
        lefts = rng.integers(0, w - size + 1, size=cfg["batch"])
        y = np.stack([scaled[i, :, t:t + size, l:l + size] for i, t, l in zip(pick, tops, lefts)])
        for a in periodic:              # a whole periodic axis, shifted at random: still real data
            y = np.stack([np.roll(c, int(r), axis=1 + a) for c, r in zip(y, rng.integers(size, size=len(y)))])
        return degrade(task, y, rng), y

    t, l = (h - side) // 2, (w - side) // 2
    y_eval = scaled[held, :, t:t + side, l:l + side]
    x_eval = degrade(task, y_eval, np.random.default_rng([cfg["seed"], EVAL_SEED_OFFSET]))
    info = {"file": str(path), "array": arrays[0].name, "shape": list(arrays[0].shape),
            "train_samples": train.tolist(), "held_out_samples": held.tolist(), "eval_side": side,
            "channel_mean": mean.ravel().tolist(), "channel_std": std.ravel().tolist(),
            "units": "RMSE in units of each channel's standard deviation over the training samples",
            "periodic_axes": list(periodic)}
    return Source(channels, draw, (x_eval, y_eval), info)


def _periodic_side(cfg: dict[str, Any], shape: tuple[int, int], periodic: tuple[int, ...], where: str) -> int:
    """The square side when ``periodic`` axes are cropped whole: their length, which must fit."""
    from ..userdata import DataError

    lengths = {shape[a] for a in periodic}
    side = lengths.pop()
    names = " and ".join("HW"[a] for a in periodic)
    if lengths or side > min(shape) or side % _multiple(cfg):
        raise DataError(f"{where} has spatial shape {shape}: the periodic (circular) axis {names} is cropped whole, "
                        f"so its length must be a multiple of {_multiple(cfg)} and at most the other axis's")
    if cfg["size"] is not None and cfg["size"] != side:
        raise DataError(f"{where}: the periodic (circular) axis {names} is cropped whole; use --size {side}")
    return side


def eval_chunk(side: int) -> int:
    """Held-out fields per forward pass: 8 at 256x256, more when smaller, 1 when larger."""
    return max(1, 8 * 256**2 // side**2)


def _progress(steps: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(range(steps), desc=desc, leave=False, mininterval=0.5)


def torch_models(cfg: dict[str, Any], channels: int) -> dict[str, Any]:
    """One UNet per variant in ``cfg['variants']``, all with the same initial weights (seeded by ``cfg['seed']``)."""
    import copy

    import torch

    from ..models.torch_nets import UNet, padded_conv
    from diffconv.torch import convert

    torch.manual_seed(cfg["seed"])
    base = UNet(channels, channels, width=cfg["width"], depth=cfg["depth"])
    models = {}
    for variant in cfg["variants"]:
        if variant == "zero_padding":
            models[variant] = copy.deepcopy(base)
        elif variant == "diffconv":
            models[variant] = convert(copy.deepcopy(base), boundary=boundary_spec(cfg), order=cfg.get("order"))
        else:
            mode = variant.split("_")[0]
            models[variant] = UNet(channels, channels, width=cfg["width"], depth=cfg["depth"], conv=padded_conv(mode))
            models[variant].load_state_dict(base.state_dict())
    return models


def train_torch(cfg: dict[str, Any], source: Source) -> dict[str, dict[str, Any]]:
    """Per variant: ``loss`` (list per step) and ``pred`` (held-out predictions, channels-first)."""
    import torch

    x_eval = torch.from_numpy(source.eval_pair[0])
    out = {}
    for variant, model in torch_models(cfg, source.channels).items():
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        losses = []
        for step in _progress(cfg["steps"], f"torch {variant}"):
            x, y = (torch.from_numpy(a) for a in source.draw(step))
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        with torch.no_grad():
            pred = torch.cat([model(c) for c in x_eval.split(eval_chunk(x_eval.shape[-1]))]).numpy()
        out[variant] = {"loss": losses, "pred": pred}
    return out


def flax_conv(variant: str, boundary: Any = "diff", order: int | None = None) -> Any:
    """The linen conv class of a variant for :class:`diffconv.lab.models.flax_unet.UNet`
    (``boundary``/``order``: the diffconv variant's)."""
    import functools

    from flax import linen as nn

    from diffconv.jax.linen import DiffConv
    from ..models.flax_unet import ReplicateConv

    diff = DiffConv if (boundary, order) == ("diff", None) else functools.partial(DiffConv, boundary=boundary,
                                                                                  order=order)
    return {"zero_padding": nn.Conv, "diffconv": diff, "replicate_padding": ReplicateConv,
            "reflect_padding": functools.partial(nn.Conv, padding="REFLECT")}[variant]


def train_jax(cfg: dict[str, Any], source: Source) -> dict[str, dict[str, Any]]:
    """As :func:`train_torch`, with the Flax linen UNet and optax Adam (channels-last inside)."""
    import functools

    import jax
    import jax.numpy as jnp
    import optax

    from ..models.flax_unet import UNet

    def last(a: np.ndarray) -> jax.Array:
        return jnp.asarray(a.transpose(0, 2, 3, 1))

    conv = functools.partial(flax_conv, boundary=boundary_spec(cfg), order=cfg.get("order"))
    models = {v: UNet(out_features=source.channels, width=cfg["width"], depth=cfg["depth"], conv=conv(v))
              for v in cfg["variants"]}
    x_eval = last(source.eval_pair[0])
    # One init shared by all: the parameter trees are identical.
    sample = jnp.zeros((1, cfg["size"], cfg["size"], source.channels))
    params0 = jax.jit(UNet(out_features=source.channels, width=cfg["width"], depth=cfg["depth"]).init)(
        jax.random.key(cfg["seed"]), sample)["params"]
    tx = optax.adam(cfg["lr"])
    out = {}
    for variant, model in models.items():

        def loss_fn(params, x, y, model=model):
            return jnp.mean((model.apply({"params": params}, x) - y) ** 2)

        @jax.jit
        def step_fn(params, opt_state, x, y, loss_fn=loss_fn):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        params, opt_state = params0, tx.init(params0)
        losses = []
        for step in _progress(cfg["steps"], f"jax {variant}"):
            x, y = (last(a) for a in source.draw(step))
            params, opt_state, loss = step_fn(params, opt_state, x, y)
            losses.append(float(loss))
        apply = jax.jit(model.apply)
        n = eval_chunk(x_eval.shape[1])
        pred = np.concatenate([np.asarray(apply({"params": params}, x_eval[i:i + n]))
                               for i in range(0, len(x_eval), n)])
        out[variant] = {"loss": losses, "pred": pred.transpose(0, 3, 1, 2)}
    return out


def summarize(cfg: dict[str, Any], runs: dict[str, dict[str, Any]], target: np.ndarray) -> dict[str, Any]:
    """The ``train.json`` content: config, and per variant losses and held-out errors.

    target: ``(n, channels, side, side)``; channels count as separate fields in the errors.
    """
    target = target.reshape(-1, *target.shape[-2:])
    methods = {}
    for variant in cfg["variants"]:
        pred = runs[variant]["pred"].reshape(target.shape)
        methods[variant] = {
            "loss": runs[variant]["loss"],
            "final_loss": float(np.mean(runs[variant]["loss"][-max(1, cfg["steps"] // 10):])),
            **ring_errors(pred, target, cfg["ring"]),
            "rmse_vs_border_distance": error_profile(pred, target),
        }
    return {"config": cfg, "methods": methods}


def verdict(methods: dict[str, dict[str, Any]]) -> str:
    """Which variant has the lowest held-out boundary-ring RMSE, said plainly about DiffConv."""
    best = min(methods, key=lambda m: methods[m]["boundary_rmse"])
    if "diffconv" not in methods:
        return f"lowest boundary-ring RMSE: {best}"
    d = methods["diffconv"]["boundary_rmse"]
    if best == "diffconv":
        others = [m for m in methods if m != "diffconv"]
        if not others:
            return "only diffconv was trained"
        nxt = min(others, key=lambda m: methods[m]["boundary_rmse"])
        ratio = methods[nxt]["boundary_rmse"] / d
        return f"DiffConv has the lowest boundary-ring RMSE (next best {nxt}, {ratio:.3f}x higher)"
    ratio = d / methods[best]["boundary_rmse"]
    return f"DiffConv is NOT the best here: {best} has the lowest boundary-ring RMSE (DiffConv {ratio:.3f}x higher)"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, r in result["methods"].items():
        ax0.semilogy(r["loss"], label=method, lw=1)
        ax1.semilogy(r["rmse_vs_border_distance"], "o-", label=method, ms=3)
    cfg = result["config"]
    source = Path(result["data"]["file"]).name if "file" in result["data"] else "synthetic"
    ax0.set(xlabel="step", ylabel="training MSE", title=f"{cfg['framework']}: {cfg['task']} ({source})")
    ax1.set(xlabel="distance to the image edge (pixels)", ylabel="held-out RMSE", title="error vs distance to border")
    ax1.axvspan(-0.5, cfg["ring"] - 0.5, color="0.9", label="boundary ring")
    for ax in (ax0, ax1):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _error(message: str) -> int:
    print(f"diffconv train: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args)
        source = synthetic_source(cfg) if args.data is None else data_source(cfg, args.data, args.array, args.holdout)
    except ValueError as exc:          # bad options and DataError: one line, status 2
        return _error(str(exc))
    t0 = time.perf_counter()
    runs = (train_torch if cfg["framework"] == "torch" else train_jax)(cfg, source)
    result = summarize(cfg, runs, source.eval_pair[1])
    result["data"] = source.info
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "train.png")
    side = source.eval_pair[1].shape[-1]
    where = f"{len(source.eval_pair[1])} held-out {side}x{side} fields"
    order = KERNEL_SIZE - 1 if cfg["order"] is None else cfg["order"]
    print(f"{cfg['framework']} UNet, task {cfg['task']}, {cfg['steps']} steps on {cfg['size']}x{cfg['size']}, "
          f"{where}: RMSE" + (" (units: training std)" if args.data is not None else "")
          + f"; diffconv: boundary {cfg['boundary']}, order {order}")
    print(f"  {'variant':18s} {'ring<' + str(cfg['ring']) + 'px':>10s} {'interior':>10s} {'all':>10s}")
    for method, r in result["methods"].items():
        print(f"  {method:18s} {r['boundary_rmse']:10.4f} {r['interior_rmse']:10.4f} {r['rmse']:10.4f}")
    print(f"  verdict: {verdict(result['methods'])}")
    print(f"wrote {out / 'train.json'} and {out / 'train.png'} ({result['wall_s']} s)")
    return 0
