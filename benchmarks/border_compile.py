"""XLA compile time of a Flax train step with each border mode: what a border costs the compiler.

The models of ``diffconv speed`` (``stack``, ``unet``, ``gelu``, ``resnet``) are built with
``nn.Conv`` and ``padding='SAME'`` (zeros), ``'REFLECT'`` or ``'CIRCULAR'``, or with DiffConv;
for each, the train step (``value_and_grad`` of the MSE plus an Adam update, as ``diffconv
speed`` runs it) is lowered and compiled, caches cleared before each compilation, the fastest of
``--repeats`` reported with its ratio to zero padding's. Zero padding is the one mode the
convolution library call takes as it is; every other mode builds a padded input first.

    python benchmarks/border_compile.py [--models stack unet gelu resnet] [--kernel-sizes 3 5] [--repeats 2]
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

from diffconv.commands.speed import _jax_nets
from diffconv.jax.linen import DiffConv

MODES = ("zeros", "reflect", "circular", "diffconv")
MODELS = {"stack": ("Stack", lambda c: c), "unet": ("UNet", lambda c: 3), "gelu": ("Gelu", lambda c: 3),
          "resnet": ("ResNet", lambda c: 3)}


def conv_factory(mode: str) -> Callable[..., nn.Module]:
    """``conv(features, k, strides=1, name=None)`` for :func:`diffconv.commands.speed._jax_nets`' models."""

    def conv(features: int, k: int, strides: int = 1, name: str | None = None) -> nn.Module:
        if mode == "diffconv":
            return DiffConv(features, (k, k), strides=strides, name=name)
        padding = {"zeros": "SAME", "reflect": "REFLECT", "circular": "CIRCULAR"}[mode]
        return nn.Conv(features, (k, k), strides=strides, padding=padding, name=name)

    return conv


def compile_seconds(model: str, mode: str, k: int, size: int, channels: int, batch: int, repeats: int) -> float:
    cls, in_channels = MODELS[model]
    net = getattr(_jax_nets(), cls)(conv_factory(mode), channels, k)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, size, size, in_channels(channels))), jnp.float32)
    params = jax.eval_shape(net.init, jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), params)
    target = jnp.zeros(jax.eval_shape(net.apply, params, x).shape)
    opt = optax.adam(1e-4)

    def train(p: Any, o: Any) -> Any:
        loss, grads = jax.value_and_grad(lambda q: jnp.mean((net.apply(q, x) - target) ** 2))(p)
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    state = (params, opt.init(params))
    best = float("inf")
    for _ in range(repeats):
        jax.clear_caches()
        t0 = time.perf_counter()
        jax.jit(train).lower(*state).compile()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--kernel-sizes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{'model':7s} {'k':>2s} " + " ".join(f"{m + ' s':>10s}" for m in MODES) + "   ratio to zeros: "
          + " ".join(f"{m:>9s}" for m in MODES[1:]))
    for model in args.models:
        for k in args.kernel_sizes:
            # A row's modes run back to back, so that they share the machine's state of the moment.
            seconds = {m: compile_seconds(model, m, k, args.size, args.channels, args.batch, args.repeats)
                       for m in MODES}
            print(f"{model:7s} {k:2d} " + " ".join(f"{seconds[m]:10.2f}" for m in MODES) + "                   "
                  + " ".join(f"{seconds[m] / seconds['zeros']:9.2f}" for m in MODES[1:]), flush=True)


if __name__ == "__main__":
    main()
