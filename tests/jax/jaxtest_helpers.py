"""Shared helpers of the JAX tests (a uniquely named module: test directories share sys.path).

``truth_conv`` is an independent statement of docs/design.md, written here from the text and not
calling diffconv: ghost widths ``((e-1)//2, e//2)``, each ghost the Lagrange polynomial through
the samples of its own dilation lattice nearest its edge (exact fractions; at most ``k`` of them,
all of them on a short axis, the edge sample on an empty lattice), axes extended one after the
other, then an unpadded convolution in float64.
"""

from fractions import Fraction

import jax.numpy as jnp
import numpy as np
from jax import lax

import oracle


def to_torch_kernel(k: np.ndarray) -> np.ndarray:
    """Flax ``(*k, in/g, out)`` -> ``(out, in/g, *k)``."""
    return np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2)))


def oracle_cl(x, kernel, bias=None, strides=1, dilation=1, groups=1, edge_kernel=None, edge_bias=None):
    """:func:`oracle.diff_conv` (the padding and VALID convolution written in the tests) channels-last."""
    y = oracle.diff_conv(
        np.moveaxis(np.asarray(x, np.float64), -1, 1), to_torch_kernel(np.asarray(kernel, np.float64)),
        None if bias is None else np.asarray(bias, np.float64), strides, dilation, groups,
        edge_weight=None if edge_kernel is None else to_torch_kernel(np.asarray(edge_kernel, np.float64)),
        edge_bias=None if edge_bias is None else np.asarray(edge_bias, np.float64),
    )
    return np.moveaxis(y, 1, -1)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def widths(k: int, d: int) -> tuple[int, int]:
    """docs/design.md: ``e = (k-1)*d + 1`` ghosts ``(e-1)//2`` before and ``e//2`` after."""
    e = (k - 1) * d + 1
    return (e - 1) // 2, e // 2


def _low_ghost(length: int, k: int, d: int, q: int) -> dict[int, Fraction]:
    """Weights over the samples for the ghost ``q`` steps before sample 0."""
    r = (-q) % d                                         # the ghost's lattice: r, r+d, ...
    nodes = list(range(r, length, d))[:k]
    if not nodes:
        return {0: Fraction(1)}                          # empty lattice: the edge sample
    t = Fraction(-q - r, d)                              # the ghost in lattice steps from node 0
    out = {}
    for j, node in enumerate(nodes):
        w = Fraction(1)
        for i in range(len(nodes)):
            if i != j:
                w *= (t - i) / (j - i)
        out[node] = w
    return out


def extension_matrix(length: int, k: int, d: int, before: int, after: int) -> np.ndarray:
    """``E`` ``(before + length + after, length)``: the ghost-extended axis is ``E @ x``."""
    e = np.zeros((before + length + after, length))
    for q in range(1, before + 1):
        for node, w in _low_ghost(length, k, d, q).items():
            e[before - q, node] = float(w)
    e[before:before + length] = np.eye(length)
    for q in range(1, after + 1):                        # the high edge is the low edge of the reversed axis
        for node, w in _low_ghost(length, k, d, q).items():
            e[before + length - 1 + q, length - 1 - node] = float(w)
    return e


def extend(x: np.ndarray, ks, ds, pads=None) -> np.ndarray:
    """Channels-last ``x`` ``(N, *L, C)`` ghost-extended along every spatial axis, one after the other."""
    out = np.asarray(x, np.float64)
    for a, (k, d) in enumerate(zip(ks, ds)):
        lo, hi = widths(k, d) if pads is None else pads[a]
        m = extension_matrix(out.shape[1 + a], k, d, lo, hi)
        out = np.moveaxis(np.tensordot(m, out, axes=([1], [1 + a])), 0, 1 + a)
    return out


def valid_conv_np(ext: np.ndarray, kernel: np.ndarray, strides, ds, groups: int = 1) -> np.ndarray:
    """Unpadded convolution in NumPy float64, channels-last: ``out[i] = sum_j ext[i*s + j*d] @ kernel[j]``."""
    nd = kernel.ndim - 2
    ks = kernel.shape[:nd]
    outs = [(n - (k - 1) * d - 1) // s + 1 for n, k, d, s in zip(ext.shape[1:-1], ks, ds, strides)]
    cin, cout = kernel.shape[-2], kernel.shape[-1] // groups
    y = np.zeros((ext.shape[0], *outs, kernel.shape[-1]))
    for tap in np.ndindex(*ks):
        sl = tuple(slice(j * d, j * d + (o - 1) * s + 1, s) for j, d, o, s in zip(tap, ds, outs, strides))
        part = ext[(slice(None), *sl)]
        for g in range(groups):
            outs_g = slice(g * cout, (g + 1) * cout)
            y[..., outs_g] += part[..., g * cin:(g + 1) * cin] @ kernel[tap][:, outs_g]
    return y


_SPEC = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def boundary_mask(lengths, ks, strides, ds) -> np.ndarray:
    """Outputs whose window reaches a ghost: output ``i`` reads extended positions ``i*s + j*d``."""
    mask = np.zeros([-(-n // s) for n, s in zip(lengths, strides)], dtype=bool)
    for a, (n, k, s, d) in enumerate(zip(lengths, ks, strides, ds)):
        lo, _ = widths(k, d)
        first = np.arange(mask.shape[a]) * s                 # extended position of tap 0
        hit = (first < lo) | (first + (k - 1) * d >= lo + n)
        mask |= hit.reshape([-1 if b == a else 1 for b in range(len(lengths))])
    return mask


def truth_conv(x, kernel, bias=None, strides=1, dilation=1, groups=1, edge_kernel=None, edge_bias=None,
               boundary_input_grad=True):
    """The truth in ``jax.numpy`` (differentiable, float64 under ``enable_x64``), ``x`` ``(N, *L, C)``.

    The extension is a constant matrix per axis, so gradients of the truth come from JAX's
    autodiff of an unpadded convolution; ``boundary_input_grad=False`` stops the input's
    gradient through the boundary outputs.
    """
    nd = kernel.ndim - 2
    ks = kernel.shape[:nd]
    st = (strides,) * nd if isinstance(strides, int) else tuple(strides)
    ds = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    lengths = x.shape[1:-1]
    mats = [jnp.asarray(extension_matrix(n, k, d, *widths(k, d))) for n, k, d in zip(lengths, ks, ds)]

    def ext(v):
        for a, m in enumerate(mats):
            v = jnp.moveaxis(jnp.tensordot(m, v, axes=([1], [1 + a]), precision=lax.Precision.HIGHEST), 0, 1 + a)
        return v

    def run(v, k, b):
        y = lax.conv_general_dilated(ext(v), k, st, "VALID", rhs_dilation=ds, dimension_numbers=_SPEC[nd],
                                     feature_group_count=groups, precision=lax.Precision.HIGHEST)
        return y if b is None else y + b

    y = run(x, kernel, bias)
    special = edge_kernel is not None or edge_bias is not None or not boundary_input_grad
    if not special:
        return y
    mask = jnp.asarray(boundary_mask(lengths, ks, st, ds)[None, ..., None])
    xb = x if boundary_input_grad else lax.stop_gradient(x)
    y_edge = run(xb, kernel if edge_kernel is None else edge_kernel, bias if edge_bias is None else edge_bias)
    return jnp.where(mask, y_edge, y)
