"""Existing Flax models made padding-free without editing them (docs/flax.md).

:func:`padding_free` reroutes, by ``flax.linen.intercept_methods``, the calls of the size-keeping
``nn.Conv`` and ``'SAME'`` ``nn.ConvTranspose`` layers of any linen model to diffconv's
convolutions with the layers' own parameters. :func:`flax_grid_conv` is the computation both it
and :func:`diffconv.jax.nnx.convert` use: DiffConv's stride-1 result read where Flax's own layer
centres its windows, so that only the zeros Flax pads change, never which samples a window covers.
"""

from __future__ import annotations

import contextlib
import numbers
import threading
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen.linear import canonicalize_padding
from jax import lax

from ..boundary import parse_boundary
from . import functional as F
from ._layer import freeze_spec
from .conv_transpose import layer_transpose

__all__ = ["boundary_options", "conv_layer_mode", "flatten_batch", "flax_grid_conv", "flax_pads", "padding_free",
           "restore_batch", "transpose_layer_qualifies"]


# ---------------------------------------------------------------------------------------------
# Which layers qualify, and where Flax puts their windows


def _extents(kernel_size: Sequence[int], dilation: Sequence[int]) -> list[int]:
    return [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation)]


def _ghost_widths(kernel_size: Sequence[int], dilation: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return tuple(((e - 1) // 2, e // 2) for e in _extents(kernel_size, dilation))


def conv_layer_mode(padding: Any, kernel_size: Sequence[int], dilation: Sequence[int]) -> str | None:
    """``'same'`` for ``'SAME'`` or explicit ``((e-1)//2, e//2)`` pads per axis (``e`` the dilated
    kernel extent), ``'circular'`` for ``'CIRCULAR'``, ``None`` for every other padding."""
    pads = canonicalize_padding(padding, len(kernel_size))
    if isinstance(pads, str):
        return {"SAME": "same", "CIRCULAR": "circular"}.get(pads)
    return "same" if tuple(tuple(p) for p in pads) == _ghost_widths(kernel_size, dilation) else None


def flax_pads(padding: Any, spatial: Sequence[int], kernel_size: Sequence[int], strides: Sequence[int],
              dilation: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The ``(low, high)`` zeros per axis that a qualifying Flax conv pads its input with, for
    spatial lengths ``spatial`` (strided ``'SAME'`` splits them by the length, as ``lax`` does)."""
    if canonicalize_padding(padding, len(kernel_size)) == "SAME":
        return tuple(lax.padtype_to_pads(tuple(spatial), _extents(kernel_size, dilation), tuple(strides), "SAME"))
    return _ghost_widths(kernel_size, dilation)


def transpose_layer_qualifies(padding: Any, nd: int) -> bool:
    """Only ``'SAME'`` transposed layers (output ``L * s``) are rerouted: ``'VALID'`` asks for the
    full output, explicit pads for crops of it, and ``'CIRCULAR'`` wraps it around."""
    return canonicalize_padding(padding, nd) == "SAME"


# ---------------------------------------------------------------------------------------------
# The computation


def _swap_sides(boundary: Any, nd: int, flipped: Sequence[int]) -> Any:
    """``boundary`` as seen after reversing the axes ``flipped`` (their low and high sides swap)."""
    if boundary is None or isinstance(boundary, str) or not flipped:
        return boundary
    pairs = [list(p) for p in parse_boundary(boundary, nd)]
    for a in flipped:
        pairs[a].reverse()
    return tuple(tuple(p) for p in pairs)


def boundary_options(boundary: Any, order: Any) -> dict[str, Any]:
    """``boundary``/``order`` keyword arguments for diffconv's functions, given only when set."""
    options = {}
    if boundary is not None:
        options["boundary"] = boundary
    if order is not None:
        options["order"] = order
    return options


def flax_grid_conv(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None,
    *,
    pads: Sequence[tuple[int, int]],
    strides: Sequence[int],
    dilation: Sequence[int],
    feature_group_count: int = 1,
    precision: Any = None,
    boundary: Any = None,
    order: Any = None,
    edge_kernel: jax.Array | None = None,
    edge_bias: jax.Array | None = None,
    boundary_input_grad: bool = True,
) -> jax.Array:
    """DiffConv's stride-1 result at the window centres of a Flax conv that pads ``pads`` zeros.

    ``x`` ``(N, *L, C)``, ``kernel`` ``(*k, C/groups, O)``; ``pads`` ``(low, high)`` per axis with
    ``low <= (e-1)//2`` and ``high <= e//2``. Output ``(N, *out, O)`` with Flax's output lengths.
    Per axis: where Flax pads the full ``(e-1)//2`` before (stride 1, explicit ghost widths, most
    strided ``'SAME'``) this is :func:`diffconv.jax.conv` at the layer's stride; where it pads
    less before but the full ``e//2`` after (strided ``'SAME'``, odd ``e``, e.g. ``k=3, s=2`` on
    even lengths) the same on the reversed axis; otherwise the stride-1 result, sliced.
    """
    nd = kernel.ndim - 2
    ext = _extents(kernel.shape[:nd], dilation)
    conv_strides, flipped, sliced = list(strides), [], []
    for a, ((lo, hi), e, s) in enumerate(zip(pads, ext, strides)):
        before, after = (e - 1) // 2, e // 2
        if not (0 <= lo <= before and 0 <= hi <= after):
            raise ValueError(f"pads[{a}] must lie within the ghost widths ({before}, {after}), got {(lo, hi)}")
        if lo == before or s == 1:
            continue
        if e % 2 and hi == after:
            flipped.append(a)
        else:
            conv_strides[a] = 1
            sliced.append(a)
    axes = tuple(1 + a for a in flipped)
    if flipped:
        x = jnp.flip(x, axes)
        kernel = jnp.flip(kernel, tuple(flipped))
        edge_kernel = None if edge_kernel is None else jnp.flip(edge_kernel, tuple(flipped))
    y = F.conv(
        x, kernel, bias, strides=tuple(conv_strides), dilation=tuple(dilation), feature_group_count=feature_group_count,
        edge_kernel=edge_kernel, edge_bias=edge_bias, boundary_input_grad=boundary_input_grad, precision=precision,
        **boundary_options(_swap_sides(boundary, nd, flipped), order),
    )
    if flipped:
        y = jnp.flip(y, axes)
    if sliced:
        index = [slice(None)] * y.ndim
        for a in sliced:
            lo, s, n = pads[a][0], strides[a], -(-x.shape[1 + a] // strides[a])
            start = (ext[a] - 1) // 2 - lo
            index[1 + a] = slice(start, start + (n - 1) * s + 1, s)
        y = y[tuple(index)]
    return y


# ---------------------------------------------------------------------------------------------
# linen: the context manager


class _Settings(NamedTuple):
    boundary: Any
    order: Any


class _ThreadContext:
    """Stand-in for ``jax.make_user_context`` on JAX versions without it (not part of jit's cache key)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def value(self) -> Any:
        return getattr(self._local, "value", None)

    @contextlib.contextmanager
    def __call__(self, value: Any) -> Iterator[None]:
        previous, self._local.value = self.value, value
        try:
            yield
        finally:
            self._local.value = previous


# The active settings are a jit cache key (where JAX offers one): a function jitted outside the
# context and called inside it is traced anew, not served its zero-padded trace.
_ACTIVE = jax.make_user_context(None) if hasattr(jax, "make_user_context") else _ThreadContext()
JIT_AWARE = hasattr(jax, "make_user_context")


def _check_settings(boundary: Any, order: Any) -> _Settings:
    """The settings, hashable; what does not depend on a layer is checked here (each layer's
    number of axes and kernel size are checked when it is called)."""
    boundary, order = freeze_spec(boundary), freeze_spec(order)
    if boundary is not None:
        parse_boundary(boundary, 1 if isinstance(boundary, str) else len(boundary))
    entries = order if isinstance(order, tuple) else (order,)
    if any(p is not None and (isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 0) for p in entries):
        raise ValueError(f"order must be None, an int >= 0 or one such entry per spatial axis, got {order!r}")
    return _Settings(boundary, order)


def _maybe_broadcast(value: Any, nd: int) -> tuple[int, ...]:
    if value is None:
        value = 1
    return (value,) * nd if isinstance(value, numbers.Integral) else tuple(value)


def _kernel_tuple(m: nn.Module) -> tuple[int, ...]:
    return (m.kernel_size,) if isinstance(m.kernel_size, numbers.Integral) else tuple(m.kernel_size)


def flatten_batch(inputs: jax.Array, nd: int) -> tuple[jax.Array, tuple[int, ...] | None]:
    """Flax's convention: any number of batch dims (also none) flattened into one."""
    batch = inputs.ndim - nd - 1
    if batch == 1:
        return inputs, None
    return jnp.reshape(inputs, (-1,) + inputs.shape[batch:]), inputs.shape[:batch]


def restore_batch(y: jax.Array, batch_shape: tuple[int, ...] | None) -> jax.Array:
    return y if batch_shape is None else jnp.reshape(y, batch_shape + y.shape[1:])


def _conv_is_rerouted(m: nn.Conv, inputs: jax.Array) -> str | None:
    if not isinstance(m, nn.Conv) or type(m).__call__ is not nn.Conv.__call__:
        return None                                 # a subclass with its own computation
    ks = _kernel_tuple(m)
    nd = len(ks)
    if m.mask is not None or m.conv_general_dilated is not None or m.conv_general_dilated_cls is not None \
            or _maybe_broadcast(m.input_dilation, nd) != (1,) * nd or inputs.ndim < nd + 1:
        return None
    return conv_layer_mode(m.padding, ks, _maybe_broadcast(m.kernel_dilation, nd))


def _linen_conv(m: nn.Conv, inputs: jax.Array, mode: str, settings: _Settings) -> jax.Array:
    """``nn.Conv.__call__``'s parameters, read or created as Flax does, through :func:`flax_grid_conv`."""
    ks = _kernel_tuple(m)
    nd = len(ks)
    inputs, batch_shape = flatten_batch(inputs, nd)
    strides, dils = _maybe_broadcast(m.strides, nd), _maybe_broadcast(m.kernel_dilation, nd)
    in_features = inputs.shape[-1]
    if in_features % m.feature_group_count:
        raise ValueError(
            f"{m.name or type(m).__name__}: input features ({in_features}) must be divisible by "
            f"feature_group_count ({m.feature_group_count})"
        )
    kernel = m.param("kernel", m.kernel_init, ks + (in_features // m.feature_group_count, m.features), m.param_dtype)
    bias = m.param("bias", m.bias_init, (m.features,), m.param_dtype) if m.use_bias else None
    inputs, kernel, bias = m.promote_dtype(inputs, kernel, bias, dtype=m.dtype)
    boundary = settings.boundary
    if boundary is None and mode == "circular":
        boundary = "circular"
    y = flax_grid_conv(
        inputs, kernel, bias, pads=flax_pads(m.padding, inputs.shape[1:-1], ks, strides, dils), strides=strides,
        dilation=dils, feature_group_count=m.feature_group_count, precision=m.precision, boundary=boundary,
        order=settings.order,
    )
    return restore_batch(y, batch_shape)


def _linen_conv_transpose(m: nn.ConvTranspose, inputs: jax.Array, settings: _Settings) -> jax.Array:
    """``nn.ConvTranspose.__call__``'s parameters, read or created as Flax does, with ghosts."""
    ks = _kernel_tuple(m)
    nd = len(ks)
    inputs, batch_shape = flatten_batch(inputs, nd)
    in_features = inputs.shape[-1]
    kernel_shape = ks + ((m.features, in_features) if m.transpose_kernel else (in_features, m.features))
    if m.mask is not None and tuple(m.mask.shape) != kernel_shape:
        raise ValueError(f"{m.name or 'ConvTranspose'}: mask must have the kernel's shape {kernel_shape}, "
                         f"got {tuple(m.mask.shape)}")
    kernel = m.param("kernel", m.kernel_init, kernel_shape, m.param_dtype)
    if m.mask is not None:
        kernel = kernel * m.mask
    bias = m.param("bias", m.bias_init, (m.features,), m.param_dtype) if m.use_bias else None
    inputs, kernel, bias = m.promote_dtype(inputs, kernel, bias, dtype=m.dtype)
    y = layer_transpose(
        inputs, kernel, bias, padding="SAME", strides=_maybe_broadcast(m.strides, nd),
        kernel_dilation=_maybe_broadcast(m.kernel_dilation, nd), transpose_kernel=m.transpose_kernel,
        precision=m.precision, preferred_element_type=m.preferred_element_type,
        **boundary_options(settings.boundary, settings.order),
    )
    return restore_batch(y, batch_shape)


def _intercept(next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
    settings = _ACTIVE.value
    m = context.module
    if settings is None or context.method_name != "__call__" or len(args) + len(kwargs) != 1:
        return next_fun(*args, **kwargs)
    inputs = args[0] if args else kwargs.get("inputs")
    if inputs is None:
        return next_fun(*args, **kwargs)
    mode = _conv_is_rerouted(m, inputs)
    if mode is not None:
        return _linen_conv(m, inputs, mode, settings)
    if type(m) is nn.ConvTranspose and transpose_layer_qualifies(m.padding, len(_kernel_tuple(m))):
        return _linen_conv_transpose(m, inputs, settings)
    return next_fun(*args, **kwargs)


@contextlib.contextmanager
def padding_free(*, boundary: Any = None, order: Any = None) -> Iterator[None]:
    """Within this context, every size-keeping ``flax.linen.Conv`` computes DiffConv.

    Rerouted: ``nn.Conv`` with ``padding='SAME'`` (any stride), explicit ``((e-1)//2, e//2)`` pads
    per axis (``e`` the dilated kernel extent) or ``'CIRCULAR'`` (which stays circular when
    ``boundary`` is None), and ``nn.ConvTranspose`` with ``'SAME'``; each with its own ``kernel``/
    ``bias`` (same parameter tree, created the same way by ``init``), strides, dilation, groups,
    dtype and precision. Every window stays where Flax puts it; only the zeros become ghosts.
    Left alone: other paddings, masks, input dilation, custom ``conv_general_dilated``,
    subclasses with their own ``__call__``. ``boundary``/``order`` apply to every rerouted layer.
    Also a decorator. Works around ``init``/``apply``, ``jax.jit`` (the settings are part of
    jit's cache key) and lifted transforms (``nn.scan``, ``nn.remat``).
    """
    settings = _check_settings(boundary, order)
    with _ACTIVE(settings), nn.intercept_methods(_intercept):
        yield
