"""``flax.linen`` layers: :class:`DiffConv`, a drop-in for ``nn.Conv(padding='SAME')``, and
:class:`DiffConvTranspose`, a drop-in for ``nn.ConvTranspose``."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen import module as _module
from flax.linen.dtypes import promote_dtype
from flax.linen.linear import default_kernel_init

from .._checks import check_groups
from ._layer import apply_conv, apply_conv_transpose, check_input_rank, freeze_spec, kernel_size_tuple, per_axis

__all__ = ["DiffConv", "DiffConvTranspose", "padding_free"]


def _autoname_like(module: nn.Module, flax_class: str) -> None:
    """Name an unnamed ``module`` in a compact parent as Flax names ``flax_class`` (``Conv_0``,
    ``Conv_1``, ... sharing that class's counter), so that swapping the Flax layer for this one
    keeps the parameter tree."""
    parent = module.parent
    if parent is _module._unspecified_parent:
        parent = _module._context.module_stack[-1]
    if module.name is None and isinstance(parent, nn.Module) and not parent._state.in_setup \
            and parent._initialization_allowed:
        cursor = parent._state.autoname_cursor.get(flax_class, 0)
        object.__setattr__(module, "name", f"{flax_class}_{cursor}")
        parent._state.autoname_cursor[flax_class] = cursor + 1


class DiffConv(nn.Module):
    """Size-keeping convolution whose border sees Lagrange ghosts instead of zeros.

    The ``flax.linen.Conv`` attributes minus ``padding``/``input_dilation``/``mask``, with the same
    defaults and parameter names (``kernel`` ``(*kernel_size, in/groups, features)``, ``bias``
    ``(features,)``), so ``nn.Conv`` parameters load unchanged. ``edge_kernel=True`` adds
    ``edge_kernel``/``edge_bias`` parameters (initialised as copies of ``kernel``/``bias``) used by
    the outputs whose window reaches past the data; ``boundary_input_grad=False`` stops those
    outputs' gradient to the input. ``boundary`` (per spatial axis and side, e.g. ``("diff",
    "circular")`` for ``(H, W)``) and ``order`` (ghost degree ``0 .. k-1``) as in
    :func:`diffconv.jax.conv`; the parameter tree does not depend on them.
    Input ``(*batch, *L, C)``, output ``(*batch, *ceil(L/s), features)``.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: None | int | Sequence[int] = 1
    kernel_dilation: None | int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Any = default_kernel_init
    bias_init: Any = nn.initializers.zeros_init()
    promote_dtype: Any = promote_dtype
    edge_kernel: bool = False
    boundary_input_grad: bool = True
    boundary: Any = "diff"
    order: Any = None

    def __post_init__(self) -> None:
        _autoname_like(self, "Conv")
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        ks = kernel_size_tuple(self.kernel_size)
        nd = len(ks)
        if not isinstance(self.edge_kernel, bool):
            raise TypeError(f"edge_kernel must be a bool, got {self.edge_kernel!r}")
        check_input_rank(inputs, ks)
        in_features = inputs.shape[-1]
        groups = check_groups("feature_group_count", self.feature_group_count, **{"input features": in_features})
        kernel = self.param("kernel", self.kernel_init, ks + (in_features // groups, self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        edge_kernel = edge_bias = None
        if self.edge_kernel:
            edge_kernel = self.param("edge_kernel", lambda _key: kernel)
            edge_bias = self.param("edge_bias", lambda _key: bias) if self.use_bias else None
        inputs, kernel, bias, edge_kernel, edge_bias = self.promote_dtype(
            inputs, kernel, bias, edge_kernel, edge_bias, dtype=self.dtype
        )
        return apply_conv(
            inputs, kernel, nd, bias=bias,
            strides=per_axis(self.strides, nd), dilation=per_axis(self.kernel_dilation, nd),
            feature_group_count=groups, edge_kernel=edge_kernel, edge_bias=edge_bias,
            boundary_input_grad=self.boundary_input_grad, precision=self.precision,
            boundary=freeze_spec(self.boundary), order=freeze_spec(self.order),
        )


class DiffConvTranspose(nn.Module):
    """``flax.linen.ConvTranspose`` whose border outputs sum over ghosts instead of missing inputs.

    The same attributes, defaults, parameters (``kernel`` ``(*kernel_size, in, features)``, or
    ``(*kernel_size, features, in)`` with ``transpose_kernel=True``; ``bias`` ``(features,)``) and
    output shapes for ``padding='SAME'``, ``'VALID'``, an int or ``(low, high)`` pairs (in
    ``lax.conv_transpose``'s meaning); ``'CIRCULAR'`` padding is rejected: ``boundary`` chooses the
    ghosts per spatial axis and side instead (``"circular"`` among its modes) and ``order`` their
    degree (``0 .. m-1``), as in :func:`diffconv.jax.conv_transpose`. Input ``(*batch, *L, in)``.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: None | int | Sequence[int] = None
    padding: Any = "SAME"
    kernel_dilation: None | int | Sequence[int] = None
    use_bias: bool = True
    mask: Any = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Any = default_kernel_init
    bias_init: Any = nn.initializers.zeros_init()
    transpose_kernel: bool = False
    promote_dtype: Any = promote_dtype
    preferred_element_type: Any = None
    boundary: Any = "diff"
    order: Any = None

    def __post_init__(self) -> None:
        _autoname_like(self, "ConvTranspose")
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        ks = kernel_size_tuple(self.kernel_size)
        check_input_rank(inputs, ks)
        in_features = inputs.shape[-1]
        kernel_shape = ks + ((self.features, in_features) if self.transpose_kernel else (in_features, self.features))
        if self.mask is not None and tuple(self.mask.shape) != kernel_shape:
            raise ValueError(f"mask must have the kernel's shape {kernel_shape}, got {tuple(self.mask.shape)}")
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
        if self.mask is not None:
            kernel = kernel * self.mask
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        return apply_conv_transpose(self, inputs, kernel, bias)


from ._dropin import padding_free  # noqa: E402  (imports nothing from this module)
