"""The lean torch path: one autograd node that saves ``x`` and the weights (and a thin rim of
ghosts), in one of three forms chosen by :func:`_plain_form`.

* **banded** (plain float32/float64 2-d layers, stride 1, square odd kernel, maps of at least
  :data:`BANDED_MIN_SIDE`, except layers with fewer input than output channels on maps that
  the padded form takes): the zero-padded convolution plus the ghost ring convolved as four
  thin bands (:mod:`diffconv.torch._banded`); backward keeps the ring (at k = 3, the bands:
  the same samples).
* **padded** (the other plain float32/float64 layers on small 2-d maps, and in 3-d;
  :data:`PADDED_FORM_MAX_POSITIONS`): a transient ghost-padded buffer and a VALID convolution;
  backward rebuilds it for the weight gradient (copying the kept last-axis ghosts in) and frees
  it before the input gradient (the padded buffer's gradient, its ghost part folded onto the
  edge samples).
* **corrections** (everything else): ``conv(x, padding=before)`` (the same call as
  ``padding='same'``), then either the ghost corrections are added onto the boundary outputs
  (plain layers), or the boundary output blocks are recomputed from thin boxes of the
  ghost-padded input (edge kernel / boundary switch). Only ``x`` and the weights are saved,
  exactly what a zero-padded convolution saves. Backward: the native convolution backward on
  ``x`` plus the transposed thin terms (edge kernel / switch: the main backward sees the
  output gradient with the boundary blocks zeroed).

A backward that must itself be differentiable (``create_graph=True``) differentiates the
composite form instead.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ._banded import add_band_grads, add_band_outputs, band_grads, band_outputs, banded_applies
from ._coeffs import work_dtype
from ._boundary import Geometry, Region, box_adjoint, build_box, out_view, region_weight, window_view
from ._padded import fill_padded, fold_ghosts, padded_shape

#: Dtypes that the banded and padded forms run in (others take the border corrections, whose
#: thin terms run in float32).
PLAIN_DTYPES = (torch.float32, torch.float64)

#: ``F.convNd`` by number of spatial dims.
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def lean_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    edge_weight: torch.Tensor | None,
    edge_bias: torch.Tensor | None,
    geo: Geometry,
    groups: int,
    special: bool,
) -> torch.Tensor:
    """Output of the zero-padded convolution plus border terms for batched ``x`` ``(N, C, *L)``;
    ``special``: edge kernel or switch off."""
    conv = CONV[x.dim() - 2]
    y = conv(x, weight, bias, geo.strides, geo.padding, geo.dilations, groups)
    return _boundary_forward(x, weight, bias, edge_weight, edge_bias, geo, groups, special, y, geo.plans, work_dtype(x.dtype))


def padded_forward(x, weight, bias, geo: Geometry, groups: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output of the padded-buffer form, and the buffer's ghosts per axis (kept for backward)."""
    padded, ghosts = fill_padded(x, geo.plans)
    return CONV[x.dim() - 2](padded, weight, bias, geo.strides, 0, geo.dilations, groups), ghosts


#: Per number of spatial dims, the most positions per channel at which plain float32/float64
#: layers that the banded form does not cover convolve a transient ghost-padded buffer; larger
#: ones run the zero-padded convolution plus border corrections. Measured (docs/benchmarks.md):
#: in 2-d the buffer (two fills, and its input gradient from one transposed convolution) beat
#: the thin border operations up to 128x128 and lost at 160x160; 1-d has only two cheap border
#: terms; 3-d has six costly ones at every size tried (16^3 to 48^3).
PADDED_FORM_MAX_POSITIONS = {1: 0, 2: 128 * 128, 3: math.inf}

#: Shortest side of the 2-d maps that the banded form takes (where it applies). Measured
#: (docs/benchmarks.md): it beat the padded buffer at 96x96; at 48x48 and below the padded
#: buffer was as fast or faster, the bands' grouped convolution costing more there relative to
#: the main one. Layers with fewer input than output channels keep the padded buffer up to
#: :data:`PADDED_FORM_MAX_POSITIONS` (at 96x96: 1.12-1.18 vs 1.23-1.29 for 3 -> 32 channels).
BANDED_MIN_SIDE = 64

#: ``None`` (choose by size), ``"padded"``, ``"banded"`` or ``"corrections"``: lets tests run
#: every form (``"banded"`` falls back to ``"corrections"`` where it does not apply).
_FORM: str | None = None

#: ``None`` (choose by device), ``True`` or ``False``: whether the banded form runs its thin
#: band operations before the big convolution (forward) and its backward (backward).
_BANDS_FIRST: bool | None = None


def _bands_first(t: torch.Tensor) -> bool:
    """On the CPU the band operations go first, while the edge slices of ``x`` (of the output
    gradient) are in cache; on an accelerator they go after the big convolution, so that the
    host launches them while the device runs it, instead of the device waiting for each one."""
    return t.device.type == "cpu" if _BANDS_FIRST is None else _BANDS_FIRST


def _bands_around(first: bool, bands: Callable[[], object], main: Callable[[], object]) -> tuple[object, object]:
    """``(bands(), main())``, run in that order if ``first`` (:func:`_bands_first`), else main first."""
    if first:
        done = bands()
        return done, main()
    done = main()
    return bands(), done


def plain_banded(x: torch.Tensor, weight: torch.Tensor, special: bool, geo: Geometry) -> bool | None:
    """``None`` for a layer that only the border corrections take (edge kernel or switch, or a
    dtype outside :data:`PLAIN_DTYPES`); else whether the banded form covers it."""
    if special or x.dtype not in PLAIN_DTYPES:
        return None
    return banded_applies(x.dim() - 2, tuple(weight.shape[2:]), geo.strides, geo.dilations)


def _plain_form(x: torch.Tensor, weight: torch.Tensor, special: bool, geo: Geometry) -> str:
    """``"banded"``, ``"padded"`` or ``"corrections"`` for this call."""
    banded = plain_banded(x, weight, special, geo)
    if banded is None:
        return "corrections"
    nd = x.dim() - 2
    if _FORM is not None:
        return "corrections" if _FORM == "banded" and not banded else _FORM
    fits_padded = math.prod(x.shape[2:]) <= PADDED_FORM_MAX_POSITIONS[nd]
    # Fewer input than output channels: the padded buffer copies the smaller tensor, while the
    # bands would touch the edges of the larger output and its gradient.
    input_light = x.shape[1] < weight.shape[0]
    if banded and min(x.shape[2:]) >= BANDED_MIN_SIDE and not (input_light and fits_padded):
        return "banded"
    return "padded" if fits_padded else "corrections"


def _boundary_forward(x, weight, bias, edge_weight, edge_bias, geo, groups, special, y, plans, thin):
    if not special:
        for region in geo.corrections:
            box, _ = build_box(x, region, plans, thin)
            w_r = region_weight(weight, region).to(thin)
            out_view(y, region).add_(_thin_conv(box, w_r, None, geo, groups, region))
        return y
    w_e = (weight if edge_weight is None else edge_weight).to(thin)
    b_e = bias if edge_bias is None else edge_bias
    b_e = None if b_e is None else b_e.to(thin)
    for region in geo.edge_regions:
        box, _ = build_box(x, region, plans, thin)
        out_view(y, region).copy_(_thin_conv(box, w_e, b_e, geo, groups, region))
    return y


def _padded_grads(g, x, w, has_bias, geo, groups, ghosts, need_x, need_w, need_b):
    """Gradients of the padded form without keeping the padded buffer.

    Weights and bias: from the buffer rebuilt from ``x`` and the forward pass's ghosts
    (copied, not extrapolated again; ``None`` entries are), freed before the input gradient
    exists. Input: the gradient on the padded buffer (one transposed convolution), whose ghost
    part :func:`fold_ghosts` adds onto the edge samples; ``dx`` is a view of its data part.
    """
    dx = dw = db = None
    if need_w or need_b:
        padded, _ = fill_padded(x, geo.plans, ghosts)
        _, dw, db = _conv_backward(g, padded, w, has_bias, geo, groups, [0] * len(geo.plans), [False, need_w, need_b])
        del padded
    if need_x:
        # A transposed convolution, not convolution_backward: that one wants an input tensor
        # of the buffer's shape (and makes even a placeholder for it contiguous).
        extra = [
            L - ((n - 1) * s + d * (p.kernel_size - 1) + 1)
            for L, n, s, d, p in zip(padded_shape(x, geo.plans)[2:], g.shape[2:], geo.strides, geo.dilations, geo.plans)
        ]
        dp = CONV_TRANSPOSE[x.dim() - 2](g, w, None, geo.strides, 0, extra, groups, geo.dilations)
        dx = fold_ghosts(dp, geo.plans)
    return dx, dw, db


def _conv_backward(g, inp, w, bias, geo: Geometry, groups: int, padding, mask):
    nd = inp.dim() - 2
    bias_sizes = [w.shape[0]] if bias else None
    return torch.ops.aten.convolution_backward(
        g, inp, w, bias_sizes, list(geo.strides), list(padding), list(geo.dilations), False, [0] * nd, groups, mask
    )


def _thin_order(region: Region) -> tuple[int, ...] | None:
    """Spatial permutation putting a box's thin axis first (oneDNN is slow on thin last axes)."""
    extents = [r.hi - r.lo for r in region.ranges]
    thin = extents.index(min(extents))
    if thin == 0:
        return None
    return (thin,) + tuple(a for a in range(len(extents)) if a != thin)


def _permute(t: torch.Tensor, order: tuple[int, ...] | None, inverse: bool = False) -> torch.Tensor:
    if order is None:
        return t
    if inverse:
        order = tuple(sorted(range(len(order)), key=order.__getitem__))
    return t.permute(0, 1, *(2 + a for a in order))


def _ordered(values: tuple[int, ...] | None, nd: int, order) -> tuple[int, ...]:
    values = (0,) * nd if values is None else values
    return values if order is None else tuple(values[a] for a in order)


def _thin_conv(box, w, b, geo: Geometry, groups: int, region: Region) -> torch.Tensor:
    """Convolution of a thin box (region's padding), laid out so that oneDNN runs it fast."""
    nd, order = box.dim() - 2, _thin_order(region)
    conv = CONV[nd]
    strides, dils = _ordered(geo.strides, nd, order), _ordered(geo.dilations, nd, order)
    padding = _ordered(region.padding, nd, order)
    y = conv(_permute(box, order).contiguous(), _permute(w, order).contiguous(), b, strides, padding, dils, groups)
    return _permute(y, order, inverse=True)


def _thin_conv_backward(g, box, w, bias, geo: Geometry, groups: int, region: Region, mask):
    """Gradients of :func:`_thin_conv` (input, weight, bias)."""
    nd, order = box.dim() - 2, _thin_order(region)
    strides, dils = _ordered(geo.strides, nd, order), _ordered(geo.dilations, nd, order)
    padding = _ordered(region.padding, nd, order)
    gx, gw, gb = torch.ops.aten.convolution_backward(
        _permute(g, order).contiguous(), _permute(box, order).contiguous(), _permute(w, order).contiguous(),
        [w.shape[0]] if bias else None, list(strides), list(padding), list(dils), False, [0] * nd, groups, mask,
    )
    return (None if gx is None else _permute(gx, order, inverse=True),
            None if gw is None else _permute(gw, order, inverse=True), gb)


class LeanConv(torch.autograd.Function):
    """``apply(x, weight, bias, edge_weight, edge_bias, geo, groups, special, boundary_input_grad, composite)``."""

    @staticmethod
    def forward(ctx, x, weight, bias, edge_weight, edge_bias, geo, groups, special, boundary_input_grad, composite):
        ctx.geo, ctx.groups, ctx.special, ctx.bgrad, ctx.composite = geo, groups, special, boundary_input_grad, composite
        ctx.save_for_backward(x, weight, bias, edge_weight, edge_bias)
        ctx.form = _plain_form(x, weight, special, geo)
        if ctx.form == "banded":
            (out, ctx.banded), y = _bands_around(
                _bands_first(x), lambda: band_outputs(x, weight, groups),
                lambda: CONV[2](x, weight, bias, geo.strides, geo.padding, geo.dilations, groups))
            add_band_outputs(y, out)
            return y
        if ctx.form == "padded":
            # The last axis's ghosts are small (two slabs of the buffer's rim); keeping them
            # spares the backward pass the strided reads of the edge samples that extrapolating
            # them again costs. The other axes' ghosts come from contiguous rows and are cheap
            # to compute again.
            y, ghosts = padded_forward(x, weight, bias, geo, groups)
            ctx.ghosts = ghosts[:1] + [None] * (len(ghosts) - 1)
            return y
        return lean_forward(x, weight, bias, edge_weight, edge_bias, geo, groups, special)

    @staticmethod
    def backward(ctx, g):
        x, w, b, we, be = ctx.saved_tensors
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():
            grads = _composite_grads(ctx.composite, (x, w, b, we, be), needs, g)
        else:
            grads = _lean_grads(ctx, g, x, w, b, we, be, needs)
        return (*grads, None, None, None, None, None)


def _composite_grads(composite: Callable[..., torch.Tensor], tensors, needs, g):
    """Differentiable gradients (for double backward): autograd through the composite form."""
    with torch.enable_grad():
        y = composite(*tensors)
    wanted = [t for t, n in zip(tensors, needs) if n and t is not None]
    found = iter(torch.autograd.grad(y, wanted, g, create_graph=True, allow_unused=True))
    return [next(found) if n and t is not None else None for t, n in zip(tensors, needs)]


def _lean_grads(ctx, g, x, w, b, we, be, needs):
    geo, groups, plans = ctx.geo, ctx.groups, ctx.geo.plans
    thin = work_dtype(x.dtype)      # the thin boundary terms run in >= float32
    need_x, need_w, need_b, need_we, need_be = needs
    g = g.contiguous()
    if ctx.form == "banded":
        band, (dx, dw, db) = _bands_around(
            _bands_first(g),
            lambda: band_grads(g, ctx.banded, w, groups, need_x, need_w) if need_x or need_w else None,
            lambda: _conv_backward(g, x, w, b is not None, geo, groups, geo.padding, [need_x, need_w, need_b]))
        if band is not None:
            add_band_grads(dx, dw, band, w.shape[-1])
        return dx, dw, db, None, None
    if ctx.form == "padded":
        ghosts, ctx.ghosts = ctx.ghosts, None        # a second backward (retain_graph) recomputes them
        return (*_padded_grads(g, x, w, b is not None, geo, groups, ghosts, need_x, need_w, need_b), None, None)
    if not ctx.special:
        dx, dw, db = _conv_backward(g, x, w, b is not None, geo, groups, geo.padding, [need_x, need_w, need_b])
        for region in geo.corrections:
            if not (need_x or need_w):
                break
            box, _ = build_box(x, region, plans, thin)
            w_r = region_weight(w, region).to(thin)
            g_r = out_view(g, region).to(thin)
            gx, gw, _ = _thin_conv_backward(g_r, box, w_r, False, geo, groups, region, [need_x, need_w, False])
            if need_w:
                region_weight(dw, region).add_(gw)
            if need_x:
                window_view(dx, region, plans).add_(box_adjoint(gx, region, plans))
        return dx, dw, db, None, None

    dwe = torch.zeros_like(we) if need_we else None
    dbe = torch.zeros_like(be) if need_be else None
    w_e = w if we is None else we
    b_e = b if be is None else be
    # Boundary outputs were overwritten: the zero-padded convolution gets the gradient of the
    # others only (a copy with the boundary blocks zeroed, so nothing leaks, not even rounding).
    g_main = g.clone()
    for region in geo.edge_regions:
        out_view(g_main, region).zero_()
    dx, dw, db = _conv_backward(g_main, x, w, b is not None, geo, groups, geo.padding, [need_x, need_w, need_b])
    del g_main
    # Gradient owners of the boundary weights/bias: the edge ones when given, else the main ones.
    edge_dw, need_edge_w = (dwe, need_we) if we is not None else (dw, need_w)
    edge_db, need_edge_b = (dbe, need_be) if be is not None else (db, need_b)
    mask = [need_x and ctx.bgrad, need_edge_w, need_edge_b and b_e is not None]
    for region in geo.edge_regions:
        if not any(mask):
            break
        box, _ = build_box(x, region, plans, thin)
        g_r = out_view(g, region).to(thin)
        gx, gw, gb = _thin_conv_backward(g_r, box, w_e.to(thin), b_e is not None, geo, groups, region, mask)
        if mask[0]:
            window_view(dx, region, plans).add_(box_adjoint(gx, region, plans))
        if mask[1]:
            edge_dw.add_(gw)
        if mask[2]:
            edge_db.add_(gb)
    return dx, dw, db, dwe, dbe
