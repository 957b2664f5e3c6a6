"""Padding-free transposed convolution for PyTorch (DESIGN §2, "Transposed convolution").

``conv_transpose1d/2d/3d`` take ``F.conv_transposeNd``'s arguments and return its output shape;
near the border each output's sum also runs over the ghost inputs it reaches outside the data
(polynomial extrapolations of the samples nearest the edge, :mod:`diffconv.transpose_plan`)
instead of missing them. ``DiffConvTranspose1d/2d/3d`` are the matching ``nn.ConvTransposeNd``
subclasses.

Two forms, chosen per call (:func:`_conv_transpose`):

* the ring (:mod:`._transpose_ring`), eager autograd: the plain ``F.conv_transposeNd`` of the
  input plus the transposed convolution of the thin ring of ghosts (ghosts are linear in the
  input), one autograd node; no padded copy of the input is made or saved for backward;
* :func:`composite`, wherever PyTorch traces or transforms the call (``torch.compile``/
  ``torch.export``, ``torch.jit.trace``, ``torch.func``, forward-mode AD, the meta device) and
  for a second derivative: the input extended by its ghosts with plain differentiable operations
  (:func:`~diffconv.torch._ghosts.pad_axis`), then one ``F.conv_transposeNd``.

Where no output reaches a ghost it is the plain ``F.conv_transposeNd`` call.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_tuple, check_float_dtype
from ..coefficients import source_span
from ..transpose_plan import TransposeAxis, transpose_axis_torch
from ._ghosts import Side, pad_axis
from ._transpose_ring import RingTranspose, ring
from ._validate import transformed

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "DiffConvTranspose1d", "DiffConvTranspose2d", "DiffConvTranspose3d"]

_PLAIN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _check_args(nd: int, input: Any, weight: Any, bias: Any, groups: Any) -> None:
    for name, value in (("input", input), ("weight", weight)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
    check_float_dtype("input", str(input.dtype).replace("torch.", ""))
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and value.dtype != input.dtype:
            raise TypeError(f"{name} dtype {value.dtype} does not match input dtype {input.dtype}")
    if input.dim() not in (nd + 1, nd + 2):
        raise ValueError(
            f"input must have rank {nd + 1} (unbatched) or {nd + 2} ((N, C, *L)) for conv_transpose{nd}d, "
            f"got shape {tuple(input.shape)}"
        )
    if weight.dim() != nd + 2:
        raise ValueError(f"weight must have rank {nd + 2} ((in, out/groups, *k)), got shape {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    cin = input.shape[-nd - 1]
    if weight.shape[0] != cin:
        raise ValueError(f"weight has {weight.shape[0]} input channels (dim 0), but input has {cin} channels")
    if cin % groups:
        raise ValueError(f"input channels ({cin}) must be divisible by groups ({groups})")
    cout = weight.shape[1] * groups
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"bias must have shape ({cout},), got {tuple(bias.shape)}")
    if any(n < 1 for n in input.shape[-nd:]):
        raise ValueError(f"input has an empty spatial axis, shape {tuple(input.shape)}")


def _conv_transpose(
    nd: int, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    stride: Any, padding: Any, output_padding: Any, groups: int, dilation: Any,
) -> torch.Tensor:
    _check_args(nd, input, weight, bias, groups)
    s = as_tuple("stride", stride, nd)
    p = as_tuple("padding", padding, nd, minimum=0)
    op = as_tuple("output_padding", output_padding, nd, minimum=0)
    d = as_tuple("dilation", dilation, nd)
    for i in range(nd):
        if op[i] >= max(s[i], d[i]):
            raise ValueError(
                f"output_padding must be smaller than stride or dilation on each axis, got output_padding={op}, "
                f"stride={s}, dilation={d}"
            )
    # int(): under torch.jit.trace sizes are traced values, under torch.export symbolic ints;
    # the geometry is fixed per shape, like the traced/exported graph itself.
    plans = tuple(transpose_axis_torch(int(n), int(k), si, pi, opi, di)
                  for n, k, si, pi, opi, di in zip(input.shape[-nd:], weight.shape[2:], s, p, op, d))
    unbatched = input.dim() == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    run = functools.partial(composite, plans=plans, output_padding=op, groups=groups)
    if not any(plan.has_ghosts for plan in plans):
        out = _PLAIN[nd](x, weight, bias, s, p, op, groups, d)
    elif transformed(x, weight, bias):
        out = run(x, weight, bias)
    else:
        out = RingTranspose.apply(x, weight, bias, ring(plans), groups, run)
    return out.squeeze(0) if unbatched else out


def composite(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, plans: Sequence[TransposeAxis],
              output_padding: Sequence[int], groups: int) -> torch.Tensor:
    """The layer from plain differentiable operations; ``x`` batched ``(N, C_in, *L)``.

    Each axis gets ``g = max(before, after)`` ghosts on both sides (the side that needs fewer
    gets ghosts whose outputs all fall outside the result), so that raising the padding by
    ``g * stride`` crops exactly what the extension adds and ``output_padding`` stays as it is.
    """
    widths = [max(p.before, p.after) for p in plans]
    for a, (p, g) in enumerate(zip(plans, widths)):
        if g:
            x = pad_axis(x, 2 + a, Side(p.nodes, p.lattice, g, g, source_span(p.nodes, p.lattice, p.length)))
    return _PLAIN[len(plans)](
        x, weight, bias, [p.stride for p in plans], [p.crop + g * p.stride for p, g in zip(plans, widths)],
        list(output_padding), groups, [p.dilation for p in plans],
    )


def conv_transpose1d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                     output_padding: int | Sequence[int] = 0, groups: int = 1,
                     dilation: int | Sequence[int] = 1) -> torch.Tensor:
    """``F.conv_transpose1d`` with ghosts instead of missing inputs. ``(N, C_in, L)`` or
    ``(C_in, L)``, weight ``(C_in, C_out/groups, k)`` -> ``(N, C_out, L_out)`` with torch's ``L_out``."""
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                     output_padding: int | Sequence[int] = 0, groups: int = 1,
                     dilation: int | Sequence[int] = 1) -> torch.Tensor:
    """``F.conv_transpose2d`` with ghosts instead of missing inputs. ``(N, C_in, H, W)`` or
    ``(C_in, H, W)``, weight ``(C_in, C_out/groups, kH, kW)`` -> torch's output shape."""
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose3d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                     output_padding: int | Sequence[int] = 0, groups: int = 1,
                     dilation: int | Sequence[int] = 1) -> torch.Tensor:
    """``F.conv_transpose3d`` with ghosts instead of missing inputs. ``(N, C_in, D, H, W)`` or
    ``(C_in, D, H, W)``, weight ``(C_in, C_out/groups, kD, kH, kW)`` -> torch's output shape."""
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation)


_FUNCTIONAL = {1: conv_transpose1d, 2: conv_transpose2d, 3: conv_transpose3d}


class _DiffConvTransposeMixin:
    """``nn.ConvTransposeNd``'s constructor without ``padding_mode``; same parameters and state-dict keys."""

    _nd: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        for name, value, minimum in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                     ("padding", padding, 0), ("output_padding", output_padding, 0),
                                     ("dilation", dilation, 1)):
            as_tuple(name, value, self._nd, minimum=minimum)
        super().__init__(  # type: ignore[call-arg]
            in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias, dilation,
            "zeros", device, dtype,
        )

    def forward(self, input: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        """``input`` ``(N, C_in, *L)`` or ``(C_in, *L)``; ``output_size`` picks ``output_padding`` as in torch."""
        output_padding = self._output_padding(  # type: ignore[attr-defined]
            input, None if output_size is None else list(output_size), list(self.stride),  # type: ignore[attr-defined]
            list(self.padding), list(self.kernel_size), self._nd, list(self.dilation),  # type: ignore[attr-defined]
        )
        return _FUNCTIONAL[self._nd](
            input, self.weight, self.bias, self.stride, self.padding,  # type: ignore[attr-defined]
            tuple(output_padding), self.groups, self.dilation,  # type: ignore[attr-defined]
        )


class DiffConvTranspose1d(_DiffConvTransposeMixin, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` whose border outputs sum over ghosts instead of missing inputs."""

    _nd = 1


class DiffConvTranspose2d(_DiffConvTransposeMixin, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose border outputs sum over ghosts instead of missing inputs."""

    _nd = 2


class DiffConvTranspose3d(_DiffConvTransposeMixin, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` whose border outputs sum over ghosts instead of missing inputs."""

    _nd = 3
