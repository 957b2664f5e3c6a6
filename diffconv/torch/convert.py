"""Swap the size-keeping ``nn.ConvNd`` layers of a model for their DiffConv twins, weights kept
(and, on request, every ``nn.ConvTransposeNd`` for its DiffConvTranspose twin)."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from ..boundary import BoundarySpec

from .conv_transpose import DiffConvTranspose1d, DiffConvTranspose2d, DiffConvTranspose3d
from .modules import DiffConv1d, DiffConv2d, DiffConv3d

__all__ = ["convert", "is_size_keeping"]

_TWIN: dict[type, type] = {nn.Conv1d: DiffConv1d, nn.Conv2d: DiffConv2d, nn.Conv3d: DiffConv3d}
_MODES = ("zeros", "reflect", "replicate", "circular")
_TRANSPOSED_TWIN: dict[type, type] = {
    nn.ConvTranspose1d: DiffConvTranspose1d, nn.ConvTranspose2d: DiffConvTranspose2d, nn.ConvTranspose3d: DiffConvTranspose3d,
}


def is_size_keeping(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain ``nn.Conv1d/2d/3d`` that DiffConv can stand in for.

    True when its padding puts ``(e - 1) // 2`` samples before and ``e // 2`` after every
    axis (``e`` the dilated kernel extent, at least one axis with ``e > 1``) and its
    ``padding_mode`` is zeros, reflect, replicate or circular. ``padding='same'`` always qualifies;
    integer padding ``p`` qualifies on axes with odd extent and ``p == (e - 1) // 2``, at any
    stride (its output length is then ``ceil(L / stride)``, as DiffConv's). Subclasses
    (DiffConv itself, user convs with their own ``forward``) and transposed convs never do.
    """
    if type(conv) not in _TWIN or conv.padding_mode not in _MODES:
        return False
    extents = [(k - 1) * d + 1 for k, d in zip(conv.kernel_size, conv.dilation)]
    if all(e == 1 for e in extents):
        return False  # a 1x1 conv sees no border: nothing to replace
    if conv.padding == "same":
        return True
    if isinstance(conv.padding, str):  # 'valid'
        return False
    return all(p == (e - 1) // 2 == e // 2 for p, e in zip(conv.padding, extents))


def _twin(conv: nn.Module, edge_kernel: bool, boundary_input_grad: bool, boundary: Any, order: Any) -> nn.Module:
    """The DiffConv twin of ``conv``, sharing its ``weight``/``bias`` Parameter objects."""
    cls = _TWIN[type(conv)]
    if boundary is None:
        boundary = "circular" if conv.padding_mode == "circular" else "diff"
    # Built on the meta device: no memory and no random init for tensors replaced below.
    new = cls(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.dilation, conv.groups,
        bias=conv.bias is not None, device="meta", dtype=conv.weight.dtype,
        edge_kernel=edge_kernel, boundary_input_grad=boundary_input_grad, boundary=boundary, order=order,
    )
    new.weight = conv.weight
    new.bias = conv.bias
    if edge_kernel:
        new.edge_weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=conv.weight.requires_grad)
        if conv.bias is not None:
            new.edge_bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=conv.bias.requires_grad)
    new.train(conv.training)
    return new


def _transposed_twin(conv: nn.Module, boundary: Any, order: Any) -> nn.Module:
    """The DiffConvTranspose twin of a plain ``nn.ConvTransposeNd``, sharing its Parameters."""
    cls = _TRANSPOSED_TWIN[type(conv)]
    new = cls(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.output_padding,
        conv.groups, conv.bias is not None, conv.dilation, device="meta", dtype=conv.weight.dtype,
        boundary="diff" if boundary is None else boundary, order=order,
    )
    new.weight = conv.weight
    new.bias = conv.bias
    new.train(conv.training)
    return new


def convert(module: nn.Module, *, boundary: BoundarySpec | None = None, order: int | Sequence[int | None] | None = None,
            edge_kernel: bool = False, boundary_input_grad: bool = True, transposed: bool = False) -> nn.Module:
    """Replace every size-keeping ``nn.Conv1d/2d/3d`` in ``module`` by its DiffConv twin.

    Works like ``nn.SyncBatchNorm.convert_sync_batchnorm``: children are replaced in place
    and the (possibly new) root is returned, so call it as ``model = convert(model)``.
    The twins share the original ``weight``/``bias`` Parameters (device, dtype and
    ``requires_grad`` kept; an optimizer built before stays valid) and the training flag,
    and the converted model loads the original state dict with ``strict=True``.
    ``edge_kernel=True`` gives each twin trainable ``edge_weight``/``edge_bias`` started as
    copies of ``weight``/``bias``; ``boundary_input_grad=False`` stops the input gradient of
    boundary outputs. ``boundary``/``order`` (as for :class:`~diffconv.torch.DiffConv2d`) apply to
    every swapped layer; with ``boundary=None`` a ``padding_mode='circular'`` layer becomes
    ``boundary="circular"`` (periodic data stays periodic) and every other one ``"diff"``.
    Left alone: see :func:`is_size_keeping`. ``transposed=True`` also replaces
    every plain ``nn.ConvTranspose1d/2d/3d`` (``padding_mode='zeros'``, the only one torch has) by
    its :class:`~diffconv.torch.DiffConvTranspose2d`-style twin, parameters shared the same way.
    Forward hooks and parametrizations registered on a replaced conv are not carried over.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(edge_kernel, bool):
        raise TypeError(f"edge_kernel must be a bool, got {edge_kernel!r}")
    if not isinstance(boundary_input_grad, bool):
        raise TypeError(f"boundary_input_grad must be a bool, got {boundary_input_grad!r}")
    if not isinstance(transposed, bool):
        raise TypeError(f"transposed must be a bool, got {transposed!r}")
    if is_size_keeping(module):
        return _twin(module, edge_kernel, boundary_input_grad, boundary, order)
    if transposed and type(module) in _TRANSPOSED_TWIN and module.padding_mode == "zeros":
        return _transposed_twin(module, boundary, order)
    for name, child in module.named_children():
        new = convert(child, boundary=boundary, order=order, edge_kernel=edge_kernel,
                      boundary_input_grad=boundary_input_grad, transposed=transposed)
        if new is not child:
            setattr(module, name, new)
    return module

