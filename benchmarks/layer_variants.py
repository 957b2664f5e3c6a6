"""Design-note measurements: one DiffConv2d layer, forward+backward, in its candidate forms.

Variants: ``zero`` (``F.conv2d(padding='same')``, the baseline), ``lean`` (the shipped path:
zero-padded convolution + thin boundary terms in one autograd node), ``composite`` (ghost
padding by ``torch.cat`` then VALID convolution, plain autograd), ``buffer`` (the same with the
padded tensor written into a preallocated buffer). Alternated in one process; medians.

    python benchmarks/layer_variants.py --size 96 --channels 32 --batch 8 --kernel-sizes 3 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from diffconv.commands.speed import _torch_cpu_peak
from diffconv.torch import functional as DF
from diffconv.torch._boundary import geometry
from diffconv.torch._coeffs import ghost_tensors
from diffconv.torch.functional import composite
from diffconv.torch.padding import contract


CLOCK = time.perf_counter


def buffer_pad(x: torch.Tensor, k: int) -> torch.Tensor:
    """Ghost padding written into one preallocated tensor (2-D, square kernel, d=1)."""
    before, after = (k - 1) // 2, k // 2
    n, c, h, w = x.shape
    out = x.new_empty(n, c, h + k - 1, w + k - 1)
    out[:, :, before:before + h, before:before + w] = x
    low, high = ghost_tensors(k, 1, before, after, x.device, x.dtype)
    for dim, length in ((3, w), (2, h)):
        inner = out.narrow(5 - dim, before, h if dim == 3 else w) if dim == 3 else out
        src = inner.narrow(dim, before, length)
        inner.narrow(dim, 0, before).copy_(contract(src.narrow(dim, 0, k), low, dim, x.dtype))
        inner.narrow(dim, before + length, after).copy_(contract(src.narrow(dim, length - k, k), high, dim, x.dtype))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--kernel-sizes", type=int, nargs="+", default=[3, 5])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cpu-time", action="store_true",
                   help="time with the process CPU clock (robust to a shared, oversubscribed machine)")
    a = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if a.cpu_time else time.perf_counter
    if a.threads:
        torch.set_num_threads(a.threads)
    for k in a.kernel_sizes:
        x = torch.randn(a.batch, a.channels, a.size, a.size, requires_grad=True)
        w = torch.randn(a.channels, a.channels, k, k, requires_grad=True)
        geo = geometry((a.size, a.size), (k, k), (1, 1), (1, 1))
        variants = {
            "zero": lambda: F.conv2d(x, w, padding="same"),
            "lean": lambda: DF.conv2d(x, w),
            "composite": lambda: composite(x, w, None, None, None, geo=geo, groups=1, special=False,
                                           boundary_input_grad=True),
            "buffer": lambda: F.conv2d(buffer_pad(x, k), w),
        }
        gy = torch.randn(a.batch, a.channels, a.size, a.size)

        def step(f):
            x.grad = w.grad = None
            f().backward(gy)

        times = {name: [] for name in variants}
        for name, f in variants.items():
            step(f)
        for _ in range(a.repeats):
            for name, f in variants.items():
                t0 = CLOCK()
                step(f)
                times[name].append(CLOCK() - t0)
        mem = {name: _torch_cpu_peak(lambda f=f: step(f)) for name, f in variants.items()}
        t0, m0 = statistics.median(times["zero"]), mem["zero"]
        for name in variants:
            t = statistics.median(times[name])
            print(f"k={k} {name:9s} {1e3 * t:8.1f} ms  x{t / t0:5.3f}   peak {mem[name] / 2**20:7.1f} MiB  x{mem[name] / m0:5.3f}")


if __name__ == "__main__":
    main()
