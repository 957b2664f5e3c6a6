"""Padding-free transposed convolution for JAX (docs/design.md, "Transposed convolution").

:func:`conv_transpose` is ``torch.nn.functional.conv_transposeNd``'s mathematics channels-last:
same output shape, and near the border each output's sum also runs over the ghost inputs it
reaches outside the data (polynomial extrapolations of the samples nearest the edge,
:mod:`diffconv.transpose_plan`). Computed as one ``lax.conv_general_dilated`` (input dilated
by the stride) over the input extended by its few ghosts, the padding of the dilated input
adjusted so that the output keeps its place. ``boundary``/``order`` choose the ghosts per axis and
side as for :func:`diffconv.jax.conv` (orders ``0 .. m-1``). Pure ``jax.numpy``/``lax``: jit, grad
and vmap safe.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from .._checks import as_tuple, check_float_dtype, check_groups, check_same_dtype
from ..boundary import BoundarySpec, GhostOperator, ghost_operator, parse_boundary, parse_order
from ..transpose_plan import TransposeAxis, lax_transpose_padding, transpose_axis_lax, transpose_axis_torch
from ._ghosts import ghost_pad
from ._validate import check_array, check_precision

__all__ = ["broadcast_per_axis", "check_layer_padding", "conv_transpose", "layer_transpose",
           "transpose_conv_general"]


def _ghost_operators(plans: Sequence[TransposeAxis], boundary: BoundarySpec = "diff",
                    order: int | Sequence[int | None] | None = None) -> list[GhostOperator]:
    """``boundary``/``order`` checked against ``plans`` (orders ``0 .. nodes-1``) and each axis's
    ghost operator (DiffConv's ghost rule with kernel size ``nodes`` and dilation ``lattice``);
    ``ValueError`` for reflect or circular on an axis too short for its ghosts."""
    modes = parse_boundary(boundary, len(plans))
    orders = parse_order(order, len(plans), [p.nodes - 1 for p in plans])
    return [ghost_operator(p.length, p.nodes, p.lattice, p.before, p.after, m, o, a)
            for a, (p, m, o) in enumerate(zip(plans, modes, orders))]


def extend(x: jax.Array, ops: Sequence[GhostOperator]) -> jax.Array:
    """``x`` ``(N, *L, C)`` with each spatial axis extended by its ghosts (``ops``, one per axis),
    by the convolution's ghost builder (:func:`._ghosts.ghost_pad`)."""
    axes = [a for a, op in enumerate(ops) if not op.is_identity]
    return ghost_pad(x, [1 + a for a in axes], [ops[a] for a in axes])


def transpose_conv_general(
    x: jax.Array,
    rhs: jax.Array,
    plans: Sequence[TransposeAxis],
    *,
    feature_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    boundary: BoundarySpec = "diff",
    order: int | Sequence[int | None] | None = None,
) -> jax.Array:
    """The sums of a transposed convolution over the ghost-extended input.

    ``x`` ``(N, *L, C_in)``; ``rhs`` ``(*k, C_in/groups, C_out)``, the kernel as
    ``lax.conv_general_dilated`` applies it to the stride-dilated input (``lax.conv_transpose``'s
    orientation); ``plans``: one :class:`~diffconv.transpose_plan.TransposeAxis` per spatial axis,
    whose ``crop`` is that of the kernel flipped along every spatial axis; ``boundary``/``order`` as
    in :func:`conv_transpose`. Output ``(N, *out_len, C_out)``.
    """
    nd = len(plans)
    xe = extend(x, _ghost_operators(plans, boundary, order))
    pads = []
    for p, n_ext in zip(plans, xe.shape[1:-1]):
        extent = (p.kernel_size - 1) * p.dilation
        lo = extent - p.crop - p.before * p.stride
        hi = p.out_len - 1 - (n_ext - 1) * p.stride - lo + extent
        pads.append((lo, hi))
    strides, dilations = tuple(p.stride for p in plans), tuple(p.dilation for p in plans)
    rhs, pads, extra = _shun_operand_swap(xe.shape[1:-1], rhs, pads, strides, dilations, feature_group_count)
    spatial = "DHW"[3 - nd:]
    y = lax.conv_general_dilated(
        xe, rhs, window_strides=(1,) * nd, padding=pads,
        lhs_dilation=strides, rhs_dilation=dilations,
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        feature_group_count=feature_group_count, precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if any(extra):
        y = y[(slice(None),) + tuple(slice(0, n - e) for n, e in zip(y.shape[1:-1], extra))]
    return y


def _shun_operand_swap(
    lengths: Sequence[int], rhs: jax.Array, pads: list[tuple[int, int]], strides: Sequence[int],
    dilations: Sequence[int], groups: int,
) -> tuple[jax.Array, list[tuple[int, int]], list[int]]:
    """The same convolution written so that XLA's CPU compiler does not abort on it or on its
    kernel gradient; returns the kernel, the padding and the outputs to drop at the end of each axis.

    XLA's operand swap (for ungrouped convolutions whose kernel has more taps than the input has
    samples) keeps an axis with window size 2, input dilation 2, window stride 1, no padding and
    no kernel dilation as it is, then fails a shape check and aborts the process (plain
    ``lax.conv_transpose`` does too). Such an axis in this convolution gets a leading zero tap and
    one more padding sample in front; one in its kernel gradient (whose window is the output)
    comes from an output of length 2, which gets one more output, dropped afterwards.
    """
    extra = [0] * len(pads)
    if groups != 1:
        return rhs, pads, extra
    kept = [k == 2 and s == 2 and d == 1 and pad == (0, 0)
            for k, s, d, pad in zip(rhs.shape, strides, dilations, pads)]
    taps = math.prod(k for k, keep in zip(rhs.shape, kept) if not keep)
    samples = math.prod(n for n, keep in zip(lengths, kept) if not keep)
    if any(kept) and taps > samples:
        rhs = jnp.pad(rhs, [(1, 0) if keep else (0, 0) for keep in kept] + [(0, 0), (0, 0)])
        pads = [(lo + 1, hi) if keep else (lo, hi) for (lo, hi), keep in zip(pads, kept)]
    for a, (n, k, s, d, (lo, hi)) in enumerate(zip(lengths, rhs.shape, strides, dilations, pads)):
        if s == 2 and d == 1 and (n - 1) * s + 1 + lo + hi - (k - 1) == 2:
            pads[a], extra[a] = (lo, hi + 1), 1
    return rhs, pads, extra


def _torch_form_to_rhs(kernel: jax.Array, groups: int) -> jax.Array:
    """``(*k, C_in, C_out/g)`` (``kernel[j, ci, co] = torch weight[ci, co, j]``) to the
    ``lax.conv_general_dilated`` kernel ``(*k, C_in/g, C_out)``, flipped along every spatial axis."""
    nd = kernel.ndim - 2
    k, cin, cg = kernel.shape[:nd], kernel.shape[-2], kernel.shape[-1]
    rhs = kernel.reshape(k + (groups, cin // groups, cg))
    rhs = jnp.moveaxis(rhs, nd, nd + 1).reshape(k + (cin // groups, groups * cg))
    return jnp.flip(rhs, axis=tuple(range(nd)))


def conv_transpose(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    strides: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    feature_group_count: int = 1,
    boundary: BoundarySpec = "diff",
    order: int | Sequence[int | None] | None = None,
    precision: Any = None,
) -> jax.Array:
    """``F.conv_transposeNd`` channels-last with ghosts instead of missing inputs.

    ``x`` ``(N, *L, C_in)`` or unbatched ``(*L, C_in)``; ``kernel`` ``(*k, C_in, C_out/groups)``
    with ``kernel[j..., c_in, c_out] = weight[c_in, c_out, j...]`` of the torch layer; ``bias``
    ``(C_out,)``; ``padding``/``output_padding`` in torch's meaning. 1-3 spatial dims from the
    kernel's rank. Output ``(N, *L_out, C_out)``, ``L_out = (L-1)s - 2p + d(k-1) + output_padding + 1``.
    ``boundary``/``order`` as in :func:`diffconv.jax.conv`, with orders ``0 .. m-1``,
    ``m = ceil(k*gcd(s, d)/s)`` (the samples one output reads per axis; ``None``: ``m-1``).
    """
    for name, value in (("x", x), ("kernel", kernel)):
        check_array(name, value)
    if bias is not None:
        check_array("bias", bias)
    nd = kernel.ndim - 2
    if nd not in (1, 2, 3):
        raise ValueError(
            "kernel must have rank 3, 4 or 5 ((*kernel_size, in_features, out_features/groups)), "
            f"got shape {kernel.shape}"
        )
    check_float_dtype("x", str(x.dtype))
    check_same_dtype("x", str(x.dtype), "kernel", str(kernel.dtype))
    if bias is not None:
        check_same_dtype("x", str(x.dtype), "bias", str(bias.dtype))
    if x.ndim not in (nd + 1, nd + 2):
        raise ValueError(
            f"x must have rank {nd + 2} ((N, *spatial, features)) or {nd + 1} (unbatched) for a kernel of rank "
            f"{nd + 2}, got shape {x.shape}"
        )
    cin = x.shape[-1]
    g = check_groups("feature_group_count", feature_group_count, **{"x features": cin})
    if kernel.shape[-2] != cin:
        raise ValueError(f"kernel has {kernel.shape[-2]} input features (axis -2), but x has {cin}")
    cout = kernel.shape[-1] * g
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"bias must have shape ({cout},), got {tuple(bias.shape)}")
    check_precision(precision)
    s = as_tuple("strides", strides, nd)
    p = as_tuple("padding", padding, nd, minimum=0)
    op = as_tuple("output_padding", output_padding, nd, minimum=0)
    d = as_tuple("dilation", dilation, nd)
    if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
        raise ValueError(
            f"output_padding must be smaller than strides or dilation on each axis, got output_padding={op}, "
            f"strides={s}, dilation={d}"
        )
    spatial = x.shape[-nd - 1:-1]
    if any(n < 1 for n in spatial):
        raise ValueError(f"x has an empty spatial axis, shape {x.shape}")
    plans = [transpose_axis_torch(n, k, si, pi, opi, di)
             for n, k, si, pi, opi, di in zip(spatial, kernel.shape[:nd], s, p, op, d)]
    unbatched = x.ndim == nd + 1
    xb = x[None] if unbatched else x
    y = transpose_conv_general(xb, _torch_form_to_rhs(kernel, g), plans, feature_group_count=g, precision=precision,
                               boundary=boundary, order=order)
    if bias is not None:
        y = y + bias
    return y[0] if unbatched else y


def broadcast_per_axis(value: None | int | Sequence[int], nd: int, name: str) -> tuple[int, ...]:
    """Flax's reading of ``strides``/``kernel_dilation``: ``None`` means 1, an int applies to every axis."""
    if value is None:
        value = 1
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * nd
    items = tuple(value)
    if len(items) != nd or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items):
        raise ValueError(f"{name} must be None, an int >= 1 or {nd} ints >= 1, got {value!r}")
    return items


def check_layer_padding(padding: Any) -> None:
    """A Flax transposed layer's canonicalised ``padding`` must be 'SAME', 'VALID' or pairs."""
    if isinstance(padding, str) and padding not in ("SAME", "VALID"):
        raise ValueError(
            f"padding must be 'SAME', 'VALID', an int or (low, high) pairs, got {padding!r} (DiffConvTranspose "
            "extrapolates the border instead of a padding mode)"
        )


def layer_transpose(
    inputs: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None,
    *,
    padding: Any,
    strides: Sequence[int],
    kernel_dilation: Sequence[int],
    transpose_kernel: bool,
    precision: Any = None,
    preferred_element_type: Any = None,
    boundary: BoundarySpec = "diff",
    order: int | Sequence[int | None] | None = None,
) -> jax.Array:
    """The Flax ``ConvTranspose`` layers' computation with ghosts (shared by the linen and NNX layers).

    ``inputs`` ``(*batch, *L, in)`` (any number of batch dims, also none); ``kernel`` as the Flax
    layer holds it (``(*k, in, out)``, or ``(*k, out, in)`` with ``transpose_kernel``, which flips
    it as ``lax.conv_transpose`` does); ``padding``: ``'SAME'``, ``'VALID'`` or ``(lo, hi)`` pairs
    (canonicalised), in ``lax.conv_transpose``'s meaning; ``boundary``/``order`` as in
    :func:`conv_transpose`. Output shape as the Flax layer's.
    """
    nd = kernel.ndim - 2
    ks = tuple(kernel.shape[:nd])
    check_layer_padding(padding)
    batch_shape = inputs.shape[: inputs.ndim - nd - 1]
    x = jnp.reshape(inputs, (-1,) + inputs.shape[len(batch_shape):])
    rhs = kernel
    if transpose_kernel:
        rhs = jnp.swapaxes(jnp.flip(kernel, axis=tuple(range(nd))), -1, -2)
    pads = lax_transpose_padding(padding, ks, strides, kernel_dilation)
    plans = [transpose_axis_lax(n, k, s, d, pad)
             for n, k, s, d, pad in zip(x.shape[1:-1], ks, strides, kernel_dilation, pads)]
    y = transpose_conv_general(x, rhs, plans, precision=precision, preferred_element_type=preferred_element_type,
                               boundary=boundary, order=order)
    if bias is not None:
        y = y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return jnp.reshape(y, batch_shape + y.shape[1:])
