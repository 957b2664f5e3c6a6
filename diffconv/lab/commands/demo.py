"""``diffconv demo``: boundary error of DiffConv vs zero padding on one smooth field (PyTorch)."""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kernel-size", type=int, default=5, help="odd or even kernel size (default 5)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F

    from diffconv.plan import axis_plan
    from diffconv.torch import functional as DF

    k, n = args.kernel_size, args.size
    p = axis_plan(n, k)
    coords = np.linspace(0.3, 0.8, n + p.before + p.after)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    field = torch.tensor(np.sin(7 * xx + 3 * yy) * np.exp(xx * yy))[None, None]
    kernel = torch.randn(1, 1, k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(args.seed))
    truth = F.conv2d(field, kernel)                     # VALID conv on the larger grid
    inner = field[..., p.before:p.before + n, p.before:p.before + n]
    ring = torch.ones(n, n, dtype=torch.bool)
    ring[p.before:n - p.after, p.before:n - p.after] = False
    print(f"{n}x{n} smooth field, random {k}x{k} kernel: mean |error| over the boundary ring")
    for name, out in (
        ("zero padding", F.conv2d(inner, kernel, padding="same")),
        ("reflect padding", F.conv2d(F.pad(inner, (p.before, p.after) * 2, mode="reflect"), kernel)),
        ("DiffConv", DF.conv2d(inner, kernel)),
    ):
        err = (out - truth)[0, 0][ring].abs().mean().item()
        print(f"  {name:16s} {err:.3e}")
    return 0
