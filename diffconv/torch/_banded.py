"""The banded form: a 2-d (or 1-d), stride-1 convolution as the zero-padded convolution plus
its ghost ring, convolved as four (in 1-d: two) thin bands in one grouped convolution, in one
autograd node.

The ghost-padded input is ``P = Z + D``: ``Z`` the zero-padded input, ``D`` the ghosts alone
(the ring of ``p = k // 2`` samples around the data). ``conv(P) = conv_same_zero(x) + conv(D)``,
and ``conv(D)`` reaches only the ``p`` outputs nearest each edge. The ring splits into four
bands: the top and bottom ghost rows (corners included) and the left and right ghost columns
(data rows only). Each band is one group of a grouped convolution, laid out as ``2p - 1`` rows
(its ``p`` ghost rows and ``p - 1`` zero rows; the column bands transposed) and convolved with
the ``p`` kernel rows (or transposed columns) that reach it.

Beyond the two convolutions ``padding='same'`` runs, only thin edge slices of ``x``, ``y``, the
output gradient and ``dx`` are touched. Backward keeps the bands at ``k = 3`` (one row each, the
ring itself) and the ring at larger ``k``, and rebuilds the bands' kernel taps from the weight.
:func:`banded_conv2d` is the same form from plain differentiable operations, what
``torch.compile`` traces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ._ghosts import Side, add_edges, edges, lead_matmul, operator
from ._padded import composite_grads


def _side(k: int) -> Side:
    return Side(k, 1, k // 2, k // 2, k)


def banded_applies(lengths: tuple[int, ...], kernel_size: tuple[int, ...], strides: tuple[int, ...],
                   dilations: tuple[int, ...]) -> bool:
    """Whether the banded form covers a convolution: 1-d or 2-d, stride 1, no dilation, square
    odd kernel > 1, every side at least ``k`` long."""
    if len(lengths) not in (1, 2) or any(s != 1 for s in strides) or any(d != 1 for d in dilations):
        return False
    k = kernel_size[0]
    return len(set(kernel_size)) == 1 and k % 2 == 1 and k > 1 and min(lengths) >= k


def _line_bands(x: torch.Tensor, k: int) -> torch.Tensor:
    """1-d: the two bands ``(N, 2C, 2p - 1)`` of ``x`` ``(N, C, L)``: the ``p`` low ghosts then
    ``p - 1`` zeros, and ``p - 1`` zeros then the ``p`` high ghosts."""
    side, p = _side(k), k // 2
    ghosts = lead_matmul(operator(side, x.device, x.dtype), edges(x, 2, side))        # (2p, N, C)
    bands = ghosts.new_zeros(x.shape[0], 2, x.shape[1], 2 * p - 1)
    bands[:, 0, :, :p] = ghosts[:p].permute(1, 2, 0)
    bands[:, 1, :, p - 1:] = ghosts[p:].permute(1, 2, 0)
    return bands.flatten(1, 2)


def _line_weight(w: torch.Tensor) -> torch.Tensor:
    """1-d: the taps of each band ``(2O, C/groups, p)``: the first and the last ``p``."""
    p = w.shape[-1] // 2
    return torch.cat([w[..., :p], w[..., w.shape[-1] - p:]])


def _line_forward(x: torch.Tensor, w: torch.Tensor, groups: int, y: torch.Tensor) -> torch.Tensor:
    """Add the 1-d ghosts' outputs onto the ``p`` first and last outputs of ``y``; returns the bands."""
    bands, (O, p, L) = _line_bands(x, w.shape[-1]), (w.shape[0], w.shape[-1] // 2, y.shape[-1])
    out = F.conv1d(bands, _line_weight(w), None, 1, 0, 1, 2 * groups)
    y[..., :p].add_(out[:, :O])
    y[..., L - p:].add_(out[:, O:])
    return bands


def _line_backward(g, bands, w, groups, dx, dw, need_x, need_w) -> None:
    """Add the 1-d bands' gradients onto ``dx`` ``(N, C, L)`` and ``dw`` (each where needed)."""
    k, O, L = w.shape[-1], w.shape[0], g.shape[-1]
    side, p = _side(k), k // 2
    g_bands = torch.cat([g[..., :p], g[..., L - p:]], 1)
    g_b, g_w, _ = torch.ops.aten.convolution_backward(
        g_bands, bands, _line_weight(w), None, [1], [0], [1], False, [0], 2 * groups, [need_x, need_w, False])
    if need_w:
        dw[..., :p].add_(g_w[:O])
        dw[..., k - p:].add_(g_w[O:])
    if need_x:
        C = g_b.shape[1] // 2
        g_ghosts = torch.cat([g_b[:, :C, :p].permute(2, 0, 1), g_b[:, C:, p - 1:].permute(2, 0, 1)])
        add_edges(dx, 2, lead_matmul(operator(side, g.device, g.dtype), g_ghosts, transpose=True), side, 0, L)


def _ring(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ghost rows ``(2p, N, C, W + 2p)`` (top then bottom, corners included) and ghost columns
    ``(2p, N, C, H)`` (left then right) of ``x`` ``(N, C, H, W)``, each one matrix product with
    the contraction axis leading (:func:`~diffconv.torch._ghosts.lead_matmul`)."""
    side, p = _side(k), k // 2
    m = operator(side, x.device, x.dtype)
    ghost_cols = lead_matmul(m, edges(x, 3, side))                                  # (2p, N, C, H)
    at_rows = edges(ghost_cols, 3, side).permute(0, 2, 3, 1)                        # (2k, N, C, 2p)
    edge_rows = torch.cat([at_rows[..., :p], edges(x, 2, side), at_rows[..., p:]], -1)
    return lead_matmul(m, edge_rows), ghost_cols


def _channels_last(alloc, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of ``shape`` ``(N, 4, C, rows, L)`` from ``alloc`` whose ``flatten(1, 2)`` is
    channels-last: oneDNN then convolves the thin bands with no reorder to and from its
    blocked layout."""
    N, four, C, rows, L = shape
    return alloc(N, rows, L, four, C).permute(0, 3, 4, 1, 2)


def _bands(ghost_rows: torch.Tensor, ghost_cols: torch.Tensor, k: int) -> torch.Tensor:
    """The four bands ``(N, 4C, 2p - 1, max(H, W) + 2p)`` of the grouped convolution."""
    p = k // 2
    _, N, C, Wp = ghost_rows.shape
    H = ghost_cols.shape[-1]
    bands = _channels_last(ghost_rows.new_zeros, (N, 4, C, 2 * p - 1, max(Wp, H + 2 * p)))
    bands[:, 0, :, :p, :Wp] = ghost_rows[:p].permute(1, 2, 0, 3)
    bands[:, 1, :, p - 1:, :Wp] = ghost_rows[p:].permute(1, 2, 0, 3)
    bands[:, 2, :, :p, p:p + H] = ghost_cols[:p].permute(1, 2, 0, 3)
    bands[:, 3, :, p - 1:, p:p + H] = ghost_cols[p:].permute(1, 2, 0, 3)
    return bands.flatten(1, 2)


def _band_weight(w: torch.Tensor) -> torch.Tensor:
    """The kernel taps of each band ``(4O, C/groups, p, k)``: top rows, bottom rows, left and
    right columns (transposed, like their bands)."""
    k = w.shape[-1]
    p = k // 2
    return torch.cat([w[:, :, :p], w[:, :, k - p:], w[..., :p].mT, w[..., k - p:].mT])


def _recomputed(fn, *args):
    """``fn(*args)``, which autograd recomputes in backward instead of saving it."""
    return checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=False)


def band_outputs(x: torch.Tensor, weight: torch.Tensor, groups: int, *, traced: bool = False) -> tuple[torch.Tensor, tuple]:
    """What the ghost ring adds to the outputs ``(N, 4, O, p, max(H, W))`` of ``x`` ``(N, C, H, W)``
    (per band, as :func:`add_band_outputs` takes it), and what backward keeps: at ``k = 3`` the
    bands themselves (one row each: the ring, laid out), else the ghost ring (``p`` rows a band,
    against the bands' ``2p - 1``).

    ``traced``: for :func:`banded_conv2d`, whose operations autograd differentiates. It then
    saves what the eager form keeps: the bands' kernel taps, and at ``k >= 5`` the bands, are
    recomputed in backward (``torch.utils.checkpoint``); the taps (``4O x C x p x k``) of a
    layer on a small map can outweigh its input."""
    k, O = weight.shape[-1], weight.shape[0]
    ring = _ring(x, k)
    if traced:
        band_weight = _recomputed(_band_weight, weight)
        bands = _bands(*ring, k) if k == 3 else _recomputed(_bands, *ring, k)
    else:
        band_weight, bands = _band_weight(weight), _bands(*ring, k)
    out = F.conv2d(bands, band_weight, None, 1, 0, 1, 4 * groups)
    return out.unflatten(1, (4, O)), ((bands,) if k == 3 else ring)


def banded_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int) -> torch.Tensor:
    """The banded form from plain differentiable operations: ``(N, C, H, W) -> (N, O, H, W)``
    for a layer :func:`banded_applies` to. ``torch.compile`` traces this instead of padding a
    copy of ``x``. The bands' outputs are zero-padded to the output's size and added, not
    added in place onto slices: Inductor fuses the padded sum into one pass over the output.
    The zero-padded convolution comes first so that autograd runs the bands' backward before
    its own, and the output gradient can be freed sooner."""
    y = F.conv2d(x, weight, bias, 1, weight.shape[-1] // 2, 1, groups)
    out, _ = band_outputs(x, weight, groups, traced=True)
    p, (H, W) = out.shape[3], y.shape[2:]
    top, bottom, left, right = _edge_terms(out, H, W)
    return (y + F.pad(top, (0, 0, 0, H - p)) + F.pad(bottom, (0, 0, H - p, 0))
            + F.pad(left, (0, W - p)) + F.pad(right, (W - p, 0)))


def _edge_terms(out: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, ...]:
    """The bands' outputs from :func:`band_outputs` as what they add to an ``H x W`` output:
    its top and bottom ``p`` rows ``(N, O, p, W)``, its left and right ``p`` columns
    ``(N, O, H, p)`` (views)."""
    return out[:, 0, ..., :W], out[:, 1, ..., :W], out[:, 2, ..., :H].mT, out[:, 3, ..., :H].mT


def add_band_outputs(y: torch.Tensor, out: torch.Tensor) -> None:
    """Add the bands' outputs from :func:`band_outputs` onto the edges of ``y`` ``(N, O, H, W)``."""
    p, (H, W) = out.shape[3], y.shape[2:]
    top, bottom, left, right = _edge_terms(out, H, W)
    y[:, :, :p].add_(top)
    y[:, :, H - p:].add_(bottom)
    y[..., :p].add_(left)
    y[..., W - p:].add_(right)


def band_grads(g: torch.Tensor, kept: tuple[torch.Tensor, ...], weight: torch.Tensor, groups: int, need_x: bool, need_w: bool):
    """Gradients of the bands' grouped convolution for the contiguous output gradient ``g``
    ``(N, O, H, W)``: on the bands ``(N, 4C, 2p - 1, L + 2p)``, and on the weight, its kernel
    taps put back into one ``(O, C/groups, k, k)`` tensor; each ``None`` where not needed.
    ``kept``: what :func:`band_outputs` returned for backward; ``weight``: the layer's kernel,
    whose taps the bands used."""
    k = weight.shape[-1]
    p, (N, O, H, W) = k // 2, g.shape
    L = max(H, W)
    g_bands = _channels_last(g.new_zeros if H != W else g.new_empty, (N, 4, O, p, L))
    g_bands[:, 0, ..., :W] = g[:, :, :p]
    g_bands[:, 1, ..., :W] = g[:, :, H - p:]
    g_bands[:, 2, ..., :H] = g[..., :p].mT
    g_bands[:, 3, ..., :H] = g[..., W - p:].mT
    bands = kept[0] if k == 3 else _bands(*kept, k)
    g_ring, g_w_bands, _ = torch.ops.aten.convolution_backward(
        g_bands.flatten(1, 2), bands, _band_weight(weight), None,
        [1, 1], [0, 0], [1, 1], False, [0, 0], 4 * groups, [need_x, need_w, False],
    )
    return g_ring, _band_weight_grad(g_w_bands, k) if need_w else None


def _band_weight_grad(g_w_bands: torch.Tensor, k: int) -> torch.Tensor:
    """The bands' kernel-tap gradients ``(4O, C/groups, p, k)`` put back into one kernel
    ``(O, C/groups, k, k)`` (the transpose of :func:`_band_weight`)."""
    p = k // 2
    top, bottom, left, right = g_w_bands.unflatten(0, (4, -1))
    dw = top.new_zeros(*top.shape[:2], k, k)
    dw[:, :, :p] = top
    dw[:, :, k - p:] = bottom
    dw[..., :p].add_(left.mT)
    dw[..., k - p:].add_(right.mT)
    return dw


def add_band_grads(dx: torch.Tensor | None, dw: torch.Tensor | None, grads, k: int) -> None:
    """Add the gradients from :func:`band_grads` onto the zero-padded convolution's ``dx``
    ``(N, C, H, W)`` and ``dw`` ``(O, C/groups, k, k)`` (each where not ``None``); ``k``: the
    kernel size. The fold of the bands' gradient runs here, after the main backward, where its
    outputs (``k / p`` times the bands' size) do not add to the peak."""
    g_ring, g_w = grads
    if dw is not None:
        dw.add_(g_w)
    if dx is None:
        return
    H, W = dx.shape[2:]
    g_edge_rows, g_edge_cols = _fold_ring(g_ring.unflatten(1, (4, -1)), k, H, W)
    add_edges(dx, 2, g_edge_rows, _side(k), 0, H)
    add_edges(dx, 3, g_edge_cols, _side(k), 0, W)


def _fold_ring(g_bands: torch.Tensor, k: int, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient on the four bands ``(N, 4, C, 2p - 1, L + 2p)`` carried onto the edge
    samples the ghosts were extrapolated from (the transpose of :func:`_ring`): on the ``k``
    first and ``k`` last rows ``(2k, N, C, W)`` and columns ``(2k, N, C, H)``; the corners'
    part travels through the columns."""
    side, p = _side(k), k // 2
    m = operator(side, g_bands.device, g_bands.dtype)
    lead = (2, 0, 1, 3)                                  # (N, C, rows, L) -> (rows, N, C, L)
    g_rows = torch.cat([g_bands[:, 0, :, :p, :W + 2 * p].permute(lead), g_bands[:, 1, :, p - 1:, :W + 2 * p].permute(lead)])
    g_edge_rows = lead_matmul(m, g_rows, transpose=True)                                                    # (2k, N, C, W + 2p)
    g_cols = torch.cat([g_bands[:, 2, :, :p, p:p + H].permute(lead), g_bands[:, 3, :, p - 1:, p:p + H].permute(lead)])
    g_corners = torch.cat([g_edge_rows[..., :p], g_edge_rows[..., p + W:]], -1)        # (2k, N, C, 2p)
    add_edges(g_cols, 3, g_corners.permute(0, 3, 1, 2), side, 0, H)
    return g_edge_rows[..., p:p + W], lead_matmul(m, g_cols, transpose=True)


def _bands_around(first: bool, bands, main):
    """``(bands(), main())``, run in that order if ``first``, else main first. On the CPU the band
    operations go first, while the edge slices of ``x`` (of the output gradient) are in cache; on
    an accelerator after the big convolution, so the host queues them while the device runs it."""
    if first:
        done = bands()
        return done, main()
    done = main()
    return bands(), done


class BandedConv(torch.autograd.Function):
    """``apply(x, weight, bias, groups, bands_first, composite)`` for ``x`` ``(N, C, L)`` or
    ``(N, C, H, W)`` and a layer :func:`banded_applies` to; ``composite`` differentiates a
    second-order backward. In 1-d the ring is two bands (:func:`_line_forward`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups, bands_first, composite):
        k = weight.shape[-1]
        conv = F.conv1d if x.dim() == 3 else F.conv2d
        if x.dim() == 3:
            y = conv(x, weight, bias, 1, k // 2, 1, groups)
            ctx.kept = _line_forward(x, weight, groups, y)
        else:
            (out, ctx.kept), y = _bands_around(
                bands_first, lambda: band_outputs(x, weight, groups),
                lambda: conv(x, weight, bias, 1, k // 2, 1, groups))
            add_band_outputs(y, out)
        ctx.groups, ctx.bands_first, ctx.composite = groups, bands_first, composite
        ctx.save_for_backward(x, weight, bias)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, b = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            grads = composite_grads(ctx.composite, (x, w, b, None, None), (need_x, need_w, need_b, False, False), g)
            return (*grads[:3], None, None, None)
        g, k, groups, nd = g.contiguous(), w.shape[-1], ctx.groups, x.dim() - 2

        def main():
            return torch.ops.aten.convolution_backward(
                g, x, w, [w.shape[0]] if b is not None else None, [1] * nd, [k // 2] * nd, [1] * nd, False,
                [0] * nd, groups, [need_x, need_w, need_b])

        if nd == 1:
            dx, dw, db = main()
            _line_backward(g, ctx.kept, w, groups, dx, dw, need_x, need_w)
            return dx, dw, db, None, None, None
        band, (dx, dw, db) = _bands_around(
            ctx.bands_first,
            lambda: band_grads(g, ctx.kept, w, groups, need_x, need_w) if need_x or need_w else None,
            main)
        if band is not None:
            add_band_grads(dx, dw, band, k)
        return dx, dw, db, None, None, None
