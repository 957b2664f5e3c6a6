"""``diffconv accuracy``: the paper's boundary-accuracy experiment (Leng & Thiyagalingam, Fig. 2).

Each built-in field (:mod:`diffconv.fields`) is sampled on a grid larger than the image by the
kernel's reach. The VALID convolution of the larger grid is the truth; every method convolves
only the central image and handles the border its own way. The error is the mean ``|method -
truth|`` over the boundary ring (outputs whose window reaches past the image), over random
standard-normal kernels and over the field's samples.

Writes ``accuracy.txt`` (the table printed on stdout), ``accuracy.json`` laid out as
``{field: {parameter: {method: error}}}`` (parameters as strings) and ``accuracy.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..baselines import boundary_methods, boundary_ring, valid_conv2d
from ..coefficients import ghost_widths

FIELDS = ("chebyshev", "spherical", "vorticity")
DIFFCONV = "diffconv"


@dataclass(frozen=True)
class Settings:
    """Sizes of one run; ``size`` is the image side of the analytic fields."""

    size: int
    orders: tuple[int, ...]
    degrees: tuple[int, ...]
    ns_grid: int
    ns_times: tuple[float, ...]
    ns_flows: int
    ns_dt: float
    kernels: int

    def describe(self) -> list[str]:
        return [
            f"chebyshev: {self.size}x{self.size} on [0.3, 0.8]^2, orders {list(self.orders)}",
            f"spherical: {self.size}x{self.size} on theta [1.3, 1.8] x phi [0.3, 0.8], degrees {list(self.degrees)}",
            f"vorticity: {self.ns_flows} flows on a {self.ns_grid}^2 periodic grid, "
            f"{3 * self.ns_grid // 4}x{3 * self.ns_grid // 4} window, dt {self.ns_dt}, times {list(self.ns_times)}",
        ]


PRESETS = {
    # A few seconds: for tests and smoke runs.
    "quick": Settings(48, (1, 4, 8), (10, 20), 48, (0.5, 1.0), 2, 0.02, 8),
    # About a minute on two CPU cores: every 11th order, every 5th m, 5 snapshots up to t = 50.
    "default": Settings(256, (1, 12, 23, 34, 45, 56, 67, 78, 89, 100), tuple(range(10, 111, 10)),
                        64, (10.0, 20.0, 30.0, 40.0, 50.0), 3, 0.02, 100),
    # The paper's analytic sizes: 500x500 images, every order 1..100, every m = 5..55 (n = 2m).
    "full": Settings(500, tuple(range(1, 101)), tuple(range(10, 111, 2)),
                     128, tuple(float(t) for t in range(5, 51, 5)), 5, 0.01, 100),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("accuracy-results"),
                        help="output folder for accuracy.txt/.json/.png (default ./accuracy-results)")
    parser.add_argument("--framework", choices=("torch", "jax"), default="torch",
                        help="backend that runs DiffConv (default torch)")
    parser.add_argument("--kernel-size", type=int, default=3, help="kernel side k (default 3)")
    parser.add_argument("--kernels", type=int, default=None,
                        help="number of random kernels (default 100; 8 with --quick)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (for tests)")
    size.add_argument("--full", action="store_true", help="the paper's sizes (500x500, all orders; minutes)")
    parser.add_argument("--fields", nargs="+", choices=FIELDS, default=list(FIELDS),
                        help="field families to run (default all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kernels, flows and random padding")


def _torch_diffconv() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    import torch

    from ..torch.functional import conv2d

    def run(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return conv2d(torch.from_numpy(x), torch.from_numpy(weight)).numpy()

    return run


def _jax_diffconv() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    import jax
    import jax.numpy as jnp

    from ..jax import conv

    def run(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        with jax.enable_x64(True):
            y = conv(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(weight.transpose(2, 3, 1, 0)))
            return np.asarray(y, dtype=np.float64).transpose(0, 3, 1, 2)

    return run


def diffconv_runner(framework: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """DiffConv as ``(x (N, C, H, W), weight (O, C, k, k)) -> (N, O, H, W)`` float64 NumPy."""
    if framework == "torch":
        return _torch_diffconv()
    if framework == "jax":
        try:
            return _jax_diffconv()
        except ImportError as exc:
            raise RuntimeError(f"--framework jax needs diffconv.jax.conv, which cannot be imported: {exc}") from exc
    raise ValueError(f"framework must be 'torch' or 'jax', got {framework!r}")


def boundary_errors(
    fields: np.ndarray,
    kernels: np.ndarray,
    before: int,
    methods: dict[str, Callable[..., np.ndarray]],
    rng: np.random.Generator,
) -> dict[str, float]:
    """Mean boundary-ring error of each method.

    fields: ``(B, S + before + after, same)`` samples on the extended grid; kernels:
    ``(K, 1, k, k)``; ``methods[name](x (B, 1, S, S), kernels, rng=rng) -> (B, K, S, S)``.
    """
    k = kernels.shape[-1]
    truth = valid_conv2d(fields[:, None], kernels)
    size = truth.shape[-1]
    image = np.ascontiguousarray(fields[:, None, before:before + size, before:before + size])
    ring = boundary_ring((size, size), (k, k))
    truth = truth[..., ring]
    return {name: float(np.abs(f(image, kernels, rng=rng)[..., ring] - truth).mean()) for name, f in methods.items()}


def format_table(results: dict[str, dict[str, dict[str, float]]], labels: dict[str, str]) -> str:
    """Per field: one row per parameter, one column per method, and a summary line."""
    lines = []
    for name, rows in results.items():
        methods = list(next(iter(rows.values())))
        lines.append(f"\n{name} (mean |error| on the boundary ring; lower is better)")
        lines.append(f"{labels[name]:>10s} " + " ".join(f"{m:>13s}" for m in methods))
        wins, ratios = 0, []
        for param, errs in rows.items():
            lines.append(f"{param:>10s} " + " ".join(f"{errs[m]:13.3e}" for m in methods))
            best_baseline = min(v for m, v in errs.items() if m != DIFFCONV)
            wins += errs[DIFFCONV] < best_baseline
            ratios.append(best_baseline / errs[DIFFCONV] if errs[DIFFCONV] > 0 else np.inf)
        lines.append(
            f"{'':>10s} DiffConv beats every baseline at {wins}/{len(rows)} {labels[name].split()[0]}s; "
            f"best baseline / DiffConv: median {np.median(ratios):.3g}, min {np.min(ratios):.3g}"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, dict[str, float]]], titles: dict[str, str], labels: dict[str, str],
         path: Path, kernel_size: int) -> None:
    """Log-scale error vs parameter, one subplot per field, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.0), squeeze=False)
    for ax, (name, rows) in zip(axes[0], results.items()):
        params = [float(p) for p in rows]
        for method in next(iter(rows.values())):
            ys = [rows[p][method] for p in rows]
            style = dict(color="black", lw=2.4, zorder=5) if method == DIFFCONV else dict(lw=1.2, alpha=0.85)
            ax.semilogy(params, ys, marker=".", label="DiffConv" if method == DIFFCONV else method, **style)
        ax.set_title(titles[name], fontsize=10)
        ax.set_xlabel(labels[name])
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel(f"mean boundary error ({kernel_size}x{kernel_size} random kernels)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


class _StepBar:
    """``progress(done, total)`` callback that shows the flow simulation's time steps."""

    def __init__(self, tqdm: Callable[..., Any]) -> None:
        self._tqdm: Callable[..., Any] = tqdm
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = self._tqdm(total=total, desc="simulating flows", unit="step", file=sys.stderr,
                                   leave=False, position=1, mininterval=0.5)
        self._bar.update(1)
        if done == total:
            self._bar.close()


def _error(message: str) -> int:
    print(f"diffconv accuracy: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..fields import chebyshev_family, spherical_family, vorticity_family

    preset = "quick" if args.quick else "full" if args.full else "default"
    s = PRESETS[preset]
    k = args.kernel_size
    n_kernels = s.kernels if args.kernels is None else args.kernels
    if k < 2:
        return _error(f"--kernel-size must be >= 2, got {k}")
    if n_kernels < 1:
        return _error(f"--kernels must be >= 1, got {n_kernels}")
    before, after = ghost_widths(k)
    # The image must hold k samples to extrapolate from; the NS window's ghosts must fit the grid.
    if s.size < k or ("vorticity" in args.fields and max(before, after) > s.ns_grid // 8):
        return _error(f"--kernel-size {k} is too large for the {preset} sizes")
    try:
        diffconv = diffconv_runner(args.framework)
    except RuntimeError as exc:
        return _error(str(exc))

    families = {
        "chebyshev": lambda: chebyshev_family(s.size, s.orders),
        "spherical": lambda: spherical_family(s.size, s.degrees),
        "vorticity": lambda: vorticity_family(s.ns_grid, s.ns_times, flows=s.ns_flows, seed=args.seed, dt=s.ns_dt,
                                              progress=_StepBar(tqdm)),
    }
    chosen = [families[name]() for name in FIELDS if name in args.fields]
    kernels = np.random.default_rng(args.seed).standard_normal((n_kernels, 1, k, k))
    methods: dict[str, Callable[..., np.ndarray]] = {DIFFCONV: lambda x, w, rng=None: diffconv(x, w)}
    methods.update(boundary_methods())

    header = [f"diffconv accuracy ({preset} sizes; --quick/--full change them): {n_kernels} random "
              f"{k}x{k} kernels N(0, 1), seed {args.seed}, DiffConv on {args.framework}"]
    header += ["  " + line for line in s.describe() if line.split(":")[0] in args.fields]
    print("\n".join(header), flush=True)

    start = time.perf_counter()
    results: dict[str, dict[str, dict[str, float]]] = {}
    total = sum(len(f.parameters) for f in chosen)
    with tqdm(total=total, desc="accuracy", unit="field", file=sys.stderr, dynamic_ncols=True) as bar:
        for fam in chosen:
            results[fam.name] = {}
            for pi, param in enumerate(fam.parameters):
                bar.set_postfix_str(f"{fam.name} {fam.parameter.split()[-1]}={param:g}")
                # Random padding's generator depends on the field and parameter, not the run order.
                rng = np.random.default_rng([args.seed, FIELDS.index(fam.name), pi])
                fields = fam.sample(param, before, after)
                results[fam.name][f"{param:g}"] = boundary_errors(fields, kernels, before, methods, rng)
                bar.update()
    elapsed = time.perf_counter() - start

    labels = {f.name: f.parameter for f in chosen}
    table = "\n".join(header) + "\n" + format_table(results, labels) + f"\n\ncomputed in {elapsed:.1f} s\n"
    print(format_table(results, labels))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.txt").write_text(table)
    (args.out / "accuracy.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, {f.name: f.title for f in chosen}, labels, args.out / "accuracy.png", k)
    print(f"\ncomputed in {elapsed:.1f} s; wrote {args.out / 'accuracy.txt'}, accuracy.json, accuracy.png")
    return 0
