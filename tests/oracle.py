"""An independent oracle for diffconv, written from the definitions alone.

Imports nothing from ``diffconv``. Every ghost weight is an exact :class:`~fractions.Fraction`
(Lagrange basis polynomials evaluated directly); the non-diff modes come from ``numpy.pad``
applied to an identity matrix (the modes are linear, so padding the identity gives the
padding matrix); the convolution is a plain loop over kernel taps. Channels-first arrays
``(N, C, *L)``, torch weight layouts. Sizes in tests are small; clarity beats speed here.

Conventions (the project's semantics):
- a size-keeping convolution of kernel ``k`` and dilation ``d`` pads ``((e-1)//2, e//2)``
  per axis, ``e = (k-1)*d + 1``; at stride ``s`` the output is the stride-1 output sampled
  every ``s``;
- a ``"diff"`` ghost at distance ``q`` outside an edge takes the value at its own position of
  the degree-``p`` polynomial (``p = order``, default ``k-1``) through the ``p+1`` samples
  nearest the edge on the ghost's own lattice (step ``d``); fewer samples on the lattice: all
  ``m`` of them; none: the edge sample;
- ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"`` are ``numpy.pad``'s
  ``constant``, ``reflect``, ``edge``, ``wrap``, each side on its own.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Sequence

import numpy as np

MODES = ("diff", "zeros", "reflect", "replicate", "circular")
_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# ----------------------------------------------------------------------------- arguments

def _tuple(v, nd: int) -> tuple:
    if isinstance(v, (int, np.integer)) or v is None:
        return (v,) * nd
    v = tuple(v)
    if len(v) != nd:
        raise ValueError(f"expected one value or {nd}, got {v!r}")
    return v


def parse_boundary(spec, nd: int) -> tuple[tuple[str, str], ...]:
    """A boundary spec as ``nd`` ``(low, high)`` pairs: one mode for all, or one entry per axis,
    each a mode or a ``(low, high)`` pair. An axis is circular on both sides or on neither."""
    if isinstance(spec, str):
        pairs = [(spec, spec)] * nd
    else:
        entries = list(spec)
        if len(entries) != nd:
            raise ValueError(f"boundary needs 1 mode or {nd} entries, got {spec!r}")
        pairs = [(e, e) if isinstance(e, str) else tuple(e) for e in entries]
    for a, pair in enumerate(pairs):
        if len(pair) != 2 or any(m not in MODES for m in pair):
            raise ValueError(f"bad boundary entry {pair!r} on axis {a}")
        if (pair[0] == "circular") != (pair[1] == "circular"):
            raise ValueError(f"axis {a} is circular on one side only")
    return tuple(tuple(p) for p in pairs)


def parse_order(order, nd: int, max_orders: Sequence[int]) -> tuple:
    orders = _tuple(order, nd)
    for a, (p, top) in enumerate(zip(orders, max_orders)):
        if p is not None and not 0 <= p <= top:
            raise ValueError(f"order {p} out of range 0..{top} on axis {a}")
    return orders


def same_widths(k: int, d: int = 1) -> tuple[int, int]:
    """``((e-1)//2, e//2)`` with ``e = (k-1)*d + 1``."""
    e = (k - 1) * d + 1
    return (e - 1) // 2, e // 2


# ----------------------------------------------------------------------------- ghosts

def lagrange_weights(nodes: Sequence[int], x) -> list[Fraction]:
    """``[L_j(x)]``: the Lagrange basis polynomials on ``nodes`` at ``x``, exactly."""
    out = []
    for j, xj in enumerate(nodes):
        w = Fraction(1)
        for i, xi in enumerate(nodes):
            if i != j:
                w *= Fraction(x - xi, xj - xi)
        out.append(w)
    return out


def ghost_row(k: int, d: int, q: int, length: int, order: int | None = None) -> list[Fraction]:
    """Weights of the ``"diff"`` ghost at distance ``q >= 1`` outside an edge over the ``length``
    samples of the axis counted inward from that edge (``u0`` is the edge sample).

    Nodes: the ``min(p+1, m)`` lattice samples nearest the edge, where the ghost's lattice is
    the positions congruent to ``-q`` modulo ``d`` and ``m`` is how many of them lie in
    ``[0, length)``; ``p = order`` (``None``: ``k-1``). No lattice sample: the edge sample."""
    assert q >= 1 and length >= 1 and d >= 1
    p = k - 1 if order is None else order
    r = (-q) % d
    lattice = list(range(r, length, d))
    row = [Fraction(0)] * length
    if not lattice:
        row[0] = Fraction(1)
        return row
    nodes = lattice[:min(p + 1, len(lattice))]
    for i, w in zip(nodes, lagrange_weights(nodes, -q)):
        row[i] = w
    return row


def ghost_amplification(k: int, d: int = 1, order: int | None = None) -> float:
    """The largest l2 norm of a size-keeping convolution's ghost weight row (long axis)."""
    width = max(same_widths(k, d)) or 1
    length = (k + 1) * d + width
    return max(math.sqrt(sum(float(w) ** 2 for w in ghost_row(k, d, q, length, order)))
               for q in range(1, width + 1))


def pad_matrix(length: int, before: int, after: int, modes: tuple[str, str] = ("diff", "diff"),
               k: int = 1, d: int = 1, order: int | None = None) -> list[list[Fraction]]:
    """The ``(before + length + after, length)`` matrix of one axis's padding, exact.

    Row ``t`` gives padded position ``t - before`` as a combination of the samples."""
    low, high = modes
    if "circular" in modes and low != high:
        raise ValueError("an axis is circular on both sides or on neither")
    eye = np.eye(length, dtype=np.int64)
    rows: list[list[Fraction]] = []
    for q in range(before, 0, -1):                           # low ghosts, outermost first
        if low == "diff":
            rows.append(ghost_row(k, d, q, length, order))
        else:
            rows.append([Fraction(int(v)) for v in _np_side(eye, before, 0, low)[before - q]])
    for i in range(length):
        rows.append([Fraction(int(v)) for v in eye[i]])
    for q in range(1, after + 1):                            # high ghosts, innermost first
        if high == "diff":
            rows.append(ghost_row(k, d, q, length, order)[::-1])   # counted inward from the high edge
        else:
            rows.append([Fraction(int(v)) for v in _np_side(eye, 0, after, high)[length + q - 1]])
    return rows


def _np_side(eye: np.ndarray, before: int, after: int, mode: str) -> np.ndarray:
    length = eye.shape[0]
    width = before + after
    if mode == "reflect" and width > length - 1:
        raise ValueError(f"reflect needs more than {width} samples, the axis has {length}")
    if mode == "circular" and width > length:
        raise ValueError(f"circular needs at least {width} samples, the axis has {length}")
    return np.pad(eye, ((before, after), (0, 0)), mode=_NUMPY_MODE[mode])


def _apply_axis(x: np.ndarray, mat: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(np.tensordot(mat, x, axes=([1], [axis])), 0, axis)


def _to_exact(a: np.ndarray) -> np.ndarray:
    return np.vectorize(Fraction, otypes=[object])(np.asarray(a, dtype=np.float64))


def _weights_array(rows, exact: bool) -> np.ndarray:
    if exact:
        return np.array(rows, dtype=object)
    return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)


def pad(x: np.ndarray, widths, modes="diff", kernel_sizes=1, dilations=1, orders=None,
        exact: bool = False) -> np.ndarray:
    """Pad the spatial axes of ``x`` ``(N, C, *L)``: ``widths`` one ``(before, after)`` per axis,
    ``modes`` a boundary spec (see :func:`parse_boundary`), ``"diff"`` ghosts of kernel size,
    dilation (lattice step) and order per axis. Axis after axis (they commute).

    ``exact``: ``x`` given as float or Fraction, the result an object array of Fractions;
    otherwise float64 with the (integer, exactly representable) weights applied in float64."""
    x = np.asarray(x)
    nd = x.ndim - 2
    widths = [tuple(w) for w in widths]
    assert len(widths) == nd
    pairs = parse_boundary(modes, nd)
    ks, ds, ps = _tuple(kernel_sizes, nd), _tuple(dilations, nd), _tuple(orders, nd)
    x = (x if x.dtype == object else _to_exact(x)) if exact else np.asarray(x, dtype=np.float64)
    for a in range(nd):
        (b, e), length = widths[a], x.shape[2 + a]
        rows = pad_matrix(length, b, e, pairs[a], ks[a], ds[a], ps[a])
        x = _apply_axis(x, _weights_array(rows, exact), 2 + a)
    return x


# ----------------------------------------------------------------------------- convolutions

def valid_conv(xp: np.ndarray, w: np.ndarray, stride=1, dilation=1, groups: int = 1) -> np.ndarray:
    """VALID cross-correlation, channels-first, weight ``(O, C/groups, *k)``, no bias."""
    nd = xp.ndim - 2
    s, d = _tuple(stride, nd), _tuple(dilation, nd)
    n, c = xp.shape[:2]
    o, cg = w.shape[:2]
    ks = w.shape[2:]
    assert c == cg * groups and o % groups == 0
    og = o // groups
    outl = [(xp.shape[2 + a] - (ks[a] - 1) * d[a] - 1) // s[a] + 1 for a in range(nd)]
    assert all(L >= 1 for L in outl), "input shorter than the dilated kernel"
    out = np.zeros((n, o, *outl), dtype=np.result_type(xp.dtype, w.dtype))
    for taps in itertools.product(*(range(k) for k in ks)):
        sl = tuple(slice(t * d[a], t * d[a] + (outl[a] - 1) * s[a] + 1, s[a]) for a, t in enumerate(taps))
        xs = xp[(slice(None), slice(None)) + sl]                          # (N, C, *outl)
        for g in range(groups):
            wt = w[(slice(g * og, (g + 1) * og), slice(None)) + taps]     # (og, cg)
            part = np.tensordot(wt, xs[:, g * cg:(g + 1) * cg], axes=([1], [1]))   # (og, N, *outl)
            out[:, g * og:(g + 1) * og] += np.moveaxis(part, 0, 1)
    return out


def _add_bias(y: np.ndarray, bias) -> np.ndarray:
    if bias is None:
        return y
    b = _to_exact(bias) if y.dtype == object else np.asarray(bias, dtype=np.float64)
    return y + b.reshape((1, -1) + (1,) * (y.ndim - 2))


def boundary_mask(lengths, kernel_sizes, strides=1, dilations=1, modes="diff") -> np.ndarray:
    """Boolean over the output grid: outputs whose window reaches a ghost on a non-circular side."""
    nd = len(lengths)
    ks, s, d = _tuple(kernel_sizes, nd), _tuple(strides, nd), _tuple(dilations, nd)
    pairs = parse_boundary(modes, nd)
    axes = []
    for a in range(nd):
        before, after = same_widths(ks[a], d[a])
        pos = np.arange(0, lengths[a], s[a])
        low = (pos < before) if pairs[a][0] != "circular" else np.zeros(len(pos), bool)
        high = (pos + after > lengths[a] - 1) if pairs[a][1] != "circular" else np.zeros(len(pos), bool)
        axes.append(low | high)
    mask = np.zeros([len(m) for m in axes], bool)
    for a, m in enumerate(axes):
        mask |= m.reshape([-1 if i == a else 1 for i in range(nd)])
    return mask


def diff_conv(x, w, bias=None, stride=1, dilation=1, groups: int = 1, boundary="diff", order=None,
              edge_weight=None, edge_bias=None, boundary_input_grad: bool = True, exact: bool = False) -> np.ndarray:
    """The forward value of a size-keeping padding-free convolution (float64).

    ``edge_weight``/``edge_bias`` (each defaulting to ``weight``/``bias`` when the other is
    given) apply to outputs whose window reaches a ghost on a non-circular side.
    ``boundary_input_grad`` changes gradients only; accepted for signature parity."""
    x, w = np.asarray(x), np.asarray(w)
    nd = x.ndim - 2
    ks = w.shape[2:]
    s, d = _tuple(stride, nd), _tuple(dilation, nd)
    orders = parse_order(order, nd, [k - 1 for k in ks])
    widths = [same_widths(ks[a], d[a]) for a in range(nd)]
    xp = pad(x, widths, boundary, ks, d, orders, exact=exact)
    wx = _to_exact(w) if exact else w.astype(np.float64)
    y = _add_bias(valid_conv(xp, wx, s, d, groups), bias)
    if edge_weight is not None or edge_bias is not None:
        ew = w if edge_weight is None else np.asarray(edge_weight)
        eb = bias if edge_bias is None else edge_bias
        ewx = _to_exact(ew) if exact else ew.astype(np.float64)
        ye = _add_bias(valid_conv(xp, ewx, s, d, groups), eb)
        mask = boundary_mask(x.shape[2:], ks, s, d, boundary)
        y = np.where(mask, ye, y)
    return y.astype(np.float64)


def transpose_lattice(k: int, s: int, d: int) -> tuple[int, int]:
    """``(m, d')`` of a transposed convolution's ghosts: ``m = ceil(k*g/s)`` nodes on a lattice
    of step ``d' = d/g``, ``g = gcd(s, d)``."""
    g = math.gcd(s, d)
    return -(-k * g // s), d // g


def conv_transpose(x, w, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1,
                   boundary="diff", order=None, exact: bool = False) -> np.ndarray:
    """``F.conv_transposeNd`` (weight ``(C, O/groups, *k)``) where the sum also runs over input
    positions outside ``[0, L)`` that it reaches: ghosts by the transposed rule."""
    x, w = np.asarray(x), np.asarray(w)
    nd = x.ndim - 2
    ks = w.shape[2:]
    s, p, op, d = (_tuple(v, nd) for v in (stride, padding, output_padding, dilation))
    lat = [transpose_lattice(ks[a], s[a], d[a]) for a in range(nd)]
    orders = parse_order(order, nd, [m - 1 for m, _ in lat])
    L = x.shape[2:]
    outl = [(L[a] - 1) * s[a] - 2 * p[a] + d[a] * (ks[a] - 1) + op[a] + 1 for a in range(nd)]
    widths = []
    for a in range(nd):
        # input positions i reached: o = i*s - p + j*d in [0, outl) for some tap j
        imin = -((-(p[a] - (ks[a] - 1) * d[a])) // s[a])      # ceil
        imax = (outl[a] - 1 + p[a]) // s[a]
        widths.append((max(0, -imin), max(0, imax - (L[a] - 1))))
    xe = pad(x, widths, boundary, [m for m, _ in lat], [dd for _, dd in lat], orders, exact=exact)
    wx = _to_exact(w) if exact else w.astype(np.float64)
    n, c = x.shape[:2]
    cg = c // groups
    og = w.shape[1]
    ext = xe.shape[2:]
    big_l = [max((ext[a] - 1) * s[a] + (ks[a] - 1) * d[a] + 1, widths[a][0] * s[a] + p[a] + outl[a])
             for a in range(nd)]
    big = np.zeros((n, og * groups, *big_l), dtype=object if exact else np.float64)
    for taps in itertools.product(*(range(k) for k in ks)):
        sl = tuple(slice(t * d[a], t * d[a] + (ext[a] - 1) * s[a] + 1, s[a]) for a, t in enumerate(taps))
        for g in range(groups):
            wt = wx[(slice(g * cg, (g + 1) * cg), slice(None)) + taps]            # (cg, og)
            part = np.tensordot(wt, xe[:, g * cg:(g + 1) * cg], axes=([0], [1]))  # (og, N, *ext)
            big[(slice(None), slice(g * og, (g + 1) * og)) + sl] += np.moveaxis(part, 0, 1)
    crop = tuple(slice(widths[a][0] * s[a] + p[a], widths[a][0] * s[a] + p[a] + outl[a]) for a in range(nd))
    y = big[(slice(None), slice(None)) + crop]
    assert y.shape[2:] == tuple(outl)
    return _add_bias(y, bias).astype(np.float64)


# ----------------------------------------------------------------------------- dependencies

def dependency_axis(length: int, k: int, stride: int = 1, dilation: int = 1, modes=("diff", "diff"),
                    order: int | None = None) -> np.ndarray:
    """Boolean ``(ceil(length/stride), length)``: which samples of one axis each output of a
    size-keeping convolution reads, directly or through a ghost with a nonzero weight on it."""
    b, e = same_widths(k, dilation)
    rows = np.array([[v != 0 for v in r] for r in pad_matrix(length, b, e, tuple(modes), k, dilation, order)])
    outs = range(0, length, stride)
    return np.array([np.any(rows[[o + t * dilation for t in range(k)]], axis=0) for o in outs])


def dependency(lengths, kernel_sizes, position, strides=1, dilations=1, boundary="diff", order=None) -> np.ndarray:
    """Boolean over the output grid: outputs that read input ``position`` (with all weights
    nonzero). Separable: an output reads a sample iff it reads it along every axis."""
    nd = len(lengths)
    ks, s, d = _tuple(kernel_sizes, nd), _tuple(strides, nd), _tuple(dilations, nd)
    pairs = parse_boundary(boundary, nd)
    orders = parse_order(order, nd, [k - 1 for k in ks])
    mask = None
    for a in range(nd):
        col = dependency_axis(lengths[a], ks[a], s[a], d[a], pairs[a], orders[a])[:, position[a]]
        col = col.reshape([-1 if i == a else 1 for i in range(nd)])
        mask = col if mask is None else mask & col
    return mask
