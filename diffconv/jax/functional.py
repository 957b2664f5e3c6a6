"""Padding-free convolution for JAX (channels-last ``(N, *L, C)``, kernels ``(*k, C/groups, O)``).

The input is padded with its ghosts (:func:`._ghosts.ghost_pad`; each axis's ghosts by its
:class:`diffconv.boundary.GhostOperator`: Lagrange ghosts by default, any boundary mode and order)
and convolved once, unpadded, so a layer holds the convolutions of a zero-padded one: one in the
forward pass and the two that autodiff derives for the backward pass. With an edge kernel or the boundary
gradient switch, the outputs whose window reaches a ghost (thin boxes along each border,
:func:`diffconv.plan.boundary_boxes`) are recomputed from the padded input.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import as_tuple, check_float_dtype
from ..boundary import BoundarySpec, GhostOperator, ghost_operator, parse_order
from ..plan import AxisPlan, axis_plan, boundary_boxes, window
from ._ghosts import ghost_pad, with_crop_row
from ._validate import check_array, validate_conv_args

__all__ = ["conv", "lagrange_pad"]

_DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


def uses_extra_row(nd: int) -> bool:
    """Whether this backend's convolutions read one extra ghost row (the one per-backend choice).

    XLA:CPU hands 2-d convolutions to YNNPACK, which runs one with no padding at all several
    times slower than the same convolution with some (docs/benchmarks.md). So on the CPU the
    padded input gets one more ghost row at the end of the first spatial axis, and the
    convolution a padding of -1 there, which crops it again: the same sums, the fast path.
    Other backends convolve the padded input as it is.
    """
    return nd == 2 and jax.default_backend() == "cpu"


def _valid(
    lhs: jax.Array, rhs: jax.Array, strides: tuple[int, ...], dils: tuple[int, ...], groups: int, precision: Any,
    extra_row: bool,
) -> jax.Array:
    """The unpadded convolution of the ghost-padded ``lhs`` (with ``extra_row``: but for the
    last row of its first spatial axis)."""
    nd = len(strides)
    padding = [(0, -1 if extra_row and a == 0 else 0) for a in range(nd)]
    return lax.conv_general_dilated(
        lhs, rhs, strides, padding, rhs_dilation=dils, dimension_numbers=_DIMENSION_NUMBERS[nd],
        feature_group_count=groups, precision=precision,
    )


Modes = tuple[tuple[str, str], ...]
Orders = tuple[Any, ...]


def _plans(lengths: Sequence[int], kernel_sizes: Sequence[int], dils: Sequence[int], strides: Sequence[int],
           modes: Modes) -> list[AxisPlan]:
    """One plan per spatial axis; a circular axis has no boundary outputs."""
    return [axis_plan(n, k, d, s, periodic=m[0] == "circular")
            for n, k, d, s, m in zip(lengths, kernel_sizes, dils, strides, modes)]


def _ghost_operators(plans: Sequence[AxisPlan], modes: Modes, orders: Orders, extra_row: bool) -> list[GhostOperator]:
    """Each spatial axis's :class:`~diffconv.boundary.GhostOperator` (with ``extra_row``: one more
    ghost after the first axis, cropped by the convolution). Raises ``ValueError`` for reflect or
    circular on an axis too short for them."""
    ops = [ghost_operator(p.length, p.kernel_size, p.dilation, p.before, p.after, m, o, a)
           for a, (p, m, o) in enumerate(zip(plans, modes, orders))]
    if extra_row:
        ops[0] = with_crop_row(ops[0])
    return ops


def conv(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    strides: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    feature_group_count: int = 1,
    edge_kernel: jax.Array | None = None,
    edge_bias: jax.Array | None = None,
    boundary_input_grad: bool = True,
    boundary: BoundarySpec = "diff",
    order: int | Sequence[int | None] | None = None,
    precision: Any = None,
) -> jax.Array:
    """Size-keeping padding-free convolution, 1-3 spatial dims (from the kernel's rank).

    x: ``(N, *L, C)`` or unbatched ``(*L, C)``, any ``L >= 1``; kernel: ``(*k, C/groups, O)``
    (Flax layout); bias, edge_bias: ``(O,)``; edge_kernel: like ``kernel``. Returns
    ``(N, *ceil(L/strides), O)``. Like ``padding='SAME'`` at stride 1 (ghost widths
    ``((e-1)//2, e//2)``, ``e`` the dilated kernel extent), but the border sees Lagrange ghosts
    instead of zeros (lower-order ones on axes shorter than ``k*dilation``); stride ``s`` gives
    the stride-1 result sampled every ``s``. Outputs whose window reaches a ghost use
    ``edge_kernel``/``edge_bias`` when given and pass no gradient to ``x`` when
    ``boundary_input_grad=False``.

    ``boundary``: one mode for every side, or one entry per spatial axis (``(H, W)`` order), each
    a mode or a ``(low, high)`` pair; modes ``"diff"`` (the ghosts above), ``"zeros"``,
    ``"reflect"``, ``"replicate"``, ``"circular"`` (both sides of an axis). ``order``: the degree
    of the ``"diff"`` ghosts, ``0 .. k-1`` (an int or one per axis; ``None``: ``k-1``). Outputs
    whose window reaches a ghost on a circular axis are not boundary outputs (docs/design.md).
    """
    nd, strides_t, dils, modes, orders = validate_conv_args(
        x, kernel, bias, edge_kernel, edge_bias, strides, dilation, feature_group_count, boundary_input_grad, precision,
        boundary, order,
    )
    extra_row = uses_extra_row(nd)
    # Built here too (cached), so that reflect/circular on a too-short axis fails outside jit.
    _ghost_operators(_plans(x.shape[x.ndim - nd - 1:-1], kernel.shape[:nd], dils, strides_t, modes), modes, orders,
                    extra_row)
    special = edge_kernel is not None or edge_bias is not None or not boundary_input_grad
    # The plain layer's bias is added outside the jitted program: added inside it, XLA:CPU held
    # an extra input-sized buffer in a UNet's training step (1.09x the memory of zero padding
    # against 1.03x).
    out = conv_with_layout(
        x, kernel, bias if special else None, edge_kernel, edge_bias, nd=nd, strides=strides_t, dils=dils,
        groups=feature_group_count, boundary_input_grad=boundary_input_grad, precision=precision,
        extra_row=extra_row, modes=modes, orders=orders,
    )
    return out if special or bias is None else out + jnp.asarray(bias)


# One compiled program per configuration also when called eagerly (e.g. by Flax's ``init``);
# inside an outer jit/grad/vmap it is simply inlined. ``extra_row`` is static so that both
# layouts can be run (and tested) on any backend.
@functools.partial(
    jax.jit, static_argnames=("nd", "strides", "dils", "groups", "boundary_input_grad", "precision", "extra_row",
                              "modes", "orders")
)
def conv_with_layout(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None,
    edge_kernel: jax.Array | None,
    edge_bias: jax.Array | None,
    *,
    nd: int,
    strides: tuple[int, ...],
    dils: tuple[int, ...],
    groups: int,
    boundary_input_grad: bool,
    precision: Any,
    extra_row: bool,
    modes: Modes | None = None,
    orders: Orders | None = None,
) -> jax.Array:
    """:func:`conv` after validation, with the backend layout ``extra_row`` (:func:`uses_extra_row`)
    given; ``modes`` one ``(low, high)`` pair and ``orders`` one order per spatial axis, as
    :func:`diffconv.boundary.parse_boundary`/``parse_order`` return them (``None``: the default)."""
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    modes = (("diff", "diff"),) * nd if modes is None else modes
    orders = (None,) * nd if orders is None else orders
    plans = _plans(x.shape[1:-1], kernel.shape[:nd], dils, strides, modes)
    run = functools.partial(_valid, strides=strides, dils=dils, groups=groups, precision=precision,
                            extra_row=extra_row)
    padded = ghost_pad(x, range(1, 1 + nd), _ghost_operators(plans, modes, orders, extra_row))
    out = run(padded, kernel)
    if bias is not None:
        out = out + jnp.asarray(bias)
    if edge_kernel is None and edge_bias is None and boundary_input_grad:
        return out[0] if unbatched else out
    edge_k = kernel if edge_kernel is None else jnp.asarray(edge_kernel)
    edge_b = bias if edge_bias is None else jnp.asarray(edge_bias)
    src = padded if boundary_input_grad else lax.stop_gradient(padded)
    out = _recompute_boundary(out, src, plans, edge_k, edge_b, run, extra_row)
    return out[0] if unbatched else out


def _recompute_boundary(
    out: jax.Array, src: jax.Array, plans: Sequence[AxisPlan], kernel: jax.Array, bias: jax.Array | None,
    run: Any, extra_row: bool,
) -> jax.Array:
    """``out`` with the outputs whose window reaches a ghost recomputed from the padded input
    ``src`` with ``kernel``/``bias`` (the edge parameters)."""
    nd = len(plans)
    boxes = boundary_boxes(plans)
    # Zeroed by a select with a constant mask (its transpose is one elementwise select; a product
    # with the mask would keep a NaN of the main kernel's sums as 0 * NaN), then added anew.
    keep = np.ones([p.out_len for p in plans], dtype=bool)
    for _, box in boxes:
        keep[tuple(slice(lo, hi) for lo, hi in box)] = False
    out = jnp.where(jnp.asarray(keep[None, ..., None]), out, jnp.zeros((), out.dtype))
    for a in range(nd):
        mine = [box for b, box in boxes if b == a]
        if not mine:
            continue
        spans = [[window(p, lo, hi) for p, (lo, hi) in zip(plans, box)] for box in mine]
        if extra_row:
            for sp in spans:
                sp[0] = (sp[0][0], sp[0][1] + 1)
        # The boxes' rows along ``a`` in one gather: its transpose is one scatter-add, where a
        # slice per box would leave XLA a full-size padded cotangent per box to hold.
        index = np.concatenate([np.arange(*sp[a], dtype=np.int32) for sp in spans])
        band = jnp.take(src, index, axis=1 + a, mode="clip")
        offset = 0
        for box, sp in zip(mine, spans):
            n = sp[a][1] - sp[a][0]
            sp = [(offset, offset + n) if b == a else sp[b] for b in range(nd)]
            offset += n
            strip = run(band[(slice(None), *(slice(start, stop) for start, stop in sp))], kernel)
            if bias is not None:
                strip = strip + bias
            # A scatter-add onto the zeroed boxes, not ``.at[].set``: XLA's SPMD partitioner
            # (jax 0.10) mis-partitions the gradient of chained sets on a sharded axis.
            out = out.at[(slice(None), *(slice(lo, hi) for lo, hi in box))].add(strip)
    return out


def _pad_pairs(pad_width: Any, ndim: int) -> list[tuple[int, int]]:
    """``pad_width`` as in ``jnp.pad`` (int, ``(lo, hi)``, or one pair per axis) as ``ndim`` pairs."""
    arr = np.asarray(pad_width, dtype=object)
    flat = arr.reshape(-1)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in flat):
        raise TypeError(f"pad_width must contain ints, got {pad_width!r}")
    if arr.shape not in ((), (1,), (2,), (1, 1), (1, 2), (ndim, 1), (ndim, 2)):
        raise ValueError(
            f"pad_width must be an int, a (before, after) pair or {ndim} such pairs (one per axis of x), "
            f"got {pad_width!r}"
        )
    pairs = np.broadcast_to(arr.astype(np.int64).reshape(arr.shape if arr.ndim == 2 else (1, -1)), (ndim, 2))
    if (pairs < 0).any():
        raise ValueError(f"pad_width must contain ints >= 0, got {pad_width!r}")
    return [(int(lo), int(hi)) for lo, hi in pairs]


def lagrange_pad(
    x: jax.Array,
    pad_width: Any,
    *,
    kernel_size: int | Sequence[int] | None = None,
    dilation: int | Sequence[int] = 1,
    order: int | Sequence[int | None] | None = None,
) -> jax.Array:
    """Pad ``x`` with polynomial-extrapolated ghosts; ``pad_width`` as in :func:`jax.numpy.pad`.

    Along each padded axis the ghosts follow the degree-``p`` polynomial through the ``p + 1``
    samples nearest each edge on the ghost's dilation lattice (on an axis shorter than
    ``(p+1)*d``, the highest degree its lattice holds); ``order`` ``p`` (int or one per axis of
    ``x``, ``0 .. k-1``) defaults to ``k-1``; ``kernel_size`` ``k`` (int or one per axis of ``x``)
    defaults to ``(before + after) // dilation + 1``, the kernel this padding makes size-keeping.
    Axes padded ``(0, 0)`` are left alone; corners are the tensor product.
    """
    check_array("x", x)
    check_float_dtype("x", str(x.dtype))
    x = jnp.asarray(x)
    pairs = _pad_pairs(pad_width, x.ndim)
    dils = as_tuple("dilation", dilation, x.ndim)
    if kernel_size is None:
        ks = tuple((lo + hi) // d + 1 for (lo, hi), d in zip(pairs, dils))
    else:
        ks = as_tuple("kernel_size", kernel_size, x.ndim)
    axes = [a for a, (lo, hi) in enumerate(pairs) if lo or hi]
    for a in axes:
        if ks[a] == 1:
            raise ValueError(f"pad_width {pairs[a]} on axis {a} needs kernel_size >= 2 to extrapolate, got 1")
        if x.shape[a] < 1:
            raise ValueError(f"axis {a} of x has length 0; there is no sample to extrapolate ghosts from")
    # Axes left alone take any order: only the padded axes' ranges are checked.
    orders = parse_order(order, x.ndim, [ks[a] - 1 if a in axes else np.iinfo(np.int64).max for a in range(x.ndim)])
    ops = [ghost_operator(x.shape[a], ks[a], dils[a], *pairs[a], order=orders[a], axis=a) for a in axes]
    return ghost_pad(x, axes, ops)
