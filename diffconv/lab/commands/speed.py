"""``diffconv speed``: time, peak memory and compile time of DiffConv vs zero ``'same'`` padding.

For each framework, model (the registry :data:`diffconv.lab.bench.networks.MODELS`) and kernel
size, the model's variants (zero padding and DiffConv; MONAI's networks also reflect padding)
run alternately on identical weights and data (:mod:`diffconv.lab.bench.runs`); the report gives
medians and the ratios to zero padding (and, where run, to reflect padding), as a table and
optionally JSON. Bad options print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, NoReturn

from diffconv.lab.bench import measure
from diffconv.lab.bench.networks import ALIASES, MODELS, image_side, missing
from diffconv.lab.bench.runs import RESULT_KEYS, Result, run_jax, run_torch

__all__ = ["add_arguments", "run", "RESULT_KEYS"]


class UsageError(ValueError):
    """A bad option value, reported as one line and exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``diffconv speed``'s options on ``parser`` (whose errors become one line, exit status 2)."""

    def error(message: str) -> NoReturn:                  # argparse's own errors print the usage first
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    parser.error = error  # type: ignore[method-assign]
    names = list(MODELS) + list(ALIASES)
    parser.add_argument("--framework", nargs="+", choices=["torch", "jax"], default=["torch", "jax"],
                        help="frameworks to measure (jax is skipped when diffconv.jax is missing, and for "
                             "torch-only models)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the model's)")
    other_sides = ", ".join(f"{name} {m.size}" for name, m in MODELS.items() if m.size != 96)
    parser.add_argument("--size", type=int, default=None,
                        help=f"image side in pixels (default: the model's: {other_sides}, the others 96)")
    parser.add_argument("--channels", type=int, default=32,
                        help="base width of the own models (stack width, first-level features; default 32); "
                             "MONAI's networks keep their own widths")
    parser.add_argument("--kernel-sizes", type=int, nargs="+", default=[3, 5],
                        help="kernel sizes of the own models (default 3 5); MONAI's networks run at their own, 3")
    parser.add_argument("--models", nargs="+", choices=names, default=["stack", "unet"], metavar="MODEL",
                        help=f"models to time, of {', '.join(MODELS)}, or 'monai' for {' '.join(ALIASES['monai'])} "
                             "(MONAI's networks need pip install 'diffconv[bench]'; default stack unet)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first (default 2)")
    parser.add_argument("--compile-repeats", type=int, default=2,
                        help="JAX: compilations per variant, the fastest reported (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process CPU clock instead of the wall clock (torch on CPU; steadier "
                             "on a shared machine, but counts every thread's time)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc only: keep freed heap memory mapped instead of returning it to the system "
                             "(mallopt M_TRIM_THRESHOLD), so that each step does not page-fault its buffers in "
                             "again; applies to every variant (see docs/benchmarks.md)")
    parser.add_argument("--torch-compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                        help="run the torch models through torch.compile(fullgraph=True; MONAI's networks break the "
                             "graph themselves and compile in parts) with BACKEND (default inductor); its first step "
                             "(the compilation) is timed apart. JAX steps are always jitted")
    parser.add_argument("--json", type=str, default=None, metavar="PATH", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and 2 repeats: checks that everything runs, numbers mean little")


def _models(args: argparse.Namespace) -> list[str]:
    """``--models`` with aliases expanded, in order, each once."""
    names = [n for name in args.models for n in ALIASES.get(name, (name,))]
    return list(dict.fromkeys(names))


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings (written to the JSON); :class:`UsageError` for a bad value."""
    s: dict[str, Any] = {
        "batch": args.batch, "size": args.size, "channels": args.channels, "kernel_sizes": list(args.kernel_sizes),
        "repeats": args.repeats, "warmup": args.warmup, "compile_repeats": args.compile_repeats,
        "quick": bool(args.quick), "models": _models(args),
    }
    if args.quick:
        s.update(batch=args.batch or 1, channels=min(args.channels, 4), kernel_sizes=list(args.kernel_sizes)[:1],
                 repeats=min(args.repeats, 2), warmup=0, compile_repeats=1)
    for name in ("channels", "repeats", "compile_repeats", "batch", "size", "threads"):
        value = s[name] if name in s else getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if s["warmup"] < 0:
        raise UsageError(f"--warmup must be >= 0, got {s['warmup']}")
    for k in s["kernel_sizes"]:
        if k < 1:
            raise UsageError(f"--kernel-sizes must be >= 1, got {k}")
    for name in s["models"]:
        spec = MODELS[name]
        side = image_side(spec, s["size"], s["quick"])
        if side % spec.size_multiple:
            raise UsageError(f"--size must be a multiple of {spec.size_multiple} for the {name} model "
                             f"(its resolution levels halve it), got {side}")
        absent = missing(spec)
        if absent:
            raise UsageError(f"the {name} model needs {', '.join(absent)}, which is not installed "
                             "(pip install 'diffconv[bench]')")
    return s


def _jax_available() -> bool:
    try:
        import diffconv.jax.linen  # noqa: F401
    except ImportError:
        return False
    return True


def _jobs(args: argparse.Namespace, s: dict[str, Any]) -> list[tuple[str, str, int]]:
    """``(framework, model, kernel size)`` of each run, skipping (and saying so) what cannot run."""
    frameworks = list(dict.fromkeys(args.framework))
    jobs = []
    for fw in frameworks:
        for name in s["models"]:
            spec = MODELS[name]
            if getattr(spec, fw) is None:
                print(f"{name}: no {fw} model, skipped")
                continue
            kernels = [spec.kernel_size] if spec.kernel_size else s["kernel_sizes"]
            jobs += [(fw, name, k) for k in kernels]
    if not jobs:
        raise UsageError(f"none of the models {' '.join(s['models'])} exists in --framework {' '.join(frameworks)}")
    ran = {fw for fw, _, _ in jobs}
    if "jax" in ran and not _jax_available():
        print("diffconv.jax is not importable: skipping the jax measurements")
        jobs = [job for job in jobs if job[0] != "jax"]
    if "torch" in ran and args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but torch.cuda.is_available() is False")
    return jobs


# ------------------------------------------------------------------------------------- reporting


def _table(results: list[Result]) -> str:
    """DiffConv vs zero padding for every row; then reflect padding where it was run."""
    w = max([7] + [len(r.model) for r in results])
    head = (f"{'framework':9s} {'model':{w}s} {'k':>2s} {'zero ms':>9s} {'diff ms':>9s} {'time x':>7s} "
            f"{'paired x (q1-q3)':>19s} {'zero MB':>9s} {'diff MB':>9s} {'mem x':>6s} "
            f"{'compile s zero/diff':>20s} {'x':>5s}")
    lines = [head, "-" * len(head)]
    for r in results:
        compiled = ""
        if r.compile_zero_s is not None and r.compile_diff_s is not None:
            compiled = f"{r.compile_zero_s:9.2f} / {r.compile_diff_s:8.2f} {r.compile_diff_s / r.compile_zero_s:5.2f}"
        lines.append(
            f"{r.framework:9s} {r.model:{w}s} {r.kernel_size:2d} {1e3 * r.time_zero_s:9.1f} {1e3 * r.time_diff_s:9.1f} "
            f"{r.time_ratio:7.3f} {r.time_ratio_paired:6.3f} ({r.time_ratio_q1:.2f}-{r.time_ratio_q3:.2f}) "
            f"{r.memory_zero_bytes / 2**20:9.1f} {r.memory_diff_bytes / 2**20:9.1f} {r.memory_ratio:6.3f} {compiled}"
        )
    methods = dict.fromkeys(f"{r.framework}: {r.compile_method}" for r in results if r.compile_method)
    if methods:
        lines.append("compile s: " + "; ".join(methods))
    reflect = [r for r in results if r.time_reflect_s is not None]
    if reflect:
        head = (f"{'framework':9s} {'model':{w}s} {'k':>2s} {'input':>14s} {'reflect ms':>10s} {'reflect/zero':>12s} "
                f"{'diff/zero':>9s} {'diff/reflect (q1-q3)':>21s} {'mem reflect/zero':>16s} {'diff/reflect':>12s}")
        lines += ["", "reflect padding (time: medians of per-round ratios)", head, "-" * len(head)]
        for r in reflect:
            shape = f"{r.batch}x{r.size}^{r.dims}"
            mem = r.memory_diff_bytes / r.memory_reflect_bytes if r.memory_reflect_bytes else float("nan")
            lines.append(
                f"{r.framework:9s} {r.model:{w}s} {r.kernel_size:2d} {shape:>14s} {1e3 * r.time_reflect_s:10.1f} "
                f"{r.time_ratio_reflect:12.3f} {r.time_ratio_paired:9.3f} {r.time_ratio_diff_reflect:8.3f} "
                f"({r.time_ratio_diff_reflect_q1:.2f}-{r.time_ratio_diff_reflect_q3:.2f}) "
                f"{r.memory_ratio_reflect:16.3f} {mem:12.3f}"
            )
    return "\n".join(lines)


def _write_json(path: str, args: argparse.Namespace, s: dict[str, Any], results: list[Result]) -> None:
    ran = list(dict.fromkeys(r.framework for r in results))
    payload = {
        "machine": measure.machine_info(), "versions": {fw: __import__(fw).__version__ for fw in ran},
        "settings": s, "device": args.device, "device_names": {fw: measure.device_name(fw, args.device) for fw in ran},
        "dtype": args.dtype, "result_keys": list(RESULT_KEYS), "results": [asdict(r) for r in results],
    }
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {path}")


def run(args: argparse.Namespace) -> int:
    """Run ``diffconv speed``; 0, or 2 after one line on stderr for a bad option."""
    try:
        s = _settings(args)
        s.update(threads=args.threads, cpu_time=bool(args.cpu_time), keep_freed_memory=bool(args.keep_freed_memory),
                 torch_compile=args.torch_compile)
        jobs = _jobs(args, s)
        if args.keep_freed_memory:
            measure.keep_freed_memory()
    except (UsageError, RuntimeError) as e:
        print(f"diffconv speed: error: {e}", file=sys.stderr)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from tqdm import tqdm

    runners = {"torch": run_torch, "jax": run_jax}
    results: list[Result] = []
    with tqdm(total=len(jobs) * s["repeats"], desc="speed", unit="round") as bar:
        for fw, name, k in jobs:
            bar.set_postfix_str(f"{fw} {name} k={k}")
            results.append(runners[fw](MODELS[name], k, s, args.device, args.dtype, lambda: bar.update(1)))
    print(_table(results))
    if args.json:
        _write_json(args.json, args, s, results)
    return 0
