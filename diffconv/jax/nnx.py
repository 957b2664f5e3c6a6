"""``flax.nnx`` layers :class:`DiffConv` and :class:`DiffConvTranspose`, and :func:`convert`, which swaps
them in for the size-keeping ``nnx.Conv`` and ``'SAME'`` ``nnx.ConvTranspose`` of a model."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes
from types import MappingProxyType

from flax.nnx.nn.linear import canonicalize_padding, default_bias_init, default_kernel_init

from ._dropin import boundary_options, conv_layer_mode, flatten_batch, flax_grid_conv, flax_pads, restore_batch, \
    transpose_layer_qualifies
from .._checks import check_groups
from ..boundary import parse_boundary, parse_order
from ._layer import apply_conv, apply_conv_transpose, check_input_rank, freeze_spec, kernel_size_tuple, per_axis
from .conv_transpose import broadcast_per_axis, check_layer_padding

__all__ = ["DiffConv", "DiffConvTranspose", "convert"]


class DiffConv(nnx.Conv):
    """``nnx.Conv`` whose border sees Lagrange ghosts instead of padding.

    Same constructor as ``nnx.Conv`` minus ``padding``/``input_dilation``/``mask``, plus
    ``edge_kernel`` (adds ``edge_kernel``/``edge_bias`` params, copies of ``kernel``/``bias``,
    used by the outputs whose window reaches past the data) and ``boundary_input_grad`` (False:
    those outputs pass no gradient to the input), ``boundary`` (per spatial axis and side, e.g.
    ``("diff", "circular")`` for ``(H, W)``) and ``order`` (ghost degree ``0 .. k-1``) as in
    :func:`diffconv.jax.conv`. Attributes ``kernel`` ``(*k, in/groups, out)``, ``bias`` ``(out,)``
    as in ``nnx.Conv`` (no ``padding``: ``boundary`` says what the border sees). Input
    ``(*batch, *L, in)``, output ``(*batch, *ceil(L/s), out)``; ``out_sharding`` reshards it.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: None | int | Sequence[int] = 1,
        *,
        kernel_dilation: None | int | Sequence[int] = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Any = default_kernel_init,
        bias_init: Any = default_bias_init,
        promote_dtype: Any = dtypes.promote_dtype,
        edge_kernel: bool = False,
        boundary_input_grad: bool = True,
        boundary: Any = "diff",
        order: Any = None,
        rngs: nnx.Rngs,
    ) -> None:
        ks = kernel_size_tuple(kernel_size)
        for name, flag in (("edge_kernel", edge_kernel), ("boundary_input_grad", boundary_input_grad)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        check_groups("feature_group_count", feature_group_count, in_features=in_features, out_features=out_features)
        parse_boundary(boundary, len(ks))
        parse_order(order, len(ks), [k - 1 for k in ks])
        super().__init__(
            in_features, out_features, ks, strides, padding="SAME", kernel_dilation=kernel_dilation,
            feature_group_count=feature_group_count, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
            precision=precision, kernel_init=kernel_init, bias_init=bias_init, promote_dtype=promote_dtype, rngs=rngs,
        )
        del self.padding               # nnx.Conv's zero padding is not what this layer does
        self.boundary_input_grad = boundary_input_grad
        self.boundary = freeze_spec(boundary)
        self.order = freeze_spec(order)
        if edge_kernel:
            self.edge_kernel = nnx.Param(jnp.array(self.kernel[...], copy=True))
            self.edge_bias = nnx.Param(jnp.array(self.bias[...], copy=True)) if use_bias else nnx.data(None)
        else:
            self.edge_kernel = nnx.data(None)
            self.edge_bias = nnx.data(None)

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        nd = len(self.kernel_size)
        check_input_rank(inputs, tuple(self.kernel_size))
        values = [None if p is None else p[...] for p in (self.kernel, self.bias, self.edge_kernel, self.edge_bias)]
        inputs, kernel, bias, edge_kernel, edge_bias = self.promote_dtype((inputs, *values), dtype=self.dtype)
        y = apply_conv(
            inputs, kernel, nd, bias=bias,
            strides=per_axis(self.strides, nd), dilation=per_axis(self.kernel_dilation, nd),
            feature_group_count=self.feature_group_count, edge_kernel=edge_kernel, edge_bias=edge_bias,
            boundary_input_grad=self.boundary_input_grad, precision=self.precision,
            boundary=self.boundary, order=self.order,
        )
        # nnx.Conv hands out_sharding to its convolution (explicit sharding mode); here the ghosts
        # and border terms come after it, so the result is resharded instead.
        return y if out_sharding is None else jax.sharding.reshard(y, out_sharding)


class _FlaxGridDiffConv(DiffConv):
    """What :func:`convert` makes of a strided ``'SAME'`` ``nnx.Conv``: :class:`DiffConv` whose
    windows stay where that layer centres them (``lax`` splits strided 'SAME' padding by the
    input length, e.g. ``(0, 1)`` for ``k=3, s=2`` on even lengths), read from the stride-1
    result (:func:`._dropin.flax_grid_conv`). Input ``(*batch, *L, in)``, output Flax's."""

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        ks = tuple(self.kernel_size)
        nd = len(ks)
        check_input_rank(inputs, ks)
        values = [None if p is None else p[...] for p in (self.kernel, self.bias, self.edge_kernel, self.edge_bias)]
        inputs, kernel, bias, edge_kernel, edge_bias = self.promote_dtype((inputs, *values), dtype=self.dtype)
        x, batch_shape = flatten_batch(inputs, nd)
        strides = broadcast_per_axis(self.strides, nd, "strides")
        dils = broadcast_per_axis(self.kernel_dilation, nd, "kernel_dilation")
        y = flax_grid_conv(
            x, kernel, bias, pads=flax_pads("SAME", x.shape[1:-1], ks, strides, dils), strides=strides,
            dilation=dils, feature_group_count=self.feature_group_count, precision=self.precision,
            boundary=self.boundary, order=self.order, edge_kernel=edge_kernel,
            edge_bias=edge_bias, boundary_input_grad=self.boundary_input_grad,
        )
        y = restore_batch(y, batch_shape)
        return y if out_sharding is None else jax.sharding.reshard(y, out_sharding)


def _conv_mode(conv: Any) -> str | None:
    """:func:`._dropin.conv_layer_mode` of a plain ``nnx.Conv`` that :class:`DiffConv` can stand
    in for (no mask, input dilation, custom convolution or preferred element type), else None."""
    if type(conv) is not nnx.Conv:
        return None
    nd = len(conv.kernel_size)
    if broadcast_per_axis(conv.input_dilation, nd, "input_dilation") != (1,) * nd or conv.mask is not None \
            or conv.conv_general_dilated is not jax.lax.conv_general_dilated \
            or getattr(conv, "preferred_element_type", None) is not None:
        return None
    return conv_layer_mode(conv.padding, conv.kernel_size, broadcast_per_axis(conv.kernel_dilation, nd, "kernel_dilation"))


def _share(twin: nnx.Module, layer: nnx.Module) -> nnx.Module:
    """``twin`` holding ``layer``'s own ``kernel``/``bias`` variables (the same objects, so an
    optimizer's state and any other reference to them keep working)."""
    twin.kernel = layer.kernel
    if layer.bias is not None:
        twin.bias = layer.bias
    return twin


def _conv_twin(conv: nnx.Conv, mode: str, options: dict[str, Any]) -> DiffConv:
    kernel = conv.kernel[...]
    bias = None if conv.bias is None else conv.bias[...]
    options = dict(options)
    if mode == "circular" and "boundary" not in options:
        options["boundary"] = "circular"
    nd = len(conv.kernel_size)
    grid = canonicalize_padding(conv.padding, nd) == "SAME" and broadcast_per_axis(conv.strides, nd, "strides") != (1,) * nd
    cls = _FlaxGridDiffConv if grid else DiffConv
    twin = cls(
        conv.in_features, conv.out_features, conv.kernel_size, conv.strides,
        kernel_dilation=conv.kernel_dilation, feature_group_count=conv.feature_group_count,
        use_bias=conv.use_bias, dtype=conv.dtype, param_dtype=kernel.dtype, precision=conv.precision,
        kernel_init=lambda *_: kernel, bias_init=lambda *_: bias, promote_dtype=conv.promote_dtype,
        rngs=nnx.Rngs(0), **options,
    )
    return _share(twin, conv)


def _transpose_twin(conv: nnx.ConvTranspose, options: dict[str, Any]) -> "DiffConvTranspose":
    kernel = conv.kernel[...]
    bias = None if conv.bias is None else conv.bias[...]
    twin = DiffConvTranspose(
        conv.in_features, conv.out_features, conv.kernel_size, conv.strides, padding=conv.padding,
        kernel_dilation=conv.kernel_dilation, use_bias=conv.use_bias, mask=conv.mask, dtype=conv.dtype,
        param_dtype=kernel.dtype, precision=conv.precision, kernel_init=lambda *_: kernel,
        bias_init=lambda *_: bias, transpose_kernel=conv.transpose_kernel, promote_dtype=conv.promote_dtype,
        preferred_element_type=conv.preferred_element_type, rngs=nnx.Rngs(0), **options,
    )
    return _share(twin, conv)


def convert(
    model: nnx.Module,
    *,
    boundary: Any = None,
    order: Any = None,
    edge_kernel: bool = False,
    boundary_input_grad: bool = True,
) -> nnx.Module:
    """Replace, in place, each size-keeping ``nnx.Conv`` and ``'SAME'`` ``nnx.ConvTranspose`` of
    ``model`` by a :class:`DiffConv` / :class:`DiffConvTranspose` sharing its variables.

    Size-keeping: ``padding='SAME'`` (any stride; strided layers keep Flax's window positions),
    explicit ``((e-1)//2, e//2)`` pads per axis, or ``'CIRCULAR'``, which becomes
    ``boundary='circular'`` when ``boundary`` is None. A given ``boundary``/``order`` applies to
    every new layer. The new layers hold the very ``nnx.Param`` objects of the old ones, so an
    optimizer built before keeps stepping (``edge_kernel=True`` adds parameters it does not
    hold). Other paddings, masked or input-dilated convs and diffconv's own layers are left
    alone. Returns the model (a new layer when ``model`` itself is such a layer).
    """
    for name, flag in (("edge_kernel", edge_kernel), ("boundary_input_grad", boundary_input_grad)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    options = boundary_options(boundary, order)

    def twin_of(node: Any) -> nnx.Module | None:
        mode = _conv_mode(node)
        if mode is not None:
            return _conv_twin(node, mode, {**options, "edge_kernel": edge_kernel,
                                           "boundary_input_grad": boundary_input_grad})
        if type(node) is nnx.ConvTranspose and transpose_layer_qualifies(node.padding, len(node.kernel_size)):
            return _transpose_twin(node, options)
        return None

    top = twin_of(model)
    if top is not None:
        return top
    twins: dict[int, nnx.Module | None] = {}
    for path, node in list(nnx.iter_graph(model)):
        if not path:
            continue
        if id(node) not in twins:
            twins[id(node)] = twin_of(node)
        twin = twins[id(node)]
        if twin is None:
            continue
        parent = model
        for key in path[:-1]:
            parent = parent[key] if isinstance(key, int) or not hasattr(parent, str(key)) else getattr(parent, key)
        key = path[-1]
        if isinstance(key, int) or not hasattr(parent, str(key)):
            parent[key] = twin
        else:
            setattr(parent, key, twin)
    return model


class DiffConvTranspose(nnx.ConvTranspose):
    """``nnx.ConvTranspose`` whose border outputs sum over ghosts instead of missing inputs.

    The same constructor, attributes (``kernel`` ``(*kernel_size, in, out)``, or
    ``(*kernel_size, out, in)`` with ``transpose_kernel=True``; ``bias`` ``(out,)``) and output
    shapes for ``padding='SAME'``, ``'VALID'``, an int or ``(low, high)`` pairs (in
    ``lax.conv_transpose``'s meaning); ``'CIRCULAR'`` padding is rejected: ``boundary`` chooses the
    ghosts per spatial axis and side instead (``"circular"`` among its modes) and ``order`` their
    degree (``0 .. m-1``), as in :func:`diffconv.jax.conv_transpose`. Input ``(*batch, *L, in)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = None,
        *,
        padding: Any = "SAME",
        kernel_dilation: int | Sequence[int] | None = None,
        use_bias: bool = True,
        mask: Any = None,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Any = default_kernel_init,
        bias_init: Any = default_bias_init,
        transpose_kernel: bool = False,
        promote_dtype: Any = dtypes.promote_dtype,
        preferred_element_type: Any = None,
        rngs: nnx.Rngs,
        kernel_metadata: Any = MappingProxyType({}),
        bias_metadata: Any = MappingProxyType({}),
        boundary: Any = "diff",
        order: Any = None,
    ) -> None:
        ks = kernel_size_tuple(kernel_size)
        check_layer_padding(canonicalize_padding(padding, len(ks)))
        parse_boundary(boundary, len(ks))
        super().__init__(
            in_features, out_features, ks, strides, padding=padding, kernel_dilation=kernel_dilation,
            use_bias=use_bias, mask=mask, dtype=dtype, param_dtype=param_dtype, precision=precision,
            kernel_init=kernel_init, bias_init=bias_init, transpose_kernel=transpose_kernel,
            promote_dtype=promote_dtype, preferred_element_type=preferred_element_type, rngs=rngs,
            kernel_metadata=kernel_metadata, bias_metadata=bias_metadata,
        )
        self.boundary = freeze_spec(boundary)
        self.order = freeze_spec(order)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        ks = tuple(self.kernel_size)
        check_input_rank(inputs, ks)
        if self.mask is not None and tuple(self.mask.shape) != tuple(self.kernel_shape):
            raise ValueError(
                f"mask must have the kernel's shape {tuple(self.kernel_shape)}, got {tuple(self.mask.shape)}"
            )
        kernel = self.kernel[...]
        if self.mask is not None:
            kernel = kernel * self.mask
        bias = self.bias[...] if self.bias is not None else None
        inputs, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        return apply_conv_transpose(self, inputs, kernel, bias)
