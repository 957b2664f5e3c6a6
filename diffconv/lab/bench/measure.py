"""Measurement helpers: alternated timing rounds, first-step (compile) time, peak memory, train steps.

Frameworks are imported inside the functions that need them.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the profiler's allocation
and free events of one step, accumulated in time order (the peak of live bytes allocated during
the step; what was allocated before it is not counted). JAX: the compiled step's
``memory_analysis()`` (temporaries + arguments + outputs - aliased bytes).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

__all__ = [
    "Step", "first_steps", "alternated_rounds", "paired_ratio", "torch_cpu_peak", "torch_peak",
    "torch_train_step", "jax_memory", "jax_train_step", "keep_freed_memory", "machine_info", "device_name",
]

Step = Callable[[], None]


def _no_sync() -> None:
    pass


def first_steps(cases: Sequence[tuple[str, Step]], sync: Step = _no_sync) -> dict[str, float]:
    """Run each case's step once; ``{name: seconds}`` of that first step (compilation included
    under ``torch.compile``)."""
    seconds = {}
    for name, step in cases:
        t0 = time.perf_counter()
        step()
        sync()
        seconds[name] = time.perf_counter() - t0
    return seconds


def alternated_rounds(cases: Sequence[tuple[str, Step]], repeats: int, *,
                      clock: Callable[[], float] = time.perf_counter, sync: Step = _no_sync,
                      on_round: Step = _no_sync) -> dict[str, list[float]]:
    """Time ``repeats`` rounds of one step per case; ``{name: [seconds per round]}``.

    The order rotates by one each round (with two cases: alternates), so that no case always
    runs first or right after the same other one; ``on_round`` runs after each round."""
    cases = list(cases)
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for r in range(repeats):
        shift = r % len(cases)
        for name, step in cases[shift:] + cases[:shift]:
            sync()
            t0 = clock()
            step()
            sync()
            times[name].append(clock() - t0)
        on_round()
    return times


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> tuple[float, float, float]:
    """``(median, q1, q3)`` of the per-round ratios ``num[i] / den[i]`` (quartiles within the data's range)."""
    ratios = [a / b for a, b in zip(num, den)]
    if len(ratios) == 1:
        return ratios[0], ratios[0], ratios[0]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return statistics.median(ratios), q1, q3


# ----------------------------------------------------------------------------------------- torch


def torch_cpu_peak(step: Step) -> int:
    """Peak of live bytes allocated during ``step`` (CPU), from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def torch_peak(step: Step, device: str) -> int:
    """Peak of bytes allocated during ``step`` beyond what was allocated before it: CUDA's
    allocator peak on ``"cuda"``, else :func:`torch_cpu_peak`."""
    if device != "cuda":
        return torch_cpu_peak(step)
    import torch

    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def torch_train_step(net: Any, x: Any, target: Any, *, adam: bool, compile_backend: str | None = None,
                     fullgraph: bool = True) -> Step:
    """One step of ``net`` on ``x``: MSE against ``target`` (``net(x)``'s shape), backward, and an
    Adam update (lr 1e-4) with ``adam``; under ``torch.compile(fullgraph=fullgraph)`` with
    ``compile_backend``.

    The step drops its gradients at its end, so that it frees only what it allocated (a memory
    probe of one step then sees no frees of earlier steps' buffers)."""
    import torch

    opt = torch.optim.Adam(net.parameters(), lr=1e-4) if adam else None
    forward = torch.compile(net, fullgraph=fullgraph, backend=compile_backend) if compile_backend else net

    def step() -> None:
        torch.nn.functional.mse_loss(forward(x), target).backward()
        if opt is not None:
            opt.step()
        for p in net.parameters():
            p.grad = None

    return step


# ------------------------------------------------------------------------------------------- jax


def jax_memory(compiled: Any) -> int:
    """Bytes a compiled JAX program holds: temporaries + arguments + outputs - aliased (0 if unknown)."""
    ma = compiled.memory_analysis()
    if ma is None:
        return 0
    return int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes)


def jax_train_step(net: Any, x: Any, target: Any, opt: Any, adam: bool) -> Callable[..., Any]:
    """The jitted step ``train(params, opt_state) -> (params, opt_state, loss)`` of the MSE of
    ``net.apply(params, x)`` against ``target``: an ``opt`` update with ``adam``, else the
    gradients in place of the new parameters."""
    import jax
    import jax.numpy as jnp
    import optax

    def train(p, o):
        loss, grads = jax.value_and_grad(lambda q: jnp.mean((net.apply(q, x) - target) ** 2))(p)
        if not adam:
            return grads, o, loss
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    return jax.jit(train)


# --------------------------------------------------------------------------------------- process


def keep_freed_memory() -> None:
    """Tell glibc's allocator to keep freed memory mapped for the rest of the process.

    By default glibc returns the top of the heap to the system once more than a threshold is
    free (and that threshold tracks the largest buffer freed so far), so a training step whose
    buffers are freed at its end faults their pages in again next step. Raises ``RuntimeError``
    where the C library has no ``mallopt`` (not glibc)."""
    import ctypes
    import ctypes.util

    m_trim_threshold, m_mmap_threshold = -1, -3                  # glibc's <malloc.h> parameters
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:
        raise RuntimeError(f"--keep-freed-memory needs glibc's mallopt: {e}") from None
    # Trimming only above 1 GiB; buffers up to 32 MiB (glibc's largest allowed value) on the heap.
    if not (mallopt(m_trim_threshold, 2**30) and mallopt(m_mmap_threshold, 32 * 2**20)):
        raise RuntimeError("--keep-freed-memory: mallopt refused the settings")


def machine_info() -> dict[str, Any]:
    """Platform, processor, core count, Python version and (Linux) the CPU model."""
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor(),
                            "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def device_name(framework: str, device: str) -> str:
    """The accelerator's name as ``framework`` reports it (``"cpu"`` on the CPU)."""
    if device == "cpu":
        return "cpu"
    if framework == "torch":
        import torch

        return torch.cuda.get_device_name()
    import jax

    return jax.devices("gpu")[0].device_kind
