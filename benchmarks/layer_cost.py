"""The cost of one layer, forward + backward, against the padding modes torch has.

For each map size and kernel: ``zeros`` (``nn.Conv2d(padding='same')``), ``reflect`` and
``circular`` (``padding_mode``), and DiffConv with ``boundary="diff"`` and with
``boundary="circular"``, alternated in one process (median of per-round ratios to zero padding),
with the top-level operations each issues (aten's and DiffConv's C++ ghost kernels', torch.profiler).

    python benchmarks/layer_cost.py --sizes 12 24 48 96 --channels 8 32 --threads 1 --cpu-time
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from diffconv.lab.bench.measure import alternated_rounds, paired_ratio
from diffconv.torch import DiffConv2d

VARIANTS = ("zeros", "reflect", "circular", "diff", "diff-circular")


def make(variant: str, c: int, k: int) -> nn.Module:
    if variant.startswith("diff"):
        return DiffConv2d(c, c, k, boundary="circular" if variant == "diff-circular" else "diff")
    return nn.Conv2d(c, c, k, padding=k // 2, padding_mode=variant)


def step(m: nn.Module, x: torch.Tensor):
    def run() -> None:
        for t in (x, *m.parameters()):
            t.grad = None
        m(x).sum().backward()
    return run


def op_count(run) -> int:
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    ops = ("aten::", "diffconv::")
    return sum(1 for e in prof.events() if e.name.startswith(ops)
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith(ops)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[12, 24, 48, 96])
    ap.add_argument("--channels", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--kernel-sizes", type=int, nargs="+", default=[3])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall time")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"{'C':>3} {'side':>4} {'k':>2}  " + "  ".join(f"{v:>13}" for v in VARIANTS[1:]) + "   ops: " + " ".join(VARIANTS))
    for c in args.channels:
        for side in args.sizes:
            for k in args.kernel_sizes:
                torch.manual_seed(0)
                x = torch.randn(args.batch, c, side, side, requires_grad=True)
                runs = [(v, step(make(v, c, k), x)) for v in VARIANTS]
                for _, run in runs:
                    run()
                times = alternated_rounds(runs, args.repeats, clock=clock)
                ratios = [paired_ratio(times[v], times["zeros"])[0] for v in VARIANTS[1:]]
                ops = [op_count(run) for _, run in runs]
                print(f"{c:>3} {side:>4} {k:>2}  " + "  ".join(f"{r:>13.2f}" for r in ratios) + "   ops: "
                      + " ".join(map(str, ops)))


if __name__ == "__main__":
    main()
