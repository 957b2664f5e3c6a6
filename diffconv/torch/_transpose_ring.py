"""The ghost ring of a padding-free transposed convolution, as an autograd Function.

``out = F.conv_transposeNd(x) + (the transposed convolution of the ghosts)``: ghosts are
linear in ``x``, so their contribution is added to the plain output in place. The ghost
region is cut into one thin slab per axis and side: the ghosts of axis ``a`` over the data on
the axes before ``a`` and over the extended range on the axes after it. A slab's contribution
is a lower-dimensional transposed convolution, with the slab's ghost rows folded into the
batch and only the kernel taps that reach an output folded into the output channels; slabs
with the same kernel along their other axes share one grouped convolution call. Backward: the
plain convolution's backward plus the slabs', added into the edges of the input gradient.

Saved for backward: ``x``, the weight and the thin slab inputs; nothing input-sized is
allocated beyond what the plain layer allocates. All geometry is worked out once per shape
(:func:`ring`) so that a call is a short sequence of torch operations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..transpose_plan import TransposeAxis

_PLAIN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
# Ghost rows with more weights than this are formed by a matmul instead of scaled adds.
_ELEMENTWISE_MAX = 16

Rows = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class Extension:
    """Ghosts added on both sides of tensor dim ``dim``: ``low``/``high`` rows over the first/last entries."""

    dim: int
    low: Rows
    high: Rows


@dataclass(frozen=True)
class Slab:
    """One side's ghosts of one axis and where their transposed convolution lands.

    ``dim``: the tensor dim of the axis; the ghosts are ``rows @ x[start : start + span]`` along
    it, then ``extensions`` along the later axes. ``taps = (j0, n)``: the kernel taps along the
    axis through which the slab reaches an output. Its convolution output ``(N*t, C_out*n, *)``
    is rearranged to ``(N, C_out, t*n, *)`` ((ghost, tap) pairs ghost-major); ``keep`` selects the
    pairs that land inside the output (``None``: all) and ``out_rows`` says where (``out_range``:
    the same as ``(start, length)`` when contiguous); ``crops``: per other axis ``(lo, length,
    out_start)``, the part that lands inside the output; ``extents``/``conv_extents``: the slab's
    input and own convolution output extents along the other axes.
    """

    dim: int
    start: int
    span: int
    rows: Rows
    extensions: tuple[Extension, ...]
    taps: tuple[int, int]
    keep: tuple[int, ...] | None
    out_rows: tuple[int, ...]
    out_range: tuple[int, int] | None
    crops: tuple[tuple[int, int, int], ...]
    extents: tuple[int, ...]
    conv_extents: tuple[int, ...]
    out_lens: tuple[int, ...]


@dataclass(frozen=True)
class Group:
    """Slabs whose convolutions run as one grouped call, their inputs zero-padded at the end to
    ``shape`` along the other axes (``pads``: ``F.pad`` widths per slab, ``out_pads`` the same for
    their convolution outputs)."""

    slabs: tuple[Slab, ...]
    shape: tuple[int, ...]
    conv_shape: tuple[int, ...]
    pads: tuple[tuple[int, ...], ...]
    out_pads: tuple[tuple[int, ...], ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]


@dataclass(frozen=True)
class Ring:
    """Everything a call needs: the plain convolution's arguments and the slab groups."""

    nd: int
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out_shape: tuple[int, ...]
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


def _slabs(plans: tuple[TransposeAxis, ...]) -> list[Slab]:
    weights = [p.ghost_weights() if p.has_ghosts else None for p in plans]
    out = []
    for a, p in enumerate(plans):
        if weights[a] is None:
            continue
        others = [(b, q) for b, q in enumerate(plans) if b != a]
        extents = tuple(q.length + (q.before + q.after if b > a else 0) for b, q in others)
        for high, matrix in ((False, weights[a].low), (True, weights[a].high)):
            t = matrix.shape[0]
            if not t:
                continue
            first = p.length if high else -t
            j0, j1 = _reach(p, first, t)
            if j1 <= j0:
                continue
            pairs = [(i * (j1 - j0) + j, (first + i) * p.stride + (j0 + j) * p.dilation - p.crop)
                     for i in range(t) for j in range(j1 - j0)]
            kept = [(f, o) for f, o in pairs if 0 <= o < p.out_len]
            crops = []
            for (b, q), n_in in zip(others, extents):
                shift = (-q.before if b > a else 0) * q.stride - q.crop     # conv output r lands on out[r + shift]
                lo, hi = max(0, -shift), min(_conv_extent(n_in, q), q.out_len - shift)
                crops.append((lo, hi - lo, lo + shift))
            if not kept or any(n <= 0 for _, n, _ in crops):
                continue
            rows_out = tuple(o for _, o in kept)
            contiguous = rows_out == tuple(range(rows_out[0], rows_out[0] + len(rows_out)))
            span = matrix.shape[1]
            out.append(Slab(
                dim=2 + a, start=p.length - span if high else 0, span=span, rows=_rows(matrix),
                extensions=tuple(Extension(2 + b, _rows(weights[b].low), _rows(weights[b].high))
                                 for b in range(a + 1, len(plans)) if weights[b] is not None),
                taps=(j0, j1 - j0),
                keep=None if len(kept) == len(pairs) else tuple(f for f, _ in kept),
                out_rows=rows_out, out_range=(rows_out[0], len(rows_out)) if contiguous else None,
                crops=tuple(crops), extents=extents,
                conv_extents=tuple(_conv_extent(n, q) for (_, q), n in zip(others, extents)),
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
        keyed.setdefault((len(slab.rows), slab.taps[1], others), []).append(slab)
    groups = []
    for members in keyed.values():
        shape = tuple(max(col) for col in zip(*(s.extents for s in members)))
        conv_shape = tuple(max(col) for col in zip(*(s.conv_extents for s in members)))
        others = [q for b, q in enumerate(plans) if 2 + b != members[0].dim]
        groups.append(Group(
            slabs=tuple(members), shape=shape, conv_shape=conv_shape,
            pads=tuple(_pad_widths(s.extents, shape) for s in members),
            out_pads=tuple(_pad_widths(s.conv_extents, conv_shape) for s in members),
            stride=tuple(q.stride for q in others) or (1,), dilation=tuple(q.dilation for q in others) or (1,),
        ))
    return Ring(
        nd=len(plans), stride=tuple(p.stride for p in plans), padding=tuple(p.crop for p in plans),
        output_padding=tuple(output_padding(p) for p in plans), dilation=tuple(p.dilation for p in plans),
        out_shape=tuple(p.out_len for p in plans), groups=tuple(groups),
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
    parts = []
    for row in rows:
        terms = [(c, v) for c, v in enumerate(row) if v != 0.0]
        if not terms:
            parts.append(torch.zeros_like(src.narrow(dim, 0, 1)))
        elif len(terms) == 1 and terms[0][1] == 1.0:
            parts.append(src.narrow(dim, terms[0][0], 1))
        elif len(terms) == 2 and terms[0][1] + terms[1][1] == 1.0:
            # a*u + (1-a)*v, one fused op (every extrapolation row sums to 1)
            (c0, v0), (c1, _) = terms
            parts.append(torch.lerp(src.narrow(dim, c1, 1), src.narrow(dim, c0, 1), v0))
        else:
            acc = src.narrow(dim, terms[0][0], 1) * terms[0][1]
            for c, v in terms[1:]:
                acc = torch.add(acc, src.narrow(dim, c, 1), alpha=v)
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


def _slab_input(x: torch.Tensor, slab: Slab, work: torch.dtype) -> torch.Tensor:
    """The slab's ghosts ``(N*t, C, *others)`` (ghost rows folded into the batch), in ``x.dtype``."""
    edge = x.narrow(slab.dim, slab.start, slab.span)
    v = _combine(slab.rows, edge if work == x.dtype else edge.to(work), slab.dim)
    for ext in slab.extensions:
        v = _extend(v, ext)
    if v.dtype != x.dtype:
        v = v.to(x.dtype)
    v = v.movedim(slab.dim, 1)
    return v.reshape((-1,) + v.shape[2:])


def _slab_weight(weight: torch.Tensor, slab: Slab) -> torch.Tensor:
    """Taps ``slab.taps`` along the axis folded into the output channels: ``(C_in, C_out/g * n, *others)``,
    output channel ``c * n + j``."""
    w = weight.narrow(slab.dim, *slab.taps).movedim(slab.dim, 2)
    return w.reshape((w.shape[0], -1) + w.shape[3:])


def _group_input(x: torch.Tensor, group: Group) -> torch.Tensor:
    work = _work_dtype(x.dtype)
    parts = []
    for slab, pad in zip(group.slabs, group.pads):
        v = _slab_input(x, slab, work)
        parts.append(F.pad(v, pad) if pad else v)
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _group_weight(weight: torch.Tensor, group: Group) -> torch.Tensor:
    parts = [_slab_weight(weight, slab) for slab in group.slabs]
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


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


def _add_slab(out: torch.Tensor, z: torch.Tensor, slab: Slab) -> None:
    """Add the slab's own convolution output ``z`` ``(N*t, C_out*n, *)`` into ``out`` where it lands."""
    n = slab.taps[1]
    batch, cout = out.shape[0], out.shape[1]
    zs = z.shape[2:] if out.dim() > 3 else ()
    y = z.reshape((batch, -1, cout, n) + zs).movedim(1, 2).reshape((batch, cout, -1) + zs)
    if slab.keep is not None:
        y = y.index_select(2, _index_tensor(slab.keep, y.device))
    for k, (lo, length, _) in enumerate(slab.crops):
        if length != slab.conv_extents[k]:
            y = y.narrow(3 + k, lo, length)
    y = y.movedim(2, slab.dim)
    dst = _landing(out, slab)
    if slab.out_range is not None:
        dst.narrow(slab.dim, *slab.out_range).add_(y)
    else:
        dst.index_add_(slab.dim, _index_tensor(slab.out_rows, y.device), y)


def _slab_grad(grad: torch.Tensor, slab: Slab, rows: int) -> torch.Tensor:
    """Adjoint of :func:`_add_slab`: the gradient of the slab's own convolution output ``(rows, C_out*n, *)``."""
    src = _landing(grad, slab)
    if slab.out_range is not None:
        g = src.narrow(slab.dim, *slab.out_range)
    else:
        g = src.index_select(slab.dim, _index_tensor(slab.out_rows, grad.device))
    g = g.movedim(slab.dim, 2)
    batch, cout, n = grad.shape[0], grad.shape[1], slab.taps[1]
    zs = slab.conv_extents if grad.dim() > 3 else ()
    if slab.keep is not None or any(length != e for (_, length, _), e in zip(slab.crops, zs)):
        full = g.new_zeros((batch, cout, (rows // batch) * n) + zs)
        view = full
        for k, (lo, length, _) in enumerate(slab.crops):
            view = view.narrow(3 + k, lo, length)
        if slab.keep is not None:
            view.index_copy_(2, _index_tensor(slab.keep, g.device), g)
        else:
            view.copy_(g)
        g = full
    return g.reshape((batch, cout, -1, n) + zs).movedim(2, 1).reshape((rows, -1) + zs)


def forward_ring(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, r: Ring, groups: int,
                 keep_inputs: bool = False):
    """Plain transposed convolution plus every slab's contribution; with ``keep_inputs`` also the
    groups' convolution inputs (for backward)."""
    out = _PLAIN[r.nd](x, weight, bias, r.stride, r.padding, r.output_padding, groups, r.dilation)
    inputs = []
    for group in r.groups:
        v = _group_input(x, group)
        count = len(group.slabs)
        z = _group_conv(v, _group_weight(weight, group), r.nd, group, groups * count)
        width = z.shape[1] // count
        for i, slab in enumerate(group.slabs):
            zi = z if count == 1 else z.narrow(1, i * width, width)
            for k, e in enumerate(slab.conv_extents):
                if e != group.conv_shape[k]:
                    zi = zi.narrow(2 + k, 0, e)
            _add_slab(out, zi, slab)
        if keep_inputs:
            inputs.append(v)
    return (out, inputs) if keep_inputs else out


def backward_ring(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, inputs: Sequence[torch.Tensor],
                  r: Ring, groups: int, has_bias: bool, needs: Sequence[bool]):
    """Gradients ``(x, weight, bias)`` (``None`` where not needed) of :func:`forward_ring`."""
    need_x, need_w, need_b = needs
    need_b = need_b and has_bias
    grad = grad.contiguous()
    gx, gw, gb = torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[1] * groups] if has_bias else None, r.stride, r.padding, r.dilation, True,
        r.output_padding, groups, [need_x, need_w, need_b],
    )
    if need_x or need_w:
        work = _work_dtype(x.dtype)
        cin = weight.shape[0]
        for group, v in zip(r.groups, inputs):
            count = len(group.slabs)
            w = _group_weight(weight, group)
            parts = []
            for slab, pad in zip(group.slabs, group.out_pads):
                g = _slab_grad(grad, slab, v.shape[0])
                parts.append(F.pad(g, pad) if pad else g)
            gz = parts[0] if count == 1 else torch.cat(parts, 1)
            kshape = tuple(w.shape[2:])
            if r.nd == 1:
                v, w, gz = v.unsqueeze(-1), w.unsqueeze(-1), gz.unsqueeze(-1)
            zeros = [0] * len(group.stride)
            gv, gws, _ = torch.ops.aten.convolution_backward(
                gz, v, w, None, group.stride, zeros, group.dilation, True, zeros, groups * count,
                [need_x, need_w, False])
            for i, slab in enumerate(group.slabs):
                if need_w:
                    g_w = gws if count == 1 else gws.narrow(0, i * cin, cin)
                    g_w = g_w.reshape((cin, -1, slab.taps[1]) + kshape)
                    gw.narrow(slab.dim, *slab.taps).add_(g_w.movedim(2, slab.dim))
                if need_x:
                    g = gv if count == 1 else gv.narrow(1, i * cin, cin)
                    if r.nd == 1:
                        g = g.squeeze(-1)
                    for k, e in enumerate(slab.extents):
                        if e != group.shape[k]:
                            g = g.narrow(2 + k, 0, e)
                    g = g.reshape((x.shape[0], -1) + g.shape[1:]).movedim(1, slab.dim)
                    if g.dtype != work:
                        g = g.to(work)
                    for ext in reversed(slab.extensions):
                        g = _unextend(g, ext)
                    ge = _combine(_transpose(slab.rows), g, slab.dim)
                    gx.narrow(slab.dim, slab.start, slab.span).add_(ge)
    return (gx if need_x else None, gw if need_w else None, gb if need_b else None)


class _Eager(torch.autograd.Function):
    """The ring as an autograd Function for plain autograd (no ``inspect`` call per use)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, r: Ring,
                groups: int) -> torch.Tensor:
        out, inputs = forward_ring(x, weight, bias, r, groups, keep_inputs=True)
        ctx.save_for_backward(x, weight, *inputs)
        ctx.save_for_forward(x, weight)
        ctx.ring, ctx.groups, ctx.has_bias = r, groups, bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight, *inputs = ctx.saved_tensors
        grads = backward_ring(grad, x, weight, inputs, ctx.ring, ctx.groups, ctx.has_bias, ctx.needs_input_grad[:3])
        return grads + (None, None)

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor | None, w_t: torch.Tensor | None, b_t: torch.Tensor | None, *_: Any):
        x, weight = ctx.saved_tensors[:2]
        return _tangent(x, weight, x_t, w_t, b_t, ctx.ring, ctx.groups)


class _Functorch(torch.autograd.Function):
    """The same for ``torch.func`` transforms (vmap, grad, vjp, jvp, jacrev/jacfwd)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, r: Ring, groups: int) -> torch.Tensor:
        return forward_ring(x, weight, bias, r, groups)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, weight, bias, r, groups = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.ring, ctx.groups, ctx.has_bias = r, groups, bias is not None

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        inputs = [_group_input(x, group) for group in ctx.ring.groups]
        grads = backward_ring(grad, x, weight, inputs, ctx.ring, ctx.groups, ctx.has_bias, ctx.needs_input_grad[:3])
        return grads + (None, None)

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor | None, w_t: torch.Tensor | None, b_t: torch.Tensor | None, *_: Any):
        x, weight = ctx.saved_tensors
        return _tangent(x, weight, x_t, w_t, b_t, ctx.ring, ctx.groups)


def _tangent(x: torch.Tensor, weight: torch.Tensor, x_t: torch.Tensor | None, w_t: torch.Tensor | None,
             b_t: torch.Tensor | None, r: Ring, groups: int) -> torch.Tensor:
    """Forward-mode derivative: the op is linear in ``x`` and in ``(weight, bias)`` separately."""
    out = None
    for xi, wi in ((x_t, weight), (x, w_t)):
        if xi is not None and wi is not None:
            t = forward_ring(xi, wi, None, r, groups)
            out = t if out is None else out + t
    if b_t is not None:
        bt = b_t.reshape((-1,) + (1,) * r.nd)
        if out is None:
            out = bt.new_zeros((x.shape[0], weight.shape[1] * groups) + r.out_shape)
        out = out + bt
    return out


def ghost_transpose(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, r: Ring,
                    groups: int) -> torch.Tensor:
    """``F.conv_transposeNd`` plus the ghost ring of :class:`Ring` ``r``; ``x`` batched ``(N, C, *L)``."""
    if torch._C._are_functorch_transforms_active():
        return _Functorch.apply(x, weight, bias, r, groups)
    return _Eager.apply(x, weight, bias, r, groups)
