"""``diffconv parity``: torch vs JAX outputs and gradients through the public APIs, pass/fail."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import numpy as np

# name -> conv keyword options (groups / bias / edge parameters / boundary switch / stride / dilation)
OPTION_SETS: dict[str, dict[str, Any]] = {
    "plain": dict(groups=1, bias=True, edge=False, bgrad=True, stride=1, dilation=1),
    "groups": dict(groups=2, bias=False, edge=False, bgrad=True, stride=1, dilation=1),
    "edge": dict(groups=1, bias=True, edge=True, bgrad=True, stride=1, dilation=1),
    "no-boundary-grad": dict(groups=1, bias=True, edge=False, bgrad=False, stride=1, dilation=1),
    "stride": dict(groups=1, bias=True, edge=False, bgrad=True, stride=2, dilation=1),
    "dilation": dict(groups=2, bias=True, edge=True, bgrad=False, stride=1, dilation=2),
}
QUANTITIES = ("out", "x", "kernel", "bias", "edge_kernel", "edge_bias")
DEFAULT_TOL = {"float64": 1e-10, "float32": 1e-5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2], choices=[1, 2, 3], help="spatial dims (default 1 2)")
    parser.add_argument("--kernel-sizes", type=int, nargs="+", default=[2, 3, 5], help="kernel sizes (default 2 3 5)")
    parser.add_argument("--options", nargs="+", default=list(OPTION_SETS), choices=list(OPTION_SETS),
                        help="option sets to run (default: all)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--device", default="cpu", help="torch device (JAX uses its default backend)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=12, help="spatial side length (default 12)")
    parser.add_argument("--channels", type=int, default=4, help="input and output channels (even; default 4)")
    parser.add_argument("--tol", type=float, default=None, help="relative tolerance (default 1e-10 float64, 1e-5 float32)")
    parser.add_argument("--seed", type=int, default=0)


def compare_case(nd: int, k: int, opts: dict[str, Any], *, dtype: str, device: str, batch: int, size: int,
                 channels: int, seed: int) -> dict[str, float]:
    """Largest ``|torch - jax| / max|torch|`` of the output and of each gradient, for one case."""
    import jax
    import jax.numpy as jnp
    import torch

    import diffconv.jax as djax
    from diffconv.torch import functional as DF

    rng = np.random.default_rng(seed)
    g = opts["groups"]
    shape_x = (batch, channels) + tuple(size + a for a in range(nd))     # torch layout, non-square
    w = rng.standard_normal((channels, channels // g) + (k,) * nd)
    arrays = {
        "x": rng.standard_normal(shape_x),
        "kernel": w,
        "bias": rng.standard_normal(channels) if opts["bias"] else None,
        "edge_kernel": rng.standard_normal(w.shape) if opts["edge"] else None,
        "edge_bias": rng.standard_normal(channels) if opts["edge"] and opts["bias"] else None,
    }
    arrays = {n: None if a is None else a.astype(dtype) for n, a in arrays.items()}
    names = [n for n, a in arrays.items() if a is not None]

    # torch, channels-first
    tt = {n: torch.tensor(arrays[n], device=device, requires_grad=True) for n in names}
    conv_t = {1: DF.conv1d, 2: DF.conv2d, 3: DF.conv3d}[nd]
    out_t = conv_t(tt["x"], tt["kernel"], tt.get("bias"), opts["stride"], opts["dilation"], g,
                   edge_weight=tt.get("edge_kernel"), edge_bias=tt.get("edge_bias"), boundary_input_grad=opts["bgrad"])
    cot = rng.standard_normal(tuple(out_t.shape)).astype(dtype)
    out_t.backward(torch.tensor(cot, device=device))
    res_t = {"out": out_t.detach().cpu().numpy()}
    # torch leaves .grad None for a parameter no output used (every output at the border)
    res_t.update({n: np.zeros_like(arrays[n]) if tt[n].grad is None else tt[n].grad.cpu().numpy() for n in names})

    # JAX, channels-last: move channels last, kernels to (*k, in/groups, out)
    def to_jax(n: str, a: np.ndarray) -> np.ndarray:
        if n == "x":
            return np.moveaxis(a, 1, -1)
        if n in ("kernel", "edge_kernel"):
            return np.transpose(a, tuple(range(2, a.ndim)) + (1, 0))
        return a

    def from_jax(n: str, a: np.ndarray) -> np.ndarray:
        if n in ("x", "out"):
            return np.moveaxis(a, -1, 1)
        if n in ("kernel", "edge_kernel"):
            return np.transpose(a, (a.ndim - 1, a.ndim - 2) + tuple(range(a.ndim - 2)))
        return a

    with jax.enable_x64(dtype == "float64"):
        args = {n: jnp.asarray(to_jax(n, arrays[n])) for n in names}

        def f(a: dict[str, Any]) -> Any:
            return djax.conv(a["x"], a["kernel"], a.get("bias"), strides=opts["stride"], dilation=opts["dilation"],
                             feature_group_count=g, edge_kernel=a.get("edge_kernel"), edge_bias=a.get("edge_bias"),
                             boundary_input_grad=opts["bgrad"])

        @jax.jit
        def fwd_bwd(a: dict[str, Any], ct: Any) -> Any:
            out, vjp = jax.vjp(f, a)
            return out, vjp(ct)[0]

        out_j, grads_j = fwd_bwd(args, jnp.asarray(np.moveaxis(cot, 1, -1)))
        res_j = {"out": from_jax("out", np.asarray(out_j))}
        res_j.update({n: from_jax(n, np.asarray(grads_j[n])) for n in names})

    return {
        q: float(np.abs(res_t[q] - res_j[q]).max() / max(np.abs(res_t[q]).max(), np.finfo(dtype).tiny))
        for q in QUANTITIES if q in res_t
    }


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    tol = DEFAULT_TOL[args.dtype] if args.tol is None else args.tol
    if args.channels < 2 or args.channels % 2:
        raise SystemExit(f"--channels must be an even int >= 2, got {args.channels}")
    cases = list(itertools.product(args.dims, args.kernel_sizes, args.options))
    rows = []
    for nd, k, name in tqdm(cases, desc="parity", unit="case", leave=False):
        opts = OPTION_SETS[name]
        size = max(args.size, k * opts["dilation"])
        diffs = compare_case(nd, k, opts, dtype=args.dtype, device=args.device, batch=args.batch, size=size,
                             channels=args.channels, seed=args.seed)
        rows.append((nd, k, name, diffs))
    header = f"{'dims':>4} {'k':>2} {'options':<17}" + "".join(f"{q:>12}" for q in QUANTITIES) + "  status"
    print(f"torch vs JAX, {args.dtype}, relative to each quantity's largest magnitude; tolerance {tol:.0e}")
    print(header)
    failed = 0
    for nd, k, name, diffs in rows:
        worst = max(diffs.values())
        ok = worst <= tol
        failed += not ok
        cells = "".join(f"{diffs[q]:>12.2e}" if q in diffs else f"{'-':>12}" for q in QUANTITIES)
        print(f"{nd:>4} {k:>2} {name:<17}{cells}  {'ok' if ok else 'FAIL'}")
    print(f"{len(rows) - failed}/{len(rows)} cases within tolerance")
    return 1 if failed else 0
