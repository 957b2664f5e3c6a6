"""A transposed layer on the C++ kernels: the plain layer plus its ghost ring.

The output is the plain layer's (``F.conv_transposeNd`` of ``x``, the layer's own padding) plus,
for each pair of a ghost and a kernel tap that lands on an output, ``W[:, :, tap]^T ghost``
there; backward is the plain layer's ``convolution_backward`` plus the pairs' share of ``dW``
and of ``dx`` (each ghost's gradient spread onto the samples it is made of). The pairs are few
(k=5 on 12² maps: 351 against the interior's 3600); the C++ ``Slots`` gather them per tap, the
taps bucketed by pair count, and one ``torch.bmm`` per bucket and direction does the arithmetic.
Convolving the ghost-padded input instead (the PyTorch operations' way) raises the padding past
the plain layer's, and oneDNN's backward then costs 1.5-2x. Both give the same values (tested).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from . import _native


class Ring(NamedTuple):
    """The ghost ring of one transposed layout: ``taps`` the kernel taps (flat) that pair a ghost
    with an output, in buckets whose taps have as many slots each; ``ghosts`` and ``outputs`` the
    C++ ``Slots`` of the pairs' ghosts and outputs, per bucket tap-major."""

    ghosts: Any
    outputs: Any
    taps: list[list[int]]


_RINGS: dict = {}


def ring_for(lay: Any, kernel: tuple[int, ...], out: tuple[int, ...]) -> Ring | None:
    """The :class:`Ring` of a transposed :class:`~diffconv.torch._padded.Layout` with kernel
    ``kernel`` and output lengths ``out`` (``None`` where no ghost reaches an output). Cached by the
    layout's identity: layouts are cached per call signature, kernel included."""
    hit = _RINGS.get(id(lay))
    if hit is None or hit[0] is not lay:
        if len(_RINGS) > 512:
            _RINGS.clear()
        hit = _RINGS[id(lay)] = (lay, _build(lay, kernel, out))
    return hit[1]


def plain_padding(lay: Any) -> tuple[int, ...]:
    """The padding of the plain transposed layer (the layout's, less the ghosts it adds)."""
    return tuple(p - s * ax.before for p, s, ax in zip(lay.padding, lay.strides, lay.axes))


def _build(lay: Any, kernel: tuple[int, ...], out: tuple[int, ...]) -> Ring | None:
    axes, nd = lay.axes, len(lay.axes)
    grid = np.indices([ax.before + ax.length + ax.after for ax in axes]).reshape(nd, -1)
    inner = np.logical_and.reduce([(grid[a] >= ax.before) & (grid[a] < ax.before + ax.length)
                                   for a, ax in enumerate(axes)])
    ring = grid[:, ~inner]
    taps = np.indices(kernel).reshape(nd, -1)
    reach = [lay.strides[a] * ring[a][:, None] - lay.padding[a] + lay.dilations[a] * taps[a][None, :]
             for a in range(nd)]
    hits = np.logical_and.reduce([(q >= 0) & (q < n) for q, n in zip(reach, out)])       # (ring, taps)
    if not hits.any():
        return None
    flat_out = np.ravel_multi_index([np.clip(q, 0, n - 1) for q, n in zip(reach, out)], out)
    used = np.flatnonzero(hits.any(axis=1))
    outputs = np.unique(flat_out[hits])
    ghost_buckets, output_buckets, tap_buckets = [], [], []
    for taps_in in _buckets(hits.sum(axis=0)):
        slots = int(hits[:, taps_in].sum(axis=0).max())
        ghost_slots = np.full((len(taps_in), slots), len(used))      # index len(...): a zero slot
        output_slots = np.full((len(taps_in), slots), len(outputs))
        for i, t in enumerate(taps_in):
            found = np.flatnonzero(hits[:, t])
            ghost_slots[i, :len(found)] = np.searchsorted(used, found)
            output_slots[i, :len(found)] = np.searchsorted(outputs, flat_out[found, t])
        ghost_buckets.append(ghost_slots.ravel().tolist())
        output_buckets.append(output_slots.ravel().tolist())
        tap_buckets.append(taps_in.tolist())
    # Per axis and padded position: the (sample, weight) pairs it is made of.
    made_of = [_native.side_rows(ax.low, ax.low_start) + [[(i, 1.0)] for i in range(ax.length)]
               + _native.side_rows(ax.high, ax.high_start) for ax in axes]
    rows = [_product([made_of[a][ring[a][r]] for a in range(nd)], [ax.length for ax in axes]) for r in used]
    slots_of, counts = _native.kernels().Slots, [len(t) for t in tap_buckets]
    return Ring(slots_of(rows, ghost_buckets, counts),
                slots_of([[(int(o), 1.0)] for o in outputs], output_buckets, counts), tap_buckets)


def _buckets(pairs: np.ndarray) -> list[np.ndarray]:
    """The taps with pairs, grouped so that each group's counts are at least 3/4 of its largest: a
    group is one batched product, each tap's pairs padded to the group's largest count."""
    order = [t for t in np.argsort(-pairs, kind="stable") if pairs[t] > 0]
    groups: list[list[int]] = []
    for t in order:
        if groups and 4 * pairs[t] >= 3 * pairs[groups[-1][0]]:
            groups[-1].append(t)
        else:
            groups.append([t])
    return [np.array(sorted(g)) for g in groups]


def _product(rows: list, lengths: list[int]) -> list[tuple[int, float]]:
    """The tensor product of per-axis (sample, weight) lists, as flat sample indices."""
    terms = [(0, 1.0)]
    for row, n in zip(rows, lengths):
        terms = [(i * n + j, v * u) for i, v in terms for j, u in row]
    return terms


def ring_forward(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, ring: Ring | None, groups: int) -> torch.Tensor:
    """Adds the ghosts' share onto the plain layer's output ``y`` ``(N, C_out, *out)``, in place;
    ``x`` ``(N, C_in, *L)`` contiguous, ``w`` ``(C_in, C_out/groups, *k)``."""
    if ring is None:
        return y
    y = y.contiguous()                     # (channels-last weights make a channels-last output)
    taps = _native.kernels().taps_of(w.contiguous(), ring.taps, groups)
    ghosts = ring.ghosts.gather(x, groups)                               # per bucket (taps * groups, ...)
    ring.outputs.scatter_add_(y, [torch.bmm(pairs, w_t) for pairs, w_t in zip(ghosts, taps)])
    return y


def ring_grads(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias: bool, lay: Any, groups: int,
               needs: tuple[bool, bool, bool]):
    """``(dx, dW, db)`` of a transposed layer for the output gradient ``g`` ``(N, C_out, *out)``."""
    need_x, need_w, need_b = needs
    g = g.contiguous()
    dx, dw, db = torch.ops.aten.convolution_backward(
        g, x, w, [w.shape[1] * groups] if bias else None, list(lay.strides), list(plain_padding(lay)),
        list(lay.dilations), True, list(lay.output_padding), groups, [need_x, need_w, need_b])
    ring = ring_for(lay, tuple(w.shape[2:]), tuple(g.shape[2:]))
    if ring is None or not (need_x or need_w):
        return dx, dw, db
    kernels = _native.kernels()
    reached = ring.outputs.gather(g, groups)                      # per bucket (taps * groups, slots * N, C_out/g)
    if need_w:
        dw = dw.contiguous()
        kernels.add_taps_(dw, [torch.bmm(ghosts.transpose(1, 2), out)
                               for ghosts, out in zip(ring.ghosts.gather(x, groups), reached)], ring.taps)
    if need_x:
        dx = dx.contiguous()
        taps = kernels.taps_of(w.contiguous(), ring.taps, groups)
        ring.ghosts.scatter_add_(dx, [torch.bmm(out, w_t.transpose(1, 2)) for out, w_t in zip(reached, taps)])
    return dx, dw, db
