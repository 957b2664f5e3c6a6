"""The ghost ring of a padding-free transposed convolution, as an autograd Function.

``out = F.conv_transposeNd(x) + (the transposed convolution of the ghosts)``: ghosts are
linear in ``x``, so their contribution is added to the plain output in place. The ghost
region is cut into thin slabs, one per axis (one per side where the two sides differ): the
ghosts of axis ``a`` over the data on the axes before ``a`` and over the extended range on the
axes after it. A slab's contribution is a lower-dimensional transposed convolution, with its
ghost rows folded into the batch, its sides into the channels and only the kernel taps that
reach an output into the output channels; slabs with the same kernel along their other axes
share one grouped convolution call. Backward: the plain convolution's backward plus the
slabs', added into the edges of the input gradient (:class:`RingTranspose`; a differentiable
backward goes through the composite form instead).

Saved for backward: ``x``, the weight and the thin slab inputs; nothing input-sized is
allocated beyond what the plain layer allocates. All geometry is worked out once per shape
(:func:`ring`) so that a call is a short sequence of torch operations.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..transpose_plan import TransposeAxis
from ._padded import composite_grads

_PLAIN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
# Ghost rows with more weights than this (all rows together) are formed by a matmul instead
# of scaled adds.
_ELEMENTWISE_MAX = 64

Rows = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class Extension:
    """Ghosts added on both sides of tensor dim ``dim``: ``low``/``high`` rows over the first/last entries."""

    dim: int
    low: Rows
    high: Rows


@dataclass(frozen=True)
class Slab:
    """The ghosts of one axis, on one or both sides, and where their transposed convolution lands.

    ``dim``: the tensor dim of the axis. The edge samples ``x[edge]`` along it (the ``span``
    nearest each side, sides in order) give the ``sides * t`` ghosts as ``rows @ x[edge]`` (block
    diagonal), then ``extensions`` add ghosts along the later axes. Each side reaches the output
    through ``n`` kernel taps along the axis (``kernel_index``: their flat indices in the kernel's
    spatial grid, ``(sides, n, *other taps)``). The slab's convolution output, rearranged to
    ``(N, C_out, sides*t*n, *)`` ((side, ghost, tap) order), lands at ``out_rows`` along the axis
    (``keep``: the entries that land inside the output, ``None`` for all) and, on each other axis,
    ``crops`` ``(lo, length, out_start)``; ``extents``/``conv_extents``: its input and convolution
    output extents along the other axes, ``out_lens`` the output's.
    """

    dim: int
    edge: tuple[int, ...]
    sides: int
    t: int
    rows: Rows
    extensions: tuple[Extension, ...]
    kernel_index: tuple[int, ...]
    n: int
    keep: tuple[int, ...] | None
    out_rows: tuple[int, ...]
    crops: tuple[tuple[int, int, int], ...]
    extents: tuple[int, ...]
    conv_extents: tuple[int, ...]
    out_lens: tuple[int, ...]


@dataclass(frozen=True)
class Group:
    """Slabs whose convolutions run as one grouped call: their inputs side by side along the
    channels, zero-padded at the end to ``shape`` along the other axes (``pads``: ``F.pad`` widths
    per slab; ``out_pads`` the same for their convolution outputs, whose common extent is
    ``conv_shape``); ``kernel_index``: the slabs' kernel taps, stacked."""

    slabs: tuple[Slab, ...]
    shape: tuple[int, ...]
    conv_shape: tuple[int, ...]
    pads: tuple[tuple[int, ...], ...]
    out_pads: tuple[tuple[int, ...], ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    kernel_index: tuple[int, ...]
    other_kernel: tuple[int, ...]

    @property
    def sides(self) -> int:
        return sum(s.sides for s in self.slabs)


@dataclass(frozen=True)
class Ring:
    """Everything a call needs: the plain convolution's arguments and the slab groups."""

    nd: int
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    groups: tuple[Group, ...]


def _reach(p: TransposeAxis, first: int, count: int) -> tuple[int, int]:
    """Kernel taps ``[j0, j1)`` through which input positions ``first .. first+count-1`` reach an output."""
    j0 = max(0, -(-(p.crop - (first + count - 1) * p.stride) // p.dilation))
    j1 = min(p.kernel_size, (p.out_len - 1 + p.crop - first * p.stride) // p.dilation + 1)
    return j0, j1


def _rows(matrix: Any) -> Rows:
    return tuple(tuple(float(v) for v in row) for row in matrix)


def _conv_extent(n: int, q: TransposeAxis) -> int:
    return (n - 1) * q.stride + (q.kernel_size - 1) * q.dilation + 1


def output_padding(p: TransposeAxis) -> int:
    """``output_padding`` that gives the plan's output length with its crop as torch's padding."""
    return p.out_len - ((p.length - 1) * p.stride - 2 * p.crop + (p.kernel_size - 1) * p.dilation + 1)


@dataclass(frozen=True)
class _Side:
    high: bool
    matrix: Any
    first: int
    j0: int
    n: int


def _sides(p: TransposeAxis, weights: Any) -> list[_Side]:
    """The sides of one axis whose ghosts reach an output."""
    out = []
    for high, matrix in ((False, weights.low), (True, weights.high)):
        t = matrix.shape[0]
        if t:
            first = p.length if high else -t
            j0, j1 = _reach(p, first, t)
            if j1 > j0:
                out.append(_Side(high, matrix, first, j0, j1 - j0))
    return out


def _slabs(plans: tuple[TransposeAxis, ...]) -> list[Slab]:
    weights = [p.ghost_weights() if p.has_ghosts else None for p in plans]
    kernel = tuple(p.kernel_size for p in plans)
    out = []
    for a, p in enumerate(plans):
        if weights[a] is None:
            continue
        others = [(b, q) for b, q in enumerate(plans) if b != a]
        extents = tuple(q.length + (q.before + q.after if b > a else 0) for b, q in others)
        crops = []
        for (b, q), n_in in zip(others, extents):
            shift = (-q.before if b > a else 0) * q.stride - q.crop     # conv output r lands on out[r + shift]
            lo, hi = max(0, -shift), min(_conv_extent(n_in, q), q.out_len - shift)
            crops.append((lo, hi - lo, lo + shift))
        if any(n <= 0 for _, n, _ in crops):
            continue
        sides = _sides(p, weights[a])
        shapes = {(side.matrix.shape, side.n) for side in sides}
        # Both sides in one slab when they have as many ghosts, edge samples and taps.
        for members in ([sides] if len(shapes) == 1 else [[side] for side in sides]):
            if not members:
                continue
            t, span = members[0].matrix.shape
            n = members[0].n
            pairs = [(side.first + i) * p.stride + (side.j0 + j) * p.dilation - p.crop
                     for side in members for i in range(t) for j in range(n)]
            kept = [(f, o) for f, o in enumerate(pairs) if 0 <= o < p.out_len]
            if not kept:
                continue
            rows = []
            for k, side in enumerate(members):
                for row in _rows(side.matrix):
                    rows.append((0.0,) * (k * span) + row + (0.0,) * ((len(members) - 1 - k) * span))
            index = []
            for side in members:
                for j in range(side.j0, side.j0 + n):
                    for taps in itertools.product(*(range(q.kernel_size) for _, q in others)):
                        full = list(taps)
                        full.insert(a, j)
                        index.append(int(np.ravel_multi_index(full, kernel)))
            out.append(Slab(
                dim=2 + a,
                edge=tuple(pos for side in members
                           for pos in range(p.length - span if side.high else 0, (p.length if side.high else span))),
                sides=len(members), t=t, rows=tuple(rows),
                extensions=tuple(Extension(2 + b, _rows(weights[b].low), _rows(weights[b].high))
                                 for b in range(a + 1, len(plans)) if weights[b] is not None),
                kernel_index=tuple(index), n=n,
                keep=None if len(kept) == len(pairs) else tuple(f for f, _ in kept),
                out_rows=tuple(o for _, o in kept), crops=tuple(crops), extents=extents,
                conv_extents=tuple(_conv_extent(e, q) for (_, q), e in zip(others, extents)),
                out_lens=tuple(q.out_len for _, q in others),
            ))
    return out


def _pad_widths(have: Sequence[int], want: Sequence[int]) -> tuple[int, ...]:
    widths: list[int] = []
    for h, w in zip(reversed(have), reversed(want)):
        widths += [0, w - h]
    return tuple(widths) if any(widths) else ()


@functools.lru_cache(maxsize=512)
def ring(plans: tuple[TransposeAxis, ...]) -> Ring:
    """The :class:`Ring` of a transposed convolution with these per-axis plans (cached)."""
    keyed: dict[tuple, list[Slab]] = {}
    for slab in _slabs(plans):
        others = tuple((q.kernel_size, q.stride, q.dilation) for b, q in enumerate(plans) if 2 + b != slab.dim)
        keyed.setdefault((slab.t, slab.n, others), []).append(slab)
    groups = []
    for (_, _, others_key), members in keyed.items():
        shape = tuple(max(col) for col in zip(*(s.extents for s in members)))
        conv_shape = tuple(max(col) for col in zip(*(s.conv_extents for s in members)))
        groups.append(Group(
            slabs=tuple(members), shape=shape, conv_shape=conv_shape,
            pads=tuple(_pad_widths(s.extents, shape) for s in members),
            out_pads=tuple(_pad_widths(s.conv_extents, conv_shape) for s in members),
            stride=tuple(k[1] for k in others_key) or (1,), dilation=tuple(k[2] for k in others_key) or (1,),
            kernel_index=tuple(i for s in members for i in s.kernel_index),
            other_kernel=tuple(k[0] for k in others_key),
        ))
    return Ring(
        nd=len(plans), stride=tuple(p.stride for p in plans), padding=tuple(p.crop for p in plans),
        output_padding=tuple(output_padding(p) for p in plans), dilation=tuple(p.dilation for p in plans),
        out_shape=tuple(p.out_len for p in plans), kernel=tuple(p.kernel_size for p in plans), groups=tuple(groups),
    )


@functools.lru_cache(maxsize=512)
def _index(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, device=device)


def _index_tensor(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Index tensors, cached in eager mode, built afresh while ``torch.compile``/``export`` trace."""
    return torch.tensor(values, device=device) if torch.compiler.is_compiling() else _index(values, device)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Ghosts are formed in at least float32 (DESIGN §2, precision)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _combine(rows: Rows, src: torch.Tensor, dim: int) -> torch.Tensor:
    """``rows @ src`` along ``dim`` (``src`` has ``len(rows[0])`` entries there)."""
    if len(rows) * len(rows[0]) > _ELEMENTWISE_MAX:
        m = torch.tensor(rows, dtype=src.dtype, device=src.device)
        return torch.matmul(src.movedim(dim, -1), m.T).movedim(-1, dim)
    cols = src.tensor_split(src.shape[dim], dim) if src.shape[dim] > 1 else (src,)
    parts = []
    for row in rows:
        terms = [(c, v) for c, v in enumerate(row) if v != 0.0]
        if not terms:
            parts.append(torch.zeros_like(cols[0]))
        elif len(terms) == 1 and terms[0][1] == 1.0:
            parts.append(cols[terms[0][0]])
        elif len(terms) == 2 and terms[0][1] + terms[1][1] == 1.0:
            # a*u + (1-a)*v, one fused op (every extrapolation row sums to 1)
            (c0, v0), (c1, _) = terms
            parts.append(torch.lerp(cols[c1], cols[c0], v0))
        else:
            acc = cols[terms[0][0]] * terms[0][1]
            for c, v in terms[1:]:
                acc = torch.add(acc, cols[c], alpha=v)
            parts.append(acc)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _transpose(rows: Rows) -> Rows:
    return tuple(zip(*rows))


def _extend(v: torch.Tensor, ext: Extension) -> torch.Tensor:
    n = v.shape[ext.dim]
    parts = [v]
    if ext.low:
        parts.insert(0, _combine(ext.low, v.narrow(ext.dim, 0, len(ext.low[0])), ext.dim))
    if ext.high:
        span = len(ext.high[0])
        parts.append(_combine(ext.high, v.narrow(ext.dim, n - span, span), ext.dim))
    return torch.cat(parts, ext.dim)


def _unextend(g: torch.Tensor, ext: Extension) -> torch.Tensor:
    """Adjoint of :func:`_extend`: fold the ghosts' gradient back onto the samples they came from."""
    before, after = len(ext.low), len(ext.high)
    n = g.shape[ext.dim] - before - after
    core = g.narrow(ext.dim, before, n).clone()
    if before:
        span = len(ext.low[0])
        core.narrow(ext.dim, 0, span).add_(_combine(_transpose(ext.low), g.narrow(ext.dim, 0, before), ext.dim))
    if after:
        span = len(ext.high[0])
        core.narrow(ext.dim, n - span, span).add_(
            _combine(_transpose(ext.high), g.narrow(ext.dim, before + n, after), ext.dim))
    return core


def _edge(x: torch.Tensor, slab: Slab) -> torch.Tensor:
    if slab.sides == 1:
        return x.narrow(slab.dim, slab.edge[0], len(slab.edge))
    return x.index_select(slab.dim, _index_tensor(slab.edge, x.device))


def _slab_input(x: torch.Tensor, slab: Slab, work: torch.dtype) -> torch.Tensor:
    """The slab's ghosts ``(N*t, sides*C, *others)`` (ghost rows in the batch, sides in the channels)."""
    edge = _edge(x, slab)
    v = _combine(slab.rows, edge if work == x.dtype else edge.to(work), slab.dim)
    for ext in slab.extensions:
        v = _extend(v, ext)
    if v.dtype != x.dtype:
        v = v.to(x.dtype)
    v = v.movedim(slab.dim, 2)                                   # (N, C, sides*t, *others)
    n, c = v.shape[0], v.shape[1]
    rest = tuple(v.shape[3:])
    v = v.reshape((n, c, slab.sides, slab.t) + rest).permute((0, 3, 2, 1) + tuple(range(4, 4 + len(rest))))
    return v.reshape((n * slab.t, slab.sides * c) + rest)


def _group_input(x: torch.Tensor, group: Group) -> torch.Tensor:
    work = _work_dtype(x.dtype)
    parts = []
    for slab, pad in zip(group.slabs, group.pads):
        v = _slab_input(x, slab, work)
        parts.append(F.pad(v, pad) if pad else v)
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _group_weight(weight: torch.Tensor, group: Group) -> torch.Tensor:
    """The slabs' taps ``(sides*C_in, C_out/g * n, *other taps)``, output channel ``c * n + j``."""
    cin, cg = weight.shape[0], weight.shape[1]
    n = group.slabs[0].n
    w = weight.reshape(cin, cg, -1).index_select(2, _index_tensor(group.kernel_index, weight.device))
    w = w.reshape((cin, cg, group.sides, n) + group.other_kernel).movedim(2, 0)
    return w.reshape((group.sides * cin, cg * n) + group.other_kernel)


def _group_conv(v: torch.Tensor, w: torch.Tensor, nd: int, group: Group, groups: int) -> torch.Tensor:
    if nd == 1:      # a 1-D slab is a matmul; run it as a length-1 convolution
        return F.conv_transpose1d(v.unsqueeze(-1), w.unsqueeze(-1), None, 1, 0, 0, groups, 1)
    return _PLAIN[nd - 1](v, w, None, group.stride, 0, 0, groups, group.dilation)


def _landing(t: torch.Tensor, slab: Slab) -> torch.Tensor:
    """``t`` (``out`` or its gradient) narrowed to where the slab lands on the other axes (a view)."""
    k = 0
    for dim in range(2, t.dim()):
        if dim != slab.dim:
            _, length, start = slab.crops[k]
            if length != slab.out_lens[k]:
                t = t.narrow(dim, start, length)
            k += 1
    return t


def _slab_parts(t: torch.Tensor, group, width: int, extents: str, full: Sequence[int]):
    """Each slab of ``group`` with its part of ``t``, the group's stacked result (``width``
    channels per side, slabs one after the other), cropped to the slab's ``extents`` (an
    attribute name) where they fall short of the group's ``full`` shape."""
    offset = 0
    for slab in group.slabs:
        part = t if len(group.slabs) == 1 else t.narrow(1, offset * width, slab.sides * width)
        offset += slab.sides
        for k, e in enumerate(getattr(slab, extents)):
            if e != full[k]:
                part = part.narrow(2 + k, 0, e)
        yield slab, part


def _add_slab(out: torch.Tensor, z: torch.Tensor, slab: Slab) -> None:
    """Add the slab's convolution output ``z`` ``(N*t, sides*C_out*n, *)`` into ``out`` where it lands."""
    batch, cout = out.shape[0], out.shape[1]
    zs = z.shape[2:] if out.dim() > 3 else ()
    y = z.reshape((batch, slab.t, slab.sides, cout, slab.n) + zs).movedim(3, 1).movedim(3, 2)
    y = y.reshape((batch, cout, -1) + zs)                       # (side, ghost, tap) order
    if slab.keep is not None:
        y = y.index_select(2, _index_tensor(slab.keep, y.device))
    for k, (lo, length, _) in enumerate(slab.crops):
        if length != slab.conv_extents[k]:
            y = y.narrow(3 + k, lo, length)
    _landing(out, slab).index_add_(slab.dim, _index_tensor(slab.out_rows, y.device), y.movedim(2, slab.dim))


def _slab_grad(grad: torch.Tensor, slab: Slab, rows: int) -> torch.Tensor:
    """Adjoint of :func:`_add_slab`: the gradient of the slab's convolution output ``(rows, sides*C_out*n, *)``."""
    g = _landing(grad, slab).index_select(slab.dim, _index_tensor(slab.out_rows, grad.device)).movedim(slab.dim, 2)
    batch, cout = grad.shape[0], grad.shape[1]
    zs = slab.conv_extents if grad.dim() > 3 else ()
    if slab.keep is not None or any(length != e for (_, length, _), e in zip(slab.crops, zs)):
        full = g.new_zeros((batch, cout, slab.sides * slab.t * slab.n) + zs)
        view = full
        for k, (lo, length, _) in enumerate(slab.crops):
            view = view.narrow(3 + k, lo, length)
        if slab.keep is not None:
            view.index_copy_(2, _index_tensor(slab.keep, g.device), g)
        else:
            view.copy_(g)
        g = full
    g = g.reshape((batch, cout, slab.sides, slab.t, slab.n) + zs)
    g = g.permute((0, 3, 2, 1, 4) + tuple(range(5, 5 + len(zs))))                  # (N, t, sides, C_out, n, *)
    return g.reshape((rows, -1) + zs)


def forward_ring(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, r: Ring, groups: int):
    """Plain transposed convolution plus every slab's contribution, and the groups' convolution
    inputs and weights, flat ``[v0, w0, v1, w1, ...]`` (for backward)."""
    out = _PLAIN[r.nd](x, weight, bias, r.stride, r.padding, r.output_padding, groups, r.dilation)
    inputs = []
    for group in r.groups:
        v = _group_input(x, group)
        w = _group_weight(weight, group)
        z = _group_conv(v, w, r.nd, group, groups * group.sides)
        for slab, zi in _slab_parts(z, group, z.shape[1] // group.sides, "conv_extents", group.conv_shape):
            _add_slab(out, zi, slab)
        inputs += [v, w]
    return out, inputs


def backward_ring(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, inputs: Sequence[torch.Tensor],
                  r: Ring, groups: int, has_bias: bool, needs: Sequence[bool]):
    """Gradients ``(x, weight, bias)`` (``None`` where not needed) of :func:`forward_ring`;
    ``inputs``: the groups' convolution inputs and weights as :func:`forward_ring` keeps them."""
    need_x, need_w, need_b = needs
    need_b = need_b and has_bias
    grad = grad.contiguous()
    gx, gw, gb = torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[1] * groups] if has_bias else None, r.stride, r.padding, r.dilation, True,
        r.output_padding, groups, [need_x, need_w, need_b],
    )
    if need_x or need_w:
        work = _work_dtype(x.dtype)
        cin, cg = weight.shape[0], weight.shape[1]
        for group, v, w in zip(r.groups, inputs[0::2], inputs[1::2]):
            parts = []
            for slab, pad in zip(group.slabs, group.out_pads):
                g = _slab_grad(grad, slab, v.shape[0])
                parts.append(F.pad(g, pad) if pad else g)
            gz = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            if r.nd == 1:
                v, w, gz = v.unsqueeze(-1), w.unsqueeze(-1), gz.unsqueeze(-1)
            zeros = [0] * len(group.stride)
            gv, gws, _ = torch.ops.aten.convolution_backward(
                gz, v, w, None, group.stride, zeros, group.dilation, True, zeros, groups * group.sides,
                [need_x, need_w, False])
            if need_w:
                n = group.slabs[0].n
                g_w = gws.reshape((group.sides, cin, cg, n) + group.other_kernel).movedim(0, 2)
                gw.view(cin, cg, -1).index_add_(2, _index_tensor(group.kernel_index, gw.device),
                                                g_w.reshape(cin, cg, -1))
            if need_x:
                if r.nd == 1:
                    gv = gv.squeeze(-1)
                for slab, g in _slab_parts(gv, group, cin, "extents", group.shape):
                    # (N*t, sides*C, *others) -> (N, C, sides*t, *others) -> the slab's layout
                    g = g.reshape((x.shape[0], slab.t, slab.sides, cin) + g.shape[2:]).movedim(3, 1).movedim(2, 3)
                    g = g.reshape((x.shape[0], cin, -1) + g.shape[4:]).movedim(2, slab.dim)
                    if g.dtype != work:
                        g = g.to(work)
                    for ext in reversed(slab.extensions):
                        g = _unextend(g, ext)
                    ge = _combine(_transpose(slab.rows), g, slab.dim)
                    if slab.sides == 1:
                        gx.narrow(slab.dim, slab.edge[0], len(slab.edge)).add_(ge)
                    else:
                        gx.index_add_(slab.dim, _index_tensor(slab.edge, gx.device), ge.to(gx.dtype))
    return (gx if need_x else None, gw if need_w else None, gb if need_b else None)


class RingTranspose(torch.autograd.Function):
    """``apply(x, weight, bias, ring, groups, composite)``: ``F.conv_transposeNd`` plus the ghost
    ring of :class:`Ring` ``ring``, batched ``x`` ``(N, C, *L)``, as one autograd node. A backward
    that must itself be differentiable (``create_graph=True``) differentiates ``composite``, the
    same layer from plain operations."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, r: Ring, groups: int,
                composite: Any) -> torch.Tensor:
        out, inputs = forward_ring(x, weight, bias, r, groups)
        ctx.save_for_backward(x, weight, bias, *inputs)
        ctx.ring, ctx.groups, ctx.composite = r, groups, composite
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight, bias, *inputs = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            grads = composite_grads(ctx.composite, (x, weight, bias), needs, grad)
        else:
            grads = backward_ring(grad, x, weight, inputs, ctx.ring, ctx.groups, bias is not None, needs)
        return (*grads, None, None, None)
