"""What each border mode costs XLA: compile time, step time and memory of a Flax train step.

The models of ``diffconv speed`` (``stack``, ``unet``, ``gelu``, ``resnet``) are built with
``nn.Conv`` and ``padding='SAME'`` (``zeros``: the convolution pads by itself), with the input
zero-padded by ``jnp.pad`` and convolved unpadded in DiffConv's layout (``zeropad``: the same
sums, but a padded input is built first, as every mode below does), with ``padding='REFLECT'``
or ``'CIRCULAR'``, or with DiffConv. For each, the train step (``value_and_grad`` of the MSE
plus an Adam update, for every model, also the ``stack`` that ``diffconv speed`` runs without
one) is lowered and compiled, caches cleared before each compilation, the fastest of
``--repeats`` reported; then the compiled steps run in ``--rounds`` alternated rounds, the
median of each round's ratio to zeros reported; memory is XLA's plan as ``diffconv speed``
reads it. ``zeropad`` isolates what building a
padded input costs at all; the ghosts' own cost is DiffConv's excess over it.

    python benchmarks/border_modes.py [--models stack unet gelu resnet] [--kernel-sizes 3 5]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffconv.lab.bench import flax_models
from diffconv.lab.bench.measure import jax_memory, jax_train_step
from diffconv.lab.bench.networks import MODELS
from diffconv.jax.functional import uses_extra_row
from diffconv.jax.linen import DiffConv

MODES = ("zeros", "zeropad", "reflect", "circular", "diffconv")
CLASSES = {"stack": "Stack", "unet": "UNet", "gelu": "Gelu", "resnet": "ResNet"}   # of flax_models


class ZeroPadConv(nn.Module):
    """``jnp.pad`` with zeros, then an unpadded ``nn.Conv``: DiffConv's layout with zeros for ghosts
    (on XLA:CPU also its one extra row, cropped by a padding of -1, :func:`uses_extra_row`)."""

    features: int
    k: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        e, extra = self.k - 1, int(uses_extra_row(2))
        x = jnp.pad(x, ((0, 0), (e // 2, e - e // 2 + extra), (e // 2, e - e // 2), (0, 0)))
        return nn.Conv(self.features, (self.k, self.k), strides=self.strides, padding=((0, -extra), (0, 0)),
                       name="conv")(x)


def conv_factory(mode: str) -> Callable[..., nn.Module]:
    """``conv(features, k, strides=1, name=None)`` for :mod:`diffconv.lab.bench.flax_models`' models."""

    def conv(features: int, k: int, strides: int = 1, name: str | None = None) -> nn.Module:
        if mode == "diffconv":
            return DiffConv(features, (k, k), strides=strides, name=name)
        if mode == "zeropad":
            return ZeroPadConv(features, k, strides, name=name)
        padding = {"zeros": "SAME", "reflect": "REFLECT", "circular": "CIRCULAR"}[mode]
        return nn.Conv(features, (k, k), strides=strides, padding=padding, name=name)

    return conv


def train_step(model: str, mode: str, k: int, size: int, channels: int, batch: int) -> tuple[Any, tuple]:
    """``(train, state)``: the jitted train step of ``model`` with border ``mode`` and its first state."""
    net = getattr(flax_models, CLASSES[model])(conv_factory(mode), channels, k)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, size, size, MODELS[model].in_channels(channels))), jnp.float32)
    params = jax.eval_shape(net.init, jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape) * 0.05, leaf.dtype), params)
    target = jnp.zeros(jax.eval_shape(net.apply, params, x).shape)
    opt = optax.adam(1e-4)
    return jax_train_step(net, x, target, opt, adam=True), (params, opt.init(params))


def measure(model: str, k: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per mode: ``compile`` seconds (fastest), ``time`` (median per-round ratio to zeros), ``memory`` bytes."""
    steps = {m: train_step(model, m, k, args.size, args.channels, args.batch) for m in MODES}
    out: dict[str, dict[str, float]] = {m: {"compile": float("inf")} for m in MODES}
    compiled = {}
    for _ in range(args.repeats):        # modes alternate, so that they share the machine's state
        for m, (train, state) in steps.items():
            jax.clear_caches()
            t0 = time.perf_counter()
            compiled[m] = train.lower(*state).compile()
            out[m]["compile"] = min(out[m]["compile"], time.perf_counter() - t0)
    for m, c in compiled.items():
        out[m]["memory"] = jax_memory(c)
        jax.block_until_ready(c(*steps[m][1]))
    ratios: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        seconds = {}
        for m, c in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(c(*steps[m][1]))
            seconds[m] = time.perf_counter() - t0
        for m in MODES:
            ratios[m].append(seconds[m] / seconds["zeros"])
    for m in MODES:
        out[m]["time"] = float(np.median(ratios[m]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(CLASSES), default=list(CLASSES))
    parser.add_argument("--kernel-sizes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="compilations per mode, the fastest reported")
    parser.add_argument("--rounds", type=int, default=10, help="alternated timed steps per mode")
    args = parser.parse_args()
    print("ratios to zeros: compile / step time / memory (zeros: its compile seconds)")
    print(f"{'model':7s} {'k':>2s} {'zeros':>12s} " + " ".join(f"{m:>17s}" for m in MODES[1:]))
    for model in args.models:
        for k in args.kernel_sizes:
            r = measure(model, k, args)
            z = r["zeros"]
            cells = [f"{z['compile']:.2f} s"]
            for m in MODES[1:]:
                cells.append(f"{r[m]['compile'] / z['compile']:4.2f}/{r[m]['time']:4.2f}/{r[m]['memory'] / z['memory']:5.3f}")
            print(f"{model:7s} {k:2d} {cells[0]:>12s} " + " ".join(f"{c:>17s}" for c in cells[1:]), flush=True)


if __name__ == "__main__":
    main()
