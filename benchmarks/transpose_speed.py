"""Training-step time and peak memory of the padding-free decoder vs the plain one (PyTorch).

Both variants of :func:`diffconv.lab.models.decoder.torch_decoder` (``nn.ConvTranspose2d`` and
:class:`diffconv.torch.DiffConvTranspose2d`, identical weights and data) run alternately in one
process, forward + MSE loss + backward; the report gives the median step times, the median of
the per-round ratios with its quartiles (the machine's noise), and the peak bytes allocated
during one step (``diffconv.lab.bench.measure.torch_peak``).

    python benchmarks/transpose_speed.py [--batch 8] [--size 16] [--repeats 20] [--variant k4s2p1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from diffconv.lab.bench.measure import torch_peak
from diffconv.lab.models.decoder import torch_decoder
from diffconv.torch import DiffConvTranspose2d

VARIANTS = {"k4s2p1": dict(kernel_size=4, stride=2, padding=1), "k3s2p1op1": dict(kernel_size=3, stride=2, padding=1, output_padding=1)}


def measure(batch: int, size: int, channels: tuple[int, ...], variant: str, repeats: int, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    geometry = VARIANTS[variant]
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    plain = torch_decoder(channels, **geometry)
    diff = torch_decoder(channels, transposed=DiffConvTranspose2d, **geometry)
    diff.load_state_dict(plain.state_dict())
    x = torch.randn(batch, channels[0], size, size, generator=g)
    out_side = plain(x).shape[-1]
    target = torch.randn(batch, 3, out_side, out_side, generator=g)

    def make_step(net: nn.Module):
        def step() -> None:
            for p in net.parameters():
                p.grad = None
            nn.functional.mse_loss(net(x), target).backward()
        return step

    cases = {"plain": make_step(plain), "diff": make_step(diff)}
    for _ in range(2):
        for step in cases.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    for r in range(repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
    ratios = sorted(d / p for d, p in zip(times["diff"], times["plain"]))
    q = statistics.quantiles(ratios, n=4)
    memory = {name: torch_peak(step, "cpu") for name, step in cases.items()}
    return {
        "variant": variant, "batch": batch, "size": size, "out_size": out_side, "channels": channels,
        "time_plain_ms": 1e3 * statistics.median(times["plain"]), "time_diff_ms": 1e3 * statistics.median(times["diff"]),
        "time_ratio": statistics.median(times["diff"]) / statistics.median(times["plain"]),
        "time_ratio_paired": statistics.median(ratios), "time_ratio_q1": q[0], "time_ratio_q3": q[2],
        "memory_plain_MB": memory["plain"] / 2**20, "memory_diff_MB": memory["diff"] / 2**20,
        "memory_ratio": memory["diff"] / memory["plain"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=16, help="input side (output side = size * 16)")
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 32, 16, 8])
    parser.add_argument("--variant", choices=sorted(VARIANTS), nargs="+", default=sorted(VARIANTS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    for variant in args.variant:
        r = measure(args.batch, args.size, tuple(args.channels), variant, args.repeats, args.threads)
        print(
            f"{r['variant']:>10}  {r['batch']}x{r['channels'][0]}x{r['size']}^2 -> 3x{r['out_size']}^2  "
            f"time {r['time_plain_ms']:.1f} / {r['time_diff_ms']:.1f} ms = {r['time_ratio']:.3f}x "
            f"(paired {r['time_ratio_paired']:.3f}, IQR {r['time_ratio_q1']:.3f}-{r['time_ratio_q3']:.3f})  "
            f"peak memory {r['memory_plain_MB']:.1f} / {r['memory_diff_MB']:.1f} MB = {r['memory_ratio']:.3f}x"
        )


if __name__ == "__main__":
    main()
