"""One registered model timed in all its variants, in one process: :func:`run_torch`, :func:`run_jax`.

Each variant gets the same weights and data and its own optimizer; steps alternate round by
round (:func:`diffconv.lab.bench.measure.alternated_rounds`). ``settings`` is ``diffconv speed``'s:
``batch``, ``size`` (``None``: each model's own), ``quick``, ``channels``, ``repeats``,
``warmup``, ``compile_repeats``, ``cpu_time``, ``torch_compile``.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import measure
from .networks import BenchModel, image_side, input_side

__all__ = ["RESULT_KEYS", "Result", "make_result", "run_torch", "run_jax"]

RESULT_KEYS = (
    "framework", "model", "kernel_size", "device", "dtype", "batch", "size", "channels", "repeats",
    "time_zero_s", "time_diff_s", "time_ratio", "time_ratio_paired", "time_ratio_q1", "time_ratio_q3",
    "memory_zero_bytes", "memory_diff_bytes", "memory_ratio",
    "memory_method", "compile_zero_s", "compile_diff_s", "compile_method",
    "dims", "variants", "time_reflect_s", "time_ratio_reflect", "time_ratio_diff_reflect",
    "time_ratio_diff_reflect_q1", "time_ratio_diff_reflect_q3", "memory_reflect_bytes", "memory_ratio_reflect",
    "compile_reflect_s",
)


@dataclass
class Result:
    """One row of the report; times are medians over ``repeats`` rounds, ``size`` the image side.

    ``time_ratio``: DiffConv / zero padding, ratio of the two medians; ``time_ratio_paired``:
    median of the per-round ratios (each DiffConv step over the zero-padded step of its round),
    with its quartiles ``time_ratio_q1``/``time_ratio_q3`` as a measure of the machine's noise.
    ``compile_*_s``: what ``compile_method`` says. The ``*reflect*`` fields are set where
    ``variants`` holds ``'reflect'`` (reflect padding): ``time_ratio_reflect`` is reflect / zero,
    ``time_ratio_diff_reflect`` DiffConv / reflect, both per-round medians."""

    framework: str
    model: str
    kernel_size: int
    device: str
    dtype: str
    batch: int
    size: int
    channels: int
    repeats: int
    time_zero_s: float
    time_diff_s: float
    time_ratio: float
    time_ratio_paired: float
    time_ratio_q1: float
    time_ratio_q3: float
    memory_zero_bytes: int
    memory_diff_bytes: int
    memory_ratio: float
    memory_method: str
    time_zero_all_s: list[float] = field(default_factory=list)
    time_diff_all_s: list[float] = field(default_factory=list)
    compile_zero_s: float | None = None
    compile_diff_s: float | None = None
    compile_method: str = ""
    dims: int = 2
    variants: list[str] = field(default_factory=lambda: ["zero", "diff"])
    time_reflect_s: float | None = None
    time_ratio_reflect: float | None = None
    time_ratio_diff_reflect: float | None = None
    time_ratio_diff_reflect_q1: float | None = None
    time_ratio_diff_reflect_q3: float | None = None
    memory_reflect_bytes: int | None = None
    memory_ratio_reflect: float | None = None
    compile_reflect_s: float | None = None
    time_reflect_all_s: list[float] = field(default_factory=list)


def make_result(times: dict[str, list[float]], memory: dict[str, int], compile_s: dict[str, float], *,
                memory_method: str, compile_method: str = "", **meta: Any) -> Result:
    """The :class:`Result` of per-round ``times``, peak ``memory`` and first-step ``compile_s``,
    each ``{variant: ...}`` (``zero`` and ``diff``, maybe ``reflect``); ``meta``: the
    identifying fields (``framework``, ``model``, ``kernel_size``, ``device``, ``dtype``,
    ``batch``, ``size``, ``channels``, optionally ``dims``)."""
    zero, diff = times["zero"], times["diff"]
    paired, q1, q3 = measure.paired_ratio(diff, zero)
    mz, md = memory["zero"], memory["diff"]
    r = Result(
        **meta, repeats=len(zero), variants=list(times),
        time_zero_s=statistics.median(zero), time_diff_s=statistics.median(diff),
        time_ratio=statistics.median(diff) / statistics.median(zero),
        time_ratio_paired=paired, time_ratio_q1=q1, time_ratio_q3=q3,
        memory_zero_bytes=int(mz), memory_diff_bytes=int(md), memory_ratio=(md / mz) if mz else math.nan,
        memory_method=memory_method, time_zero_all_s=zero, time_diff_all_s=diff,
        compile_zero_s=compile_s.get("zero"), compile_diff_s=compile_s.get("diff"), compile_method=compile_method,
    )
    if "reflect" in times:
        reflect, mr = times["reflect"], memory["reflect"]
        r.time_reflect_s, r.time_reflect_all_s = statistics.median(reflect), reflect
        r.time_ratio_reflect = measure.paired_ratio(reflect, zero)[0]
        r.time_ratio_diff_reflect, r.time_ratio_diff_reflect_q1, r.time_ratio_diff_reflect_q3 = \
            measure.paired_ratio(diff, reflect)
        r.memory_reflect_bytes = int(mr)
        r.memory_ratio_reflect = (mr / mz) if mz else math.nan
        r.compile_reflect_s = compile_s.get("reflect")
    return r


def _shape(spec: BenchModel, settings: dict[str, Any]) -> dict[str, int]:
    """``batch``, ``size`` (image side), ``side`` (input side) and ``channels`` of ``spec``'s run."""
    size = image_side(spec, settings["size"], settings.get("quick", False))
    return {"batch": settings["batch"] or spec.batch, "size": size, "side": input_side(spec, size),
            "channels": spec.channels or settings["channels"]}


def run_torch(spec: BenchModel, k: int, settings: dict[str, Any], device: str, dtype_name: str,
              on_round: Callable[[], None] = lambda: None) -> Result:
    """Time ``spec``'s torch variants at kernel size ``k``: first step, ``warmup`` steps,
    ``repeats`` alternated rounds, then one step each under the memory probe."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch.cuda.is_available() is False")
    dtype = getattr(torch, dtype_name)
    shape = _shape(spec, settings)
    torch.manual_seed(0)
    nets = {v: spec.torch(v, shape["channels"], k).to(device, dtype) for v in spec.variants}
    for v, net in nets.items():
        if v != "zero":
            net.load_state_dict(nets["zero"].state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape["batch"], spec.in_channels(shape["channels"]), *[shape["side"]] * spec.dims,
                    generator=g).to(device, dtype)
    with torch.no_grad():
        out_shape = nets["zero"](x).shape
    target = torch.randn(out_shape, generator=g).to(device, dtype)
    backend = settings.get("torch_compile")
    cases = [(v, measure.torch_train_step(net, x, target, adam=spec.adam, compile_backend=backend,
                                          fullgraph=spec.fullgraph))
             for v, net in nets.items()]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    compile_s = measure.first_steps(cases, sync)
    for _ in range(settings["warmup"]):
        for _, step in cases:
            step()
    sync()
    clock = time.process_time if settings.get("cpu_time") and device == "cpu" else time.perf_counter
    times = measure.alternated_rounds(cases, settings["repeats"], clock=clock, sync=sync, on_round=on_round)
    memory = {v: measure.torch_peak(step, device) for v, step in cases}
    return make_result(
        times, memory, compile_s,
        memory_method="torch.cuda.max_memory_allocated" if device == "cuda" else "torch.profiler allocation events",
        compile_method="torch.compile's first step (compilation included)" if backend
        else "eager first step (torch compiles nothing)",
        framework="torch", model=spec.name, kernel_size=k, device=device, dtype=dtype_name, batch=shape["batch"],
        size=shape["size"], channels=shape["channels"], dims=spec.dims,
    )


def run_jax(spec: BenchModel, k: int, settings: dict[str, Any], device: str, dtype_name: str,
            on_round: Callable[[], None] = lambda: None) -> Result:
    """Time ``spec``'s Flax variants at kernel size ``k``: lowering + compiling each train step
    (fastest of ``compile_repeats``, caches cleared), ``warmup`` steps, ``repeats`` alternated rounds."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    dtype = getattr(jnp, dtype_name)
    shape = _shape(spec, settings)
    # Data and weights from NumPy: JAX's random numbers compile slowly (seconds for a UNet's init).
    rng = np.random.default_rng(0)
    in_shape = (shape["batch"], *[shape["side"]] * spec.dims, spec.in_channels(shape["channels"]))
    x = jax.device_put(jnp.asarray(rng.standard_normal(in_shape), dtype), dev)
    nets = {v: spec.jax(v, shape["channels"], k, dtype) for v in spec.variants}

    def weights(leaf):               # kernels ~ N(0, 1/fan_in) (Flax's default scale), biases 0
        fan_in = math.prod(leaf.shape[:-1])
        values = rng.standard_normal(leaf.shape) / math.sqrt(fan_in) if leaf.ndim > 1 else np.zeros(leaf.shape)
        return jax.device_put(jnp.asarray(values, leaf.dtype), dev)

    params = jax.tree.map(weights, jax.eval_shape(nets["zero"].init, jax.random.PRNGKey(0), x))   # shared
    out = jax.eval_shape(nets["zero"].apply, params, x)
    target = jax.device_put(jnp.asarray(rng.standard_normal(out.shape), dtype), dev)
    opt = optax.adam(1e-4)
    trains = {v: measure.jax_train_step(net, x, target, opt, spec.adam) for v, net in nets.items()}
    state = (params, jax.jit(opt.init)(params))

    compile_s = {v: math.inf for v in trains}
    compiled = {}
    for r in range(settings["compile_repeats"]):
        for v in (list(trains) if r % 2 == 0 else list(trains)[::-1]):
            if r:
                jax.clear_caches()       # else a repeat finds the compiled program in the cache
            t0 = time.perf_counter()
            compiled[v] = trains[v].lower(*state).compile()
            compile_s[v] = min(compile_s[v], time.perf_counter() - t0)
    cases = [(v, lambda c=c: jax.block_until_ready(c(*state))) for v, c in compiled.items()]
    for _ in range(settings["warmup"]):
        for _, step in cases:
            step()
    times = measure.alternated_rounds(cases, settings["repeats"], on_round=on_round)
    memory = {v: measure.jax_memory(c) for v, c in compiled.items()}
    return make_result(
        times, memory, compile_s, memory_method="XLA compiled memory_analysis",
        compile_method="jax.jit lower + compile of the train step",
        framework="jax", model=spec.name, kernel_size=k, device=device, dtype=dtype_name, batch=shape["batch"],
        size=shape["size"], channels=shape["channels"], dims=spec.dims,
    )
