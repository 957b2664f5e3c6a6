"""Padding-free convolution for JAX (channels-last ``(N, *L, C)``, kernels ``(*k, C/groups, O)``).

The bulk of the output is one zero-padded ``lax.conv_general_dilated``; the outputs whose window
reaches past the data (thin boxes along each border, from :func:`diffconv.plan.axis_plan`) get
the ghosts' contribution added, computed from the few samples nearest each edge (with a
derivative rule, :func:`_plain_jvp`, that keeps the backward pass free of kernel slices). With an
edge kernel or the boundary gradient switch those boxes are recomputed instead, so neither needs
a second full-size convolution.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from .._checks import as_tuple, check_float_dtype
from ..plan import AxisPlan, axis_plan, boundary_boxes as _boundary_boxes, ghost_sides as _ghost_sides, window as _window
from ._ghosts import padded_window, work_dtype
from ._validate import check_array, validate_conv_args

__all__ = ["conv", "lagrange_pad"]

#: Kernels with at most this fraction of the layer input's elements take the input gradient of
#: their border corrections from the kernel taps that reach the ghosts (autodiff's transpose:
#: reversed copies of the tap slices, about 1.6 kernels, which XLA computes at the start of the
#: step and holds until the backward pass: at most 8 % of the input here); larger kernels from
#: the whole kernel, whose reversed copy the main convolution's transpose already holds, at the
#: price of multiplications by zero on the thin border strips (2.5x the arithmetic of the
#: slices at k=5). Measured (docs/benchmarks.md): the k=5 UNet (its 96x96 layers sliced)
#: 1.06-1.08 against 1.08-1.12 with every kernel whole, memory 1.055 against 1.049.
SLICED_TAPS_MAX_FRACTION = 0.05

_DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


def _padded_axis_window(slab: jax.Array, p: AxisPlan, axis: int, start: int, stop: int) -> jax.Array:
    """Positions ``[start, stop)`` of ``slab`` ghost-padded along ``axis``, built from the samples
    near the one edge the window reaches when it reaches only one. ``slab`` holds the whole
    axis or, for such windows, only the ``k*d`` samples nearest each edge (:func:`_edge_bands`).
    """
    length, span, held = p.length, p.span, slab.shape[axis]
    if start < p.before and stop <= p.before + length:        # low ghosts only: leading samples
        edge = lax.slice_in_dim(slab, 0, min(length, max(span, stop - p.before)), axis=axis)
        return padded_window(edge, axis, p.kernel_size, p.dilation, p.before, 0, start, stop)
    if start >= p.before and stop > p.before + length:        # high ghosts only: trailing samples
        m = min(length, max(span, length + p.before - start))
        edge = lax.slice_in_dim(slab, held - m, held, axis=axis)
        offset = p.before + length - m
        return padded_window(edge, axis, p.kernel_size, p.dilation, 0, p.after, start - offset, stop - offset)
    return padded_window(slab, axis, p.kernel_size, p.dilation, p.before, p.after, start, stop)


def _ghost_slab(x: jax.Array, plans: Sequence[AxisPlan], a: int, start: int, stop: int) -> jax.Array:
    """Positions ``[start, stop)`` along axis ``a`` of the ghosts-only input ``D_a``: the ghosts
    along ``a`` (data positions zero), whole ghost-padded axes after ``a``, data on those before
    (the convolution zero-pads them). ``D = P - Z`` (ghost-padded minus zero-padded input) is
    the sum of the disjoint ``D_a``, so ``conv(P) = conv(Z) + sum_a conv(D_a)``.

    ``x`` holds either the whole of axis ``a`` or only the ``k*d`` samples nearest each edge.
    """
    nd, p = len(plans), plans[a]
    # Corners extrapolate already extrapolated samples: keep them in >= float32 until the end.
    slab = _padded_axis_window(x.astype(work_dtype(x.dtype)), p, 1 + a, start, stop)
    pos = np.arange(start, stop) - p.before
    ghost = ((pos < 0) | (pos >= p.length)).reshape([-1 if b == a else 1 for b in range(nd)])
    if not ghost.all():
        slab = slab * jnp.asarray(ghost[None, ..., None], dtype=slab.dtype)
    for b in range(a + 1, nd):
        q = plans[b]
        slab = padded_window(slab, 1 + b, q.kernel_size, q.dilation, q.before, q.after, 0, q.before + q.length + q.after)
    return slab.astype(x.dtype)


def _reads_one_edge(p: AxisPlan, start: int, stop: int) -> bool:
    """Whether padded positions ``[start, stop)`` need only the ``k*d`` samples at one edge."""
    span = p.span
    if stop <= p.before + p.length:
        return stop - p.before <= span
    return start >= p.before and p.length + p.before - start <= span


def _edge_bands(x: jax.Array, p: AxisPlan, a: int) -> jax.Array:
    """The ``k*d`` samples at both edges of axis ``a`` (one gather), or ``x`` if they overlap.

    One gather, because its transpose is a single scatter-add: separate slices would each leave
    XLA a full-size padded cotangent to hold (1.8x the memory of the zero-padded step when
    the input is a concatenation, as in a UNet decoder).
    """
    span = p.span
    if 2 * span >= p.length:
        return x
    return jnp.take(x, np.r_[0:span, p.length - span:p.length], axis=1 + a)


def _ghost_span(p: AxisPlan, start: int, stop: int) -> tuple[int, int, bool]:
    """The ghosts among padded positions ``[start, stop)``: ``(lo, hi, True)`` when they lie at
    one edge (the data positions next to them are left to the convolution's zero padding, so
    the slab holds ghosts only), else ``(start, stop, False)`` (data positions zeroed in the slab)."""
    low, high = start < p.before, stop > p.before + p.length
    if low and not high:
        return start, min(stop, p.before), True
    if high and not low:
        return max(start, p.before + p.length), stop, True
    return start, stop, False


def _corrections(x: jax.Array, kernel: jax.Array, geo: _Geometry, full_kernel: bool) -> list[jax.Array]:
    """What the ghosts add to the boundary outputs, one array per axis and side of
    :func:`_ghost_sides`: the convolution of a slab holding only those ghosts (:func:`_ghost_slab`).

    ``full_kernel=False``: each side convolves only the kernel taps along the axis that reach its
    ghosts (the layer itself). ``full_kernel=True``: the whole kernel, unsliced and in the main
    convolution's orientation, so that the transpose of this form (the input gradient of
    :func:`_plain_jvp`) reads the reversed kernel that the main convolution's transpose reads;
    the taps beyond the slab meet zero padding.
    """
    out = []
    for a, p in enumerate(geo.plans):
        sides = _ghost_sides(p)
        if not sides:
            continue
        windows = [_window(p, lo, hi) if full_kernel else _window(p, lo, hi, t0, t1) for lo, hi, t0, t1 in sides]
        spans = [_ghost_span(p, *w) for w in windows]
        # Ghosts need only the samples nearest their edge: one gather serves both sides.
        src = _edge_bands(x, p, a) if all(one_edge for _, _, one_edge in spans) else x
        for (start, stop), (gs, ge, _), (_, _, t0, t1) in zip(windows, spans, sides):
            slab = _ghost_slab(src, geo.plans, a, gs, ge)
            padding = [
                (gs - start, stop - ge) if b == a else ((q.before, q.after) if b < a else (0, 0))
                for b, q in enumerate(geo.plans)
            ]
            if full_kernel:
                out.append(geo.run(slab, kernel, padding))
            else:
                out.append(geo.run(slab, kernel[(slice(None),) * a + (slice(t0, t1),)], padding, first=a))
    return out


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """What fixes one convolution besides its operands (hashable: a ``custom_jvp`` static argument)."""

    plans: tuple[AxisPlan, ...]
    strides: tuple[int, ...]
    dils: tuple[int, ...]
    groups: int
    precision: Any
    sliced_taps: bool = True     # input gradient of the border corrections from the tap slices

    def run(self, lhs: jax.Array, rhs: jax.Array, padding: Any, first: int = 0) -> jax.Array:
        """``lax.conv_general_dilated`` with this geometry. ``first``: the spatial axis to put
        first for the call (XLA:CPU runs a slab that is thin along its first spatial axis up to
        twice as fast as one thin along a later axis)."""
        nd = len(self.plans)
        order = [first] + [b for b in range(nd) if b != first]
        if first:
            lhs, rhs = jnp.moveaxis(lhs, 1 + first, 1), jnp.moveaxis(rhs, first, 0)
            padding = [padding[b] for b in order]
        out = lax.conv_general_dilated(
            lhs, rhs, [self.strides[b] for b in order], padding, rhs_dilation=[self.dils[b] for b in order],
            dimension_numbers=_DIMENSION_NUMBERS[nd], feature_group_count=self.groups, precision=self.precision,
        )
        return jnp.moveaxis(out, 1, 1 + first) if first else out


def _plain_impl(x: jax.Array, kernel: jax.Array, geo: _Geometry, full_kernel: bool = False) -> jax.Array:
    """Zero-padded convolution plus the ghosts' contribution on the boundary outputs."""
    # The zero-padded convolution is right everywhere except on the boundary boxes. (XLA:CPU runs
    # a padded convolution several times faster than a VALID one on a ghost-padded copy.)
    out = geo.run(x, kernel, [(p.before, p.after) for p in geo.plans])
    # Scatter-adds: their transpose leaves ``out``'s cotangent alone.
    strips = iter(_corrections(x, kernel, geo, full_kernel))
    for a, p in enumerate(geo.plans):
        for lo, hi, _, _ in _ghost_sides(p):
            out = out.at[(slice(None),) * (1 + a) + (slice(lo, hi),)].add(next(strips))
    return out


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _plain(x: jax.Array, kernel: jax.Array, geo: _Geometry) -> jax.Array:
    """The layer without edge kernel or boundary switch: bilinear in ``(x, kernel)``, with the
    derivative rule :func:`_plain_jvp`."""
    return _plain_impl(x, kernel, geo)


@functools.partial(_plain.defjvp, symbolic_zeros=True)
def _plain_jvp(geo: _Geometry, primals, tangents):
    """The exact derivative, written so that for large kernels its transpose, the backward
    pass, holds no kernel slices.

    Left to autodiff, the input gradient of each border correction convolves with a reversed,
    transposed copy of its kernel slice, and XLA computes those parameter-only copies at the
    start of the step and holds them until the backward pass: 1.6 kernels per layer, 7 MB
    (7 % of the zero-padded step) in the k=5 benchmark UNet. For kernels large against the input
    (:data:`SLICED_TAPS_MAX_FRACTION`) the part linear in ``x`` therefore convolves the ghosts with
    the whole kernel (``full_kernel=True``), whose transpose shares the main convolution's
    reversed kernel, for a few multiplications by zero on the thin border strips of the input
    gradient; smaller kernels keep the slices. The part linear in ``kernel`` is the layer
    itself. Both are plain ``lax`` code, so every order of forward and reverse mode works.
    """
    x, kernel = primals
    dx, dk = tangents
    y = _plain_impl(x, kernel, geo)
    terms = []
    if not isinstance(dx, SymbolicZero):
        terms.append(_plain_impl(dx, kernel, geo, full_kernel=not geo.sliced_taps))
    if not isinstance(dk, SymbolicZero):
        terms.append(_plain(x, dk, geo))
    return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


def _box_input(x: jax.Array, plans: Sequence[AxisPlan], a: int, box: tuple[tuple[int, int], ...]) -> jax.Array:
    """The ghost-padded input that the outputs in ``box`` read (VALID-conv ready).

    Reads only the samples of ``x`` it needs, so its gradient stays near the edges; along axis
    ``a`` ``x`` may hold only the edge samples (:func:`_edge_bands`).
    """
    nd = len(plans)
    # Corners extrapolate already extrapolated samples: keep them in >= float32 until the end.
    slab = x.astype(work_dtype(x.dtype))
    for b in [a] + [c for c in range(nd) if c != a]:      # the thin axis first: less work after it
        slab = _padded_axis_window(slab, plans[b], 1 + b, *_window(plans[b], *box[b]))
    return slab.astype(x.dtype)


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
    precision: Any = None,
) -> jax.Array:
    """Size-keeping padding-free convolution, 1-3 spatial dims (from the kernel's rank).

    x: ``(N, *L, C)`` or unbatched ``(*L, C)``; kernel: ``(*k, C/groups, O)`` (Flax layout);
    bias, edge_bias: ``(O,)``; edge_kernel: like ``kernel``. Returns ``(N, *ceil(L/strides), O)``.
    Like ``padding='SAME'`` at stride 1 (ghost widths ``((e-1)//2, e//2)``, ``e`` the dilated
    kernel extent), but the border sees Lagrange ghosts instead of zeros; stride ``s`` gives the
    stride-1 result sampled every ``s``. Outputs whose window reaches a ghost use
    ``edge_kernel``/``edge_bias`` when given and pass no gradient to ``x`` when
    ``boundary_input_grad=False``.
    """
    nd, strides_t, dils = validate_conv_args(
        x, kernel, bias, edge_kernel, edge_bias, strides, dilation, feature_group_count, boundary_input_grad, precision
    )
    return _conv(
        x, kernel, bias, edge_kernel, edge_bias, nd=nd, strides=strides_t, dils=dils,
        groups=feature_group_count, boundary_input_grad=boundary_input_grad, precision=precision,
    )


# One compiled program per configuration also when called eagerly (e.g. by Flax's ``init``);
# inside an outer jit/grad/vmap it is simply inlined.
@functools.partial(jax.jit, static_argnames=("nd", "strides", "dils", "groups", "boundary_input_grad", "precision"))
def _conv(
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
) -> jax.Array:
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    ks = kernel.shape[:nd]
    plans = [axis_plan(x.shape[1 + a], ks[a], dils[a], strides[a]) for a in range(nd)]

    sliced = kernel.size <= SLICED_TAPS_MAX_FRACTION * x.size
    geo = _Geometry(tuple(plans), strides, dils, groups, precision, sliced)
    run = geo.run
    special = edge_kernel is not None or edge_bias is not None or not boundary_input_grad
    if not special:
        out = _plain(x, kernel, geo)
        if bias is not None:
            out = out + jnp.asarray(bias)
        return out[0] if unbatched else out
    out = run(x, kernel, [(p.before, p.after) for p in plans])
    if bias is not None:
        out = out + jnp.asarray(bias)
    edge_k = kernel if edge_kernel is None else jnp.asarray(edge_kernel)
    edge_b = bias if edge_bias is None else edge_bias
    # Edge kernel / boundary switch: these outputs see only the ghost-padded input and the edge
    # parameters, so they are zeroed (a constant mask: its transpose is one elementwise product,
    # where slicing ``out`` would leave a full-size padded cotangent per box) and recomputed.
    boxes = _boundary_boxes(plans)
    keep = np.ones(out.shape[1:-1], dtype=bool)
    for _, box in boxes:
        keep[tuple(slice(lo, hi) for lo, hi in box)] = False
    out = out * jnp.asarray(keep[None, ..., None], dtype=out.dtype)
    src = x if boundary_input_grad else lax.stop_gradient(x)
    bands = {}
    for a, box in boxes:
        p = plans[a]
        one_edge = _reads_one_edge(p, *_window(p, *box[a]))
        if one_edge and a not in bands:
            bands[a] = _edge_bands(src, p, a)
        strip = run(_box_input(bands[a] if one_edge else src, plans, a, box), edge_k, "VALID")
        if edge_b is not None:
            strip = strip + jnp.asarray(edge_b)
        # A scatter-add onto the zeroed boxes, not ``.at[].set``: XLA's SPMD partitioner
        # (jax 0.10) mis-partitions the gradient of chained sets on a sharded axis.
        out = out.at[(slice(None), *(slice(lo, hi) for lo, hi in box))].add(strip)
    return out[0] if unbatched else out


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
) -> jax.Array:
    """Pad ``x`` with polynomial-extrapolated ghosts; ``pad_width`` as in :func:`jax.numpy.pad`.

    Along each padded axis the ghosts follow the degree-``k-1`` polynomial through the ``k``
    samples nearest each edge on the ghost's dilation lattice; ``kernel_size`` (int or one per
    axis of ``x``) defaults to ``(before + after) // dilation + 1``, the kernel this padding makes
    size-keeping. Axes padded ``(0, 0)`` are left alone; corners are the tensor product.
    """
    check_array("x", x)
    check_float_dtype("x", str(x.dtype))
    x = jnp.asarray(x)
    dtype = x.dtype
    x = x.astype(work_dtype(dtype))
    pairs = _pad_pairs(pad_width, x.ndim)
    dils = as_tuple("dilation", dilation, x.ndim)
    if kernel_size is None:
        ks = tuple((lo + hi) // d + 1 for (lo, hi), d in zip(pairs, dils))
    else:
        ks = as_tuple("kernel_size", kernel_size, x.ndim)
    for axis, ((lo, hi), k, d) in enumerate(zip(pairs, ks, dils)):
        if lo == 0 and hi == 0:
            continue
        if k == 1:
            raise ValueError(f"pad_width ({lo}, {hi}) on axis {axis} needs kernel_size >= 2 to extrapolate, got 1")
        if x.shape[axis] < 1:
            raise ValueError(f"axis {axis} of x has length 0; there is no sample to extrapolate ghosts from")
        x = padded_window(x, axis, k, d, lo, hi, 0, lo + x.shape[axis] + hi)
    return x.astype(dtype)
