"""An unedited Flax network with zero padding, Flax's own 'REFLECT' padding and ``padding_free()``.

The network is flaxdiff's ``Unet`` (``pip install --no-deps flaxdiff==0.2.11`` plus einops) or,
with ``--model resnet`` or without flaxdiff, the Flax examples' ResNet as rebuilt in
``tests/jax/flax_models.py``. Its source is never edited: ``zeros`` runs it as written
(``'SAME'`` convolutions), ``reflect`` traces it inside a method interceptor that runs each of
those convolutions as ``nn.Conv(padding='REFLECT')`` with the same parameters, and
``padding_free`` traces it inside :func:`diffconv.jax.linen.padding_free`. For each, one train
step (MSE, ``value_and_grad``, Adam) is lowered and compiled (caches cleared first; the fastest
of ``--repeats``), then the compiled steps run in ``--rounds`` alternated rounds and the median
of each round's ratio to ``zeros`` is reported; memory is XLA's plan (temporaries, arguments and
outputs, less what they alias).

    python benchmarks/flax_dropin.py [--model unet|resnet] [--size 64] [--batch 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffconv.jax._dropin import conv_layer_mode
from diffconv.jax.linen import padding_free

VARIANTS = ("zeros", "reflect", "padding_free")


def _reflect(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
    m = context.module
    if type(m) is nn.Conv and context.method_name == "__call__" and m.mask is None:
        ks = (m.kernel_size,) if isinstance(m.kernel_size, int) else tuple(m.kernel_size)
        dil = m.kernel_dilation or 1
        dils = (dil,) * len(ks) if isinstance(dil, int) else tuple(dil)
        if conv_layer_mode(m.padding, ks, dils) == "same" and "params" in m.variables:
            twin = m.clone(parent=None, padding="REFLECT", name=None)
            return twin.apply({"params": m.variables["params"]}, *args, **kwargs)
    return next_fun(*args, **kwargs)


@contextlib.contextmanager
def reflect_padding() -> Iterator[None]:
    """Within this context, each size-keeping ``nn.Conv`` pads by Flax's ``'REFLECT'`` instead."""
    with nn.intercept_methods(_reflect):
        yield


def build(model: str, size: int, batch: int, width: int) -> tuple[Callable, tuple, str]:
    """``(apply(params, x), (params, x), description)`` with random parameters (flaxdiff's
    initialisers take ~40 s to compile on XLA:CPU; the step's cost does not depend on them)."""
    rng = np.random.default_rng(0)
    if model == "unet":
        from flaxdiff.models.simple_unet import Unet

        net = Unet(output_channels=3, emb_features=4 * width, feature_depths=(width, 2 * width, 4 * width),
                   attention_configs=(None, None, None), num_res_blocks=1, num_middle_res_blocks=1, norm_groups=8)
        t = jnp.asarray(rng.uniform(size=(batch,)), jnp.float32)
        c = jnp.asarray(rng.standard_normal((batch, 4, 16)), jnp.float32)
        x = jnp.asarray(rng.standard_normal((batch, size, size, 3)), jnp.float32)
        shapes = jax.eval_shape(net.init, jax.random.key(0), x, t, c)
        apply = lambda p, x: net.apply(p, x, t, c)                         # noqa: E731
        desc = f"flaxdiff Unet, depths {(width, 2 * width, 4 * width)}, 1 res block per level, no attention"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "jax"))
        from flax_models import resnet

        net = resnet((2, 2, 2, 2), filters=width)
        x = jnp.asarray(rng.standard_normal((batch, size, size, 3)), jnp.float32)
        shapes = jax.eval_shape(lambda k, x: net.init(k, x, train=False), jax.random.key(0), x)
        apply = lambda p, x: net.apply(p, x, train=False)                   # noqa: E731
        desc = f"Flax examples ResNet18 shape, {width} filters"
    params = jax.tree.map(lambda s: jnp.asarray(0.05 * rng.standard_normal(s.shape), s.dtype), shapes)
    return apply, (params, x), desc + f", batch {batch}, {size}x{size}"


def train_step(apply: Callable, variant: str, params: Any, x: jax.Array) -> tuple[Any, tuple]:
    """The jitted train step of ``variant``, traced inside its context, and its first state."""
    opt = optax.adam(1e-4)
    target = jnp.zeros(jax.eval_shape(apply, params, x).shape)
    context = {"zeros": contextlib.nullcontext, "reflect": reflect_padding, "padding_free": padding_free}[variant]

    def train(p, o):
        with context():
            loss, grads = jax.value_and_grad(lambda q: jnp.mean((apply(q, x) - target) ** 2))(p)
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    return jax.jit(train), (params, opt.init(params))


def memory(compiled: Any) -> int:
    ma = compiled.memory_analysis()
    if ma is None:
        return 0
    return int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes)


def measure(apply: Callable, params: Any, x: jax.Array, repeats: int, rounds: int) -> dict[str, dict[str, float]]:
    steps = {v: train_step(apply, v, params, x) for v in VARIANTS}
    out: dict[str, dict[str, float]] = {v: {"compile_s": float("inf")} for v in VARIANTS}
    compiled = {}
    for _ in range(repeats):                       # variants alternate, sharing the machine's state
        for v, (train, state) in steps.items():
            jax.clear_caches()
            t0 = time.perf_counter()
            compiled[v] = train.lower(*state).compile()
            out[v]["compile_s"] = min(out[v]["compile_s"], time.perf_counter() - t0)
    for v, c in compiled.items():
        out[v]["memory_bytes"] = memory(c)
        jax.block_until_ready(c(*steps[v][1]))
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for v, c in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(c(*steps[v][1]))
            seconds[v].append(time.perf_counter() - t0)
    for v in VARIANTS:
        out[v]["step_s"] = float(np.median(seconds[v]))
        out[v]["step_ratio"] = float(np.median(np.divide(seconds[v], seconds["zeros"])))
        out[v]["compile_ratio"] = out[v]["compile_s"] / out["zeros"]["compile_s"]
        out[v]["memory_ratio"] = out[v]["memory_bytes"] / max(out["zeros"]["memory_bytes"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("unet", "resnet"), default=None,
                        help="default: unet when flaxdiff is installed, else resnet")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=16, help="feature depth of the first level")
    parser.add_argument("--repeats", type=int, default=1, help="compilations per variant, the fastest reported")
    parser.add_argument("--rounds", type=int, default=7, help="alternated timed steps per variant")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    model = args.model
    if model is None:
        try:
            import flaxdiff.models.simple_unet  # noqa: F401
            model = "unet"
        except ImportError:
            model = "resnet"
    apply, (params, x), desc = build(model, args.size, args.batch, args.width)
    r = measure(apply, params, x, args.repeats, args.rounds)
    print(f"{desc}; jax {jax.__version__} on {jax.default_backend()} ({platform.processor() or platform.machine()})")
    print(f"{'variant':13s} {'compile':>14s} {'step':>14s} {'memory':>16s}")
    for v in VARIANTS:
        m = r[v]
        print(f"{v:13s} {m['compile_s']:6.1f} s {m['compile_ratio']:5.2f}x {m['step_s'] * 1e3:6.1f} ms "
              f"{m['step_ratio']:5.2f}x {m['memory_bytes'] / 2**20:7.1f} MiB {m['memory_ratio']:5.3f}x")
    if args.json:
        args.json.write_text(json.dumps({"model": desc, "jax": jax.__version__, "results": r}, indent=2))


if __name__ == "__main__":
    main()
