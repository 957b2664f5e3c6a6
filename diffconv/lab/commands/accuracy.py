"""``diffconv accuracy``: the paper's boundary-accuracy experiment (Leng & Thiyagalingam, Fig. 2).

Each field is sampled on a grid larger than the image by the kernel's reach. The VALID
convolution of the larger grid is the truth; every method convolves only the central image and
handles the border its own way. The error is the mean ``|method - truth|`` over the boundary
ring (outputs whose window reaches past the image), over random standard-normal kernels and
over the field's samples.

Three kinds of run: the default (and ``--quick``) runs sample the built-in fields of
:mod:`diffconv.lab.fields` the project's way (normalised, the image fixed, the grid extended);
``--full`` samples them as the paper's code does (500x500, not normalised, the image a crop);
``--data FILE`` takes the user's arrays, each the whole grid, the image its central crop (an
axis that ``--boundary`` makes circular is taken as periodic: the image keeps all of it and the
truth wraps it). ``--fields periodic-band`` adds a case periodic along columns and bounded along
rows, with per-axis boundaries and its errors per part of the ring.

DiffConv columns: ``diffconv`` is the paper's (``"diff"`` everywhere, ghost order ``k - 1``);
``--boundary SPEC`` adds ``diffconv[SPEC]`` and ``--orders P ...`` adds ``diffconv p=P`` (or
``diffconv[SPEC] p=P``). SPEC is a mode (``diff``, ``zeros``, ``reflect``, ``replicate``,
``circular``) or one comma-separated entry per spatial axis, each a mode or ``low:high``:
``diff,circular``, ``zeros:diff,circular``.

Writes ``accuracy.txt`` (the table printed on stdout), ``accuracy.json`` laid out as
``{field: {parameter: {method: error}}}`` (parameters as strings; with ``--data`` the field is
the array's name and the parameters the sample indices and ``"mean"``) and ``accuracy.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from diffconv.boundary import MODES, BoundarySpec, parse_boundary, parse_order
from diffconv.coefficients import ghost_widths

from ..baselines import boundary_methods, boundary_ring, valid_conv

FIELDS = ("chebyshev", "spherical", "vorticity")
PERIODIC_BAND = "periodic-band"
CASES = (*FIELDS, PERIODIC_BAND)
DIFFCONV = "diffconv"
MEAN = "mean"
# The periodic-band case: its baselines, its per-axis DiffConv specs, and the parts of its ring.
BAND_BASELINES = ("zero", "reflect", "replicate", "circular")
BAND_SPECS: tuple[BoundarySpec, ...] = (("diff", "circular"), ("zeros", "circular"))
BAND_REGIONS = ("periodic sides", "bounded sides", "corners")

Results = dict[str, dict[str, dict[str, float]]]
#: A DiffConv column: ``(name, boundary spec, order)``.
Variant = tuple[str, BoundarySpec, Optional[int]]


@dataclass(frozen=True)
class Settings:
    """Sizes of a project-sampled run; ``size`` is the image side of the analytic fields."""

    size: int
    orders: tuple[int, ...]
    degrees: tuple[int, ...]
    ns_grid: int
    ns_times: tuple[float, ...]
    ns_flows: int
    ns_dt: float
    kernels: int

    def describe(self, k: int) -> list[str]:
        return [
            f"chebyshev: {self.size}x{self.size} on [0.3, 0.8]^2, orders {list(self.orders)}, normalised",
            f"spherical: {self.size}x{self.size} on theta [1.3, 1.8] x phi [0.3, 0.8], degrees "
            f"{list(self.degrees)}, normalised",
            f"vorticity: {self.ns_flows} flows on a {self.ns_grid}^2 periodic grid, "
            f"{3 * self.ns_grid // 4}x{3 * self.ns_grid // 4} window, dt {self.ns_dt}, times {list(self.ns_times)}, "
            "normalised",
            f"{PERIODIC_BAND}: the same flows, a {self.ns_grid // 2}-row band over all {self.ns_grid} columns "
            "(periodic along columns, bounded along rows), normalised",
        ]

    def too_small(self, k: int, fields: list[str]) -> bool:
        # The image must hold k samples to extrapolate from; the NS window's ghosts must fit the grid.
        before, after = ghost_widths(k)
        ns = {"vorticity", PERIODIC_BAND} & set(fields)
        return self.size < k or (bool(ns) and max(before, after) > self.ns_grid // 8)


@dataclass(frozen=True)
class PaperSettings:
    """The paper's experiment as its published code runs it."""

    points: int = 500
    orders: tuple[int, ...] = (1, *range(10, 101, 10))
    ms: tuple[int, ...] = tuple(range(5, 56, 5))
    ns_grid: int = 256
    solutions: tuple[int, ...] = (1, *range(10, 101, 10))
    kernels: int = 100

    def describe(self, k: int) -> list[str]:
        p, image = self.points, self.points - k + 1
        return [
            f"chebyshev: {p}x{p} on linspace(0.3, 0.8)^2, image the central {image}x{image}, "
            f"orders {list(self.orders)}, not normalised",
            f"spherical: {p}x{p}, azimuth [0.4pi, 0.6pi] along rows x polar angle [pi/2 -+ pi/12] along columns, "
            f"image the central {image}x{image}, m {list(self.ms)}, n = 2m, not normalised",
            f"vorticity: stand-in for the paper's data set: t = 0 of solutions {list(self.solutions)} "
            f"(Gaussian random initial vorticity, {self.ns_grid}x{self.ns_grid}), not normalised",
        ]

    def too_small(self, k: int, fields: list[str]) -> bool:
        return self.points - (k - 1) < k or ("vorticity" in fields and self.ns_grid - (k - 1) < k)


PRESETS: dict[str, Settings | PaperSettings] = {
    # A few seconds: for tests and smoke runs.
    "quick": Settings(48, (1, 4, 8), (10, 20), 48, (0.5, 1.0), 2, 0.02, 8),
    # About a minute on two CPU cores: every 11th order, every 5th m, 5 snapshots up to t = 50.
    "default": Settings(256, (1, 12, 23, 34, 45, 56, 67, 78, 89, 100), tuple(range(10, 111, 10)),
                        64, (10.0, 20.0, 30.0, 40.0, 50.0), 3, 0.02, 100),
    # The paper's own experiment at its own scale.
    "full": PaperSettings(),
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
    size.add_argument("--full", action="store_true",
                      help="the paper's own experiment: 500x500, its orders, not normalised (about a minute)")
    size.add_argument("--data", type=Path, metavar="FILE",
                      help="your own arrays (.npy, or .npz with one or more): each array is the whole grid, "
                           "the image its central crop; shapes (H, W), (N, H, W) or (N, C, H, W) "
                           "(see --ndim for 1-D and 3-D)")
    parser.add_argument("--arrays", nargs="+", metavar="NAME", help="with --data: the .npz arrays to use (default all)")
    parser.add_argument("--ndim", type=int, choices=(1, 2, 3), default=None,
                        help="with --data: spatial dimensions of the arrays (default 2)")
    parser.add_argument("--fields", nargs="+", choices=CASES, default=None,
                        help=f"built-in cases to run (default {' '.join(FIELDS)}; {PERIODIC_BAND}: periodic "
                             "along columns, bounded along rows, with per-axis boundaries)")
    parser.add_argument("--boundary", metavar="SPEC",
                        help="adds a DiffConv column with this boundary: a mode (" + ", ".join(MODES) + ") or one "
                             "comma-separated entry per spatial axis, each a mode or low:high, e.g. diff,circular "
                             "or zeros:diff,circular; with --data a circular axis is taken as periodic")
    parser.add_argument("--orders", nargs="+", type=int, metavar="P",
                        help="adds DiffConv columns with ghost order P (0 .. k-1; the paper's is k-1), with "
                             "--boundary's spec if given")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kernels, flows and random padding")
    parser.add_argument("--transposed", action="store_true",
                        help="the transposed case instead: fields at half resolution upsampled x2 by a "
                             "transposed convolution (bilinear and cubic kernels), DiffConvTranspose vs the "
                             "plain layer and padding baselines (torch)")


def _torch_diffconv(options: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    import torch

    from diffconv.torch import functional

    convs = {3: functional.conv1d, 4: functional.conv2d, 5: functional.conv3d}

    def run(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return convs[weight.ndim](torch.from_numpy(x), torch.from_numpy(weight), **options).numpy()

    return run


def _jax_diffconv(options: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    import jax
    import jax.numpy as jnp

    from diffconv.jax import conv

    def run(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        d = x.ndim - 2
        last = (0, *range(2, 2 + d), 1)                      # channels-first -> channels-last
        with jax.enable_x64(True):
            y = conv(jnp.asarray(x.transpose(last)), jnp.asarray(weight.transpose(*range(2, 2 + d), 1, 0)),
                     **options)
            return np.moveaxis(np.asarray(y, dtype=np.float64), -1, 1)

    return run


def diffconv_runner(framework: str, boundary: BoundarySpec = "diff",
                    order: Optional[int] = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """DiffConv as ``(x (N, C, *s), weight (O, C, *k)) -> (N, O, *s)`` float64 NumPy, 1 to 3 spatial
    axes, with ``boundary`` and ghost ``order`` (docs/design.md; the defaults are the paper's)."""
    # The paper's call passes no options, so it runs on backends that predate them.
    options = {} if (boundary, order) == ("diff", None) else {"boundary": boundary, "order": order}
    if framework == "torch":
        return _torch_diffconv(options)
    if framework == "jax":
        try:
            return _jax_diffconv(options)
        except ImportError as exc:
            raise RuntimeError(f"--framework jax needs diffconv.jax.conv, which cannot be imported: {exc}") from exc
    raise ValueError(f"framework must be 'torch' or 'jax', got {framework!r}")


def parse_boundary_option(text: str, ndim: int) -> BoundarySpec:
    """``--boundary`` text as a DiffConv boundary spec, checked for ``ndim`` spatial axes.

    A mode (``"diff"``) stays a mode; comma-separated entries become one per axis, each a mode or
    a ``low:high`` pair: ``"zeros:diff,circular"`` -> ``(("zeros", "diff"), "circular")``.
    Raises ``ValueError`` with a one-line message."""
    entries: list[Any] = []
    for entry in text.split(","):
        sides = tuple(side.strip() for side in entry.split(":"))
        if len(sides) > 2:
            raise ValueError(f"--boundary entry {entry!r} has more than two sides; write a mode or low:high")
        entries.append(sides[0] if len(sides) == 1 else sides)
    spec: BoundarySpec = entries[0] if len(entries) == 1 and isinstance(entries[0], str) else tuple(entries)
    try:
        parse_boundary(spec, ndim)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--boundary {text!r}: {exc}") from None
    return spec


def spec_text(spec: BoundarySpec) -> str:
    """The ``--boundary`` text of a spec (the inverse of :func:`parse_boundary_option`)."""
    if isinstance(spec, str):
        return spec
    return ",".join(e if isinstance(e, str) else ":".join(e) for e in spec)


def variant_name(spec: BoundarySpec, order: Optional[int]) -> str:
    """A DiffConv column's name: ``diffconv`` (the paper's), ``diffconv[SPEC]``, ``... p=P``."""
    name = DIFFCONV if spec == "diff" else f"{DIFFCONV}[{spec_text(spec)}]"
    return name if order is None else f"{name} p={order}"


def variants(boundary: Optional[BoundarySpec], orders: Optional[list[int]],
             extra: tuple[BoundarySpec, ...] = ()) -> list[Variant]:
    """The DiffConv columns: the paper's, ``extra`` specs, ``boundary``, then ``orders`` (with
    ``boundary``, default ``"diff"``); duplicates once."""
    specs = [("diff", None), *((e, None) for e in extra)]
    if boundary is not None:
        specs.append((boundary, None))
    specs += [(boundary or "diff", p) for p in orders or ()]
    return list({variant_name(b, p): (variant_name(b, p), b, p) for b, p in specs}.values())


def is_diffconv(method: str) -> bool:
    """Whether a column is a DiffConv setting (the paper's or another boundary/order)."""
    return method.startswith(DIFFCONV)


def boundary_errors(
    fields: np.ndarray,
    kernels: np.ndarray,
    before: int,
    methods: dict[str, Callable[..., np.ndarray]],
    rng: np.random.Generator,
) -> dict[str, float]:
    """Mean boundary-ring error of each method.

    fields: ``(B, *grid)`` samples on the whole grid (1 to 3 axes); kernels: ``(K, 1, *k)``;
    the image is the crop ``[before, before + grid - k + 1)`` per axis, the truth the VALID
    convolution of the grid; ``methods[name](x (B, 1, *image), kernels, rng=rng) -> (B, K, *image)``.
    """
    return region_errors(fields, kernels, before, methods, rng)["ring"]


def ring_parts(shape: tuple[int, ...], kernel_size: tuple[int, ...], periodic: int = 1) -> dict[str, np.ndarray]:
    """The boundary ring of a 2-D image split by the axis its windows reach past: ``"periodic
    sides"`` (only axis ``periodic``), ``"bounded sides"`` (only the other) and ``"corners"`` (both)."""
    bounded = 1 - periodic
    on_p = np.expand_dims(boundary_ring((shape[periodic],), (kernel_size[periodic],)), bounded)
    on_b = np.expand_dims(boundary_ring((shape[bounded],), (kernel_size[bounded],)), periodic)
    on_p, on_b = np.broadcast_to(on_p, shape), np.broadcast_to(on_b, shape)
    return dict(zip(BAND_REGIONS, (on_p & ~on_b, on_b & ~on_p, on_p & on_b)))


def region_errors(
    fields: np.ndarray,
    kernels: np.ndarray,
    before: int,
    methods: dict[str, Callable[..., np.ndarray]],
    rng: np.random.Generator,
    parts: Callable[[tuple[int, ...]], dict[str, np.ndarray]] | None = None,
) -> dict[str, dict[str, float]]:
    """As :func:`boundary_errors`, per part of the image: ``{"ring": ..., **{part: ...}}``, where
    ``parts(image_shape)`` gives more masks (each method runs once)."""
    ks = kernels.shape[2:]
    truth = valid_conv(fields[:, None], kernels)
    image_shape = truth.shape[2:]
    crop = tuple(slice(before, before + s) for s in image_shape)
    image = np.ascontiguousarray(fields[(slice(None), None, *crop)])
    masks = {"ring": boundary_ring(image_shape, ks), **(parts(image_shape) if parts else {})}
    out: dict[str, dict[str, float]] = {region: {} for region in masks}
    for name, f in methods.items():
        err = np.abs(f(image, kernels, rng=rng) - truth)
        for region, mask in masks.items():
            out[region][name] = float(err[..., mask].mean())
    return out


def _best_baseline(errs: dict[str, float]) -> tuple[str, float]:
    name = min((m for m in errs if not is_diffconv(m)), key=errs.__getitem__)
    return name, errs[name]


def best_setting(rows: dict[str, dict[str, float]]) -> str:
    """One line: which DiffConv setting (boundary, order) has the lowest error, and how often."""
    names = [m for m in next(iter(rows.values())) if is_diffconv(m)]
    samples = {p: e for p, e in rows.items() if p != MEAN}
    wins = {m: sum(min(names, key=e.__getitem__) == m for e in samples.values()) for m in names}
    mean = rows[MEAN] if MEAN in rows else {m: float(np.mean([e[m] for e in samples.values()])) for m in names}
    best = min(names, key=mean.__getitem__)
    return (f"best DiffConv setting: {best} (mean {mean[best]:.3e}, the paper's {mean[DIFFCONV]:.3e}; lowest of the "
            f"settings at {wins[best]}/{len(samples)})")


def _times(a: float, b: float) -> str:
    return f"{a / b:.3g}x" if b > 0 else "infinitely"


def verdict(rows: dict[str, dict[str, float]], unit: str) -> str:
    """One plain sentence: is DiffConv the best method here, and if not, which is and by how much.

    With a ``"mean"`` row (``--data``) the verdict is on the mean, with the per-sample count.
    """
    samples = {p: e for p, e in rows.items() if p != MEAN}
    wins = [p for p, e in samples.items() if e[DIFFCONV] < _best_baseline(e)[1]]
    if MEAN in rows:
        d = rows[MEAN][DIFFCONV]
        best, v = _best_baseline(rows[MEAN])
        count = f"DiffConv is best on {len(wins)}/{len(samples)} samples"
        if d < v:
            return (f"verdict: DiffConv has the lowest mean boundary error ({d:.3e}; next best {best} "
                    f"{v:.3e}, {_times(v, d)} higher); {count}.")
        return (f"verdict: DiffConv is NOT the best method on this data: {best} has the lowest mean boundary error "
                f"({v:.3e}; DiffConv {d:.3e}, {_times(d, v)} higher); {count}.")
    if len(wins) == len(samples):
        return f"verdict: DiffConv has the lowest boundary error at every {unit} ({len(wins)}/{len(samples)})."
    losses = [f"{p} ({_best_baseline(e)[0]})" for p, e in samples.items() if p not in wins]
    return f"verdict: DiffConv is NOT the best method at {unit} {', '.join(losses)} (best method in brackets)."


def format_table(results: Results, labels: dict[str, str]) -> str:
    """Per field: one row per parameter, one column per method, a summary line and the verdict
    (and, with several DiffConv settings, the best of them)."""
    lines = []
    for name, rows in results.items():
        methods = list(next(iter(rows.values())))
        widths = [max(13, len(m)) for m in methods]
        unit = labels[name].split()[0]
        where = f"the {name.split('/')[1]} of the boundary ring" if "/" in name else "the boundary ring"
        lines.append(f"\n{name} (mean |error| on {where}; lower is better)")
        lines.append(f"{labels[name]:>10s} " + " ".join(f"{m:>{w}s}" for m, w in zip(methods, widths)))
        wins, ratios = 0, []
        for param, errs in rows.items():
            lines.append(f"{param:>10s} " + " ".join(f"{errs[m]:{w}.3e}" for m, w in zip(methods, widths)))
            if param == MEAN:
                continue
            best_baseline = _best_baseline(errs)[1]
            wins += errs[DIFFCONV] < best_baseline
            ratios.append(best_baseline / errs[DIFFCONV] if errs[DIFFCONV] > 0 else np.inf)
        lines.append(
            f"{'':>10s} DiffConv beats every baseline at {wins}/{len(ratios)} {unit}s; "
            f"best baseline / DiffConv: median {np.median(ratios):.3g}, min {np.min(ratios):.3g}"
        )
        lines.append(f"{'':>10s} {verdict(rows, unit)}")
        if sum(map(is_diffconv, methods)) > 1:
            lines.append(f"{'':>10s} {best_setting(rows)}")
    return "\n".join(lines)


def plot(results: Results, titles: dict[str, str], labels: dict[str, str], path: Path, kernel_size: int,
         ndim: int = 2) -> None:
    """One panel per field: log-scale error vs parameter, one line per method; for ``--data``
    arrays (a ``"mean"`` row) a bar per method's mean error with the samples as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.0), squeeze=False)
    for ax, (name, rows) in zip(axes[0], results.items()):
        methods = list(next(iter(rows.values())))
        if MEAN in rows:
            _bars(ax, rows, methods)
        else:
            params = [float(p) for p in rows]
            for method in methods:
                ys = [rows[p][method] for p in rows]
                style = (dict(color="black", lw=2.4, zorder=5) if method == DIFFCONV else
                         dict(lw=1.6, ls="--", zorder=4) if is_diffconv(method) else dict(lw=1.2, alpha=0.85))
                ax.semilogy(params, ys, marker=".", label="DiffConv" if method == DIFFCONV else method, **style)
            ax.set_xlabel(labels[name])
        ax.set_title(titles[name], fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel(f"mean boundary error ({'x'.join([str(kernel_size)] * ndim)} random kernels)")
    if not any(MEAN in rows for rows in results.values()):
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _bars(ax: Any, rows: dict[str, dict[str, float]], methods: list[str]) -> None:
    xs = np.arange(len(methods))
    means = [rows[MEAN][m] for m in methods]
    ax.bar(xs, means, color=["black" if m == DIFFCONV else "0.35" if is_diffconv(m) else "0.7" for m in methods],
           zorder=2)
    for p, errs in rows.items():
        if p != MEAN:
            ax.plot(xs, [errs[m] for m in methods], "o", color="tab:red", ms=3, alpha=0.6, zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(xs, ["DiffConv" if m == DIFFCONV else m for m in methods], rotation=45, ha="right", fontsize=8)


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


@dataclass
class Block:
    """One table block: a field (or data array) and its rows, each ``(label, draw fields, rng)``;
    its DiffConv columns, its baselines (``None``: all) and more parts of the ring than the whole."""

    name: str
    title: str
    label: str
    rows: list[tuple[str, Callable[[], np.ndarray], np.random.Generator]]
    variants: list[Variant]
    baselines: Optional[tuple[str, ...]] = None
    parts: Optional[Callable[[tuple[int, ...]], dict[str, np.ndarray]]] = None


def block_methods(block: Block, framework: str) -> dict[str, Callable[..., np.ndarray]]:
    """The block's columns as ``method(x, weights, rng=None)``: DiffConv settings, then baselines."""
    def wrap(run: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
        return lambda x, w, rng=None: run(x, w)

    methods = {name: wrap(diffconv_runner(framework, spec, order)) for name, spec, order in block.variants}
    methods.update({m: f for m, f in boundary_methods().items() if block.baselines is None or m in block.baselines})
    return methods


def _builtin_blocks(preset: str, k: int, fields: list[str], seed: int,
                    columns: list[Variant], band_columns: list[Variant]) -> Iterator[Block]:
    from tqdm import tqdm

    from .. import fields as FL

    s = PRESETS[preset]
    before, after = ghost_widths(k)
    if isinstance(s, PaperSettings):
        families = {
            "chebyshev": lambda: FL.paper_chebyshev_family(s.points, s.orders),
            "spherical": lambda: FL.paper_spherical_family(s.points, s.ms),
            "vorticity": lambda: FL.paper_vorticity_family(s.ns_grid, s.solutions, seed=seed),
        }
    else:
        families = {
            "chebyshev": lambda: FL.chebyshev_family(s.size, s.orders),
            "spherical": lambda: FL.spherical_family(s.size, s.degrees),
            "vorticity": lambda: FL.vorticity_family(s.ns_grid, s.ns_times, flows=s.ns_flows, seed=seed, dt=s.ns_dt,
                                                     progress=_StepBar(tqdm)),
            PERIODIC_BAND: lambda: FL.periodic_band_family(s.ns_grid, s.ns_times, flows=s.ns_flows, seed=seed,
                                                           dt=s.ns_dt, progress=_StepBar(tqdm)),
        }
    for name in CASES:
        if name in fields:
            fam = families[name]()
            # Random padding's generator depends on the field and parameter, not the run order.
            rows = [(f"{p:g}", lambda p=p, fam=fam: fam.sample(p, before, after),
                     np.random.default_rng([seed, CASES.index(name), i])) for i, p in enumerate(fam.parameters)]
            if name == PERIODIC_BAND:     # periodic along columns (axis 1), bounded along rows
                yield Block(name, fam.title, fam.parameter, rows, band_columns, BAND_BASELINES,
                            lambda shape: ring_parts(shape, (k, k), periodic=1))
            else:
                yield Block(name, fam.title, fam.parameter, rows, columns)


def _wrap(fields: np.ndarray, axes: tuple[int, ...], before: int, after: int) -> np.ndarray:
    """``fields`` ``(C, *spatial)`` extended along periodic spatial ``axes`` by their wrap."""
    widths = [(0, 0)] + [(before, after) if a in axes else (0, 0) for a in range(fields.ndim - 1)]
    return np.pad(fields, widths, mode="wrap")


def _data_blocks(arrays: list[Any], seed: int, columns: list[Variant], periodic: tuple[int, ...],
                 k: int) -> Iterator[Block]:
    """One block per array; along the ``periodic`` axes the image is the whole axis, the truth its wrap."""
    before, after = ghost_widths(k)
    for a_index, arr in enumerate(arrays):
        shape = "x".join(map(str, arr.samples.shape[2:]))
        title = f"{arr.name}: {arr.samples.shape[0]} x {arr.samples.shape[1]}ch x {shape}"
        rows = [(str(i), lambda i=i, arr=arr: _wrap(arr.samples[i], periodic, before, after),
                 np.random.default_rng([seed, a_index, i])) for i in range(arr.samples.shape[0])]
        yield Block(arr.name, title, "sample", rows, columns)


def _check_options(args: argparse.Namespace) -> str | None:
    if args.kernel_size < 2:
        return f"--kernel-size must be >= 2, got {args.kernel_size}"
    if args.kernels is not None and args.kernels < 1:
        return f"--kernels must be >= 1, got {args.kernels}"
    if args.data is not None and args.fields is not None:
        return "--fields chooses built-in fields; it cannot be combined with --data"
    if args.data is None and (args.arrays or args.ndim is not None):
        return "--arrays and --ndim apply to --data only"
    if args.full and args.fields is not None and PERIODIC_BAND in args.fields:
        return f"--fields {PERIODIC_BAND} runs at the project's sizes (the default or --quick), not --full"
    return None


def _columns(args: argparse.Namespace, ndim: int) -> tuple[list[Variant], list[Variant], tuple[int, ...]]:
    """The DiffConv columns of the fields and of the periodic-band case, and the axes that
    ``--boundary`` makes circular. Raises ``ValueError`` for a bad ``--boundary`` or ``--orders``."""
    boundary = None if args.boundary is None else parse_boundary_option(args.boundary, ndim)
    for p in args.orders or ():
        try:
            parse_order(p, ndim, [args.kernel_size - 1] * ndim)
        except ValueError as exc:
            raise ValueError(f"--orders {p}: {exc} (kernel size {args.kernel_size})") from None
    periodic = () if boundary is None else tuple(
        a for a, (low, _) in enumerate(parse_boundary(boundary, ndim)) if low == "circular")
    return variants(boundary, args.orders), variants(boundary, args.orders, BAND_SPECS), periodic


def _run_transposed(args: argparse.Namespace) -> int:
    """``--transposed``: :func:`diffconv.lab.transpose_accuracy.transpose_accuracy`, table and JSON."""
    from ..transpose_accuracy import transpose_accuracy

    if args.data is not None or args.full:
        return _error("--transposed runs on built-in fields: it takes neither --data nor --full")
    if args.boundary is not None or args.orders or args.fields is not None:
        return _error("--transposed runs its own cases: it takes none of --boundary, --orders, --fields")
    start = time.perf_counter()
    rows, table = transpose_accuracy(sizes=(16,) if args.quick else (16, 32, 64))
    elapsed = time.perf_counter() - start
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy-transposed.txt").write_text(table + f"\n\ncomputed in {elapsed:.1f} s\n")
    (args.out / "accuracy-transposed.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\ncomputed in {elapsed:.1f} s; wrote {args.out / 'accuracy-transposed.txt'}, accuracy-transposed.json")
    return 0


def _run_block(block: Block, methods: dict[str, Callable[..., np.ndarray]], kernels: np.ndarray, before: int,
               per_channel: bool, bar: Any) -> Results:
    """The block's errors: ``{block.name: rows}``, and ``{block.name/part: rows}`` for its parts."""
    results: Results = {}
    for label, draw, rng in block.rows:
        bar.set_postfix_str(f"{block.name} {block.label.split()[-1]}={label}")
        fields = draw()
        # --data: one channel at a time bounds the memory to (1, kernels, *image) per method.
        chunks = [fields[c:c + 1] for c in range(len(fields))] if per_channel else [fields]
        errors = [region_errors(f, kernels, before, methods, rng, block.parts) for f in chunks]
        for region in errors[0]:
            name = block.name if region == "ring" else f"{block.name}/{region}"
            results.setdefault(name, {})[label] = {m: float(np.mean([e[region][m] for e in errors])) for m in methods}
        bar.update()
    if per_channel:
        for rows in results.values():
            rows[MEAN] = {m: float(np.mean([r[m] for r in rows.values()])) for m in methods}
    return results


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.transposed:
        return _run_transposed(args)
    from ..userdata import DataError, load_arrays, require_extent

    problem = _check_options(args)
    if problem:
        return _error(problem)
    k = args.kernel_size
    before, _ = ghost_widths(k)
    ndim = args.ndim or 2
    try:
        columns, band_columns, periodic = _columns(args, ndim)
    except ValueError as exc:
        return _error(str(exc))
    if args.data is not None:
        try:
            arrays = load_arrays(args.data, ndim, args.arrays)
            # The truth needs the k - 1 samples of the reach around the image, the image k to extrapolate from.
            require_extent(arrays, 2 * k - 1, f"a kernel of size {k} (k - 1 for the truth's reach, k for the image)",
                           args.data)
        except DataError as exc:
            return _error(str(exc))
        n_kernels = PRESETS["default"].kernels if args.kernels is None else args.kernels
        blocks = list(_data_blocks(arrays, args.seed, columns, periodic, k))
        header = [f"diffconv accuracy --data {args.data}: {n_kernels} random {'x'.join([str(k)] * ndim)} kernels "
                  f"N(0, 1), seed {args.seed}, DiffConv on {args.framework}",
                  "  each array is the whole grid; the image is its central crop (k - 1 samples fewer per axis), "
                  "the truth the VALID convolution of the whole array; channels are separate fields"]
        header += [f"  {a.name}: stored shape {a.shape}" for a in arrays]
        if periodic:
            header.append(f"  periodic (circular in --boundary) spatial axes {list(periodic)}: the image keeps all "
                          "of them, the truth wraps them")
    else:
        preset = "quick" if args.quick else "full" if args.full else "default"
        s = PRESETS[preset]
        fields = list(FIELDS) if args.fields is None else args.fields
        n_kernels = s.kernels if args.kernels is None else args.kernels
        if s.too_small(k, fields):
            return _error(f"--kernel-size {k} is too large for the {preset} sizes")
        blocks = list(_builtin_blocks(preset, k, fields, args.seed, columns, band_columns))
        kind = "the paper's sampling" if preset == "full" else "project sampling; --full: the paper's"
        header = [f"diffconv accuracy ({preset} sizes, {kind}): {n_kernels} random {k}x{k} kernels N(0, 1), "
                  f"seed {args.seed}, DiffConv on {args.framework}"]
        header += ["  " + line for line in s.describe(k) if line.split(":")[0] in fields]
    try:
        methods = {b.name: block_methods(b, args.framework) for b in blocks}
    except RuntimeError as exc:
        return _error(str(exc))

    kernels = np.random.default_rng(args.seed).standard_normal((n_kernels, 1) + (k,) * ndim)
    print("\n".join(header), flush=True)

    start = time.perf_counter()
    results: Results = {}
    with tqdm(total=sum(len(b.rows) for b in blocks), desc="accuracy", unit="field", file=sys.stderr,
              dynamic_ncols=True) as bar:
        for block in blocks:
            results.update(_run_block(block, methods[block.name], kernels, before, args.data is not None, bar))
    elapsed = time.perf_counter() - start

    labels = {name: b.label for b in blocks for name in results if name.split("/")[0] == b.name}
    table = format_table(results, labels)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.txt").write_text("\n".join(header) + "\n" + table + f"\n\ncomputed in {elapsed:.1f} s\n")
    (args.out / "accuracy.json").write_text(json.dumps(results, indent=1) + "\n")
    titles = {name: b.title + (f" ({name.split('/')[1]})" if "/" in name else "")
              for b in blocks for name in results if name.split("/")[0] == b.name}
    plot(results, titles, labels, args.out / "accuracy.png", k, ndim)
    print(f"\ncomputed in {elapsed:.1f} s; wrote {args.out / 'accuracy.txt'}, accuracy.json, accuracy.png")
    return 0
