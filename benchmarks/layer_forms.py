"""One DiffConv2d layer, forward+backward, in each eager form, against zero ``'same'`` padding.

Forms: ``zero`` (``F.conv2d(padding='same')``), ``auto`` (``diffconv.torch.functional.conv2d``,
the form :func:`~diffconv.torch.functional.choose_form` picks), and each eager form called
directly: ``banded-first`` / ``banded-after`` (the banded form with its thin band operations
before the big convolution, the CPU's order, or after it, an accelerator's), ``padded`` and
``composite`` (plain operations, what transforms and tracers run).
Alternated in one process; median time per step and peak memory of one step. With
``--profile`` it also prints the kernels of one step of each form (torch.profiler), sorted by
device time.

    python benchmarks/layer_forms.py --device cuda --batch 64 --size 224 --channels 32 --kernel-sizes 3 5 7
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torch.nn.functional as F

from diffconv.bench.measure import torch_peak
from diffconv.torch import functional as DF
from diffconv.torch._banded import BandedConv
from diffconv.torch._padded import PaddedConv

FORMS = ("zero", "auto", "banded-first", "banded-after", "padded", "composite")


def step_fn(form: str, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """One forward+backward of the layer in ``form``; returns the step as a callable."""
    g = torch.randn(x.shape[0], w.shape[0], *x.shape[2:], device=x.device, dtype=x.dtype)
    k = w.shape[-1]
    geo = DF.geometry(tuple(x.shape[2:]), (k, k), (1, 1), (1, 1), False)
    run = functools.partial(DF.composite, geo=geo, groups=1, boundary_input_grad=True)
    forward = {
        "zero": lambda: F.conv2d(x, w, b, padding="same"),
        "auto": lambda: DF.conv2d(x, w, b),
        "banded-first": lambda: BandedConv.apply(x, w, b, 1, True, run),
        "banded-after": lambda: BandedConv.apply(x, w, b, 1, False, run),
        "padded": lambda: PaddedConv.apply(x, w, b, None, None, geo, 1, True, run),
        "composite": lambda: run(x, w, b, None, None),
    }[form]

    def step() -> None:
        forward().backward(g)
        x.grad = w.grad = b.grad = None

    return step


def timed(step, device: str) -> float:
    """Wall time of one ``step``, the device synchronised before and after."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - t0


def profile(step, device: str, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile as prof

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    for _ in range(2):              # the first profiled step carries the profiler's own start-up
        with prof(activities=activities) as p:
            step()
            if device == "cuda":
                torch.cuda.synchronize()
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    return p.key_averages().table(sort_by=key, row_limit=rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--kernel-sizes", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    forms = ["zero"] + [f for f in args.forms if f != "zero"]
    for k in args.kernel_sizes:
        c, s = args.channels, args.size
        x = torch.randn(args.batch, c, s, s, device=args.device, requires_grad=True)
        w = torch.randn(c, c, k, k, device=args.device, requires_grad=True)
        b = torch.randn(c, device=args.device, requires_grad=True)
        steps = {f: step_fn(f, x, w, b) for f in forms}
        for f in forms:                  # warm-up (cuDNN heuristics, caches)
            steps[f]()
            steps[f]()
        times: dict[str, list[float]] = {f: [] for f in forms}
        for r in range(args.repeats):
            for f in (forms if r % 2 == 0 else forms[::-1]):     # alternate which goes first
                times[f].append(timed(steps[f], args.device))
        peaks = {f: torch_peak(steps[f], args.device) for f in forms}
        z_t, z_m = statistics.median(times["zero"]), peaks["zero"]
        print(f"k={k}  {args.batch}x{c}x{s}x{s}  device={args.device}")
        for f in forms:
            t = statistics.median(times[f])
            print(f"  {f:12s} {1e3 * t:8.3f} ms  x{t / z_t:6.3f}   peak {peaks[f] / 2**20:9.1f} MB  x{peaks[f] / z_m:6.3f}")
        if args.profile:
            for f in forms:
                print(f"\n--- profile: {f}, k={k}\n{profile(steps[f], args.device, 30)}")


if __name__ == "__main__":
    main()
