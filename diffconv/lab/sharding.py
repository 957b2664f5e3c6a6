"""Data- and spatially-parallel training with ``jax.sharding``: batch over ``'data'``, height over ``'space'``.

Inputs are channels-last ``(N, H, W, C)`` (or ``(N, H, C)`` / ``(N, D, H, W, C)``) sharded as
``P('data', 'space', None, ...)``; parameters and optimizer state are replicated. The model
is written for one device; ``jax.jit`` with these shardings lets XLA's SPMD partitioner
split every convolution along ``H`` and insert the halo exchange between neighbouring
``'space'`` shards. The Lagrange ghost rows are built from the first/last ``k*d`` rows of
the image, which live on the first/last ``'space'`` shard, so only those shards' data feeds
the ghost ring; gradients are all-reduced over both mesh axes.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "DATA",
    "SPACE",
    "make_mesh",
    "batch_spec",
    "batch_sharding",
    "replicated",
    "shard_batch",
    "mse",
    "make_loss_and_grad",
    "make_train_step",
    "make_predict",
]

DATA, SPACE = "data", "space"

ApplyFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def make_mesh(data: int, space: int, devices: Sequence[Any] | None = None) -> Mesh:
    """A ``(data, space)`` mesh with axis names ``('data', 'space')`` over the first ``data*space`` devices."""
    for name, v in (("data", data), ("space", space)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    devs = list(jax.devices() if devices is None else devices)
    if data * space > len(devs):
        raise ValueError(f"a ({data}, {space}) mesh needs {data * space} devices, got {len(devs)}")
    return Mesh(np.asarray(devs[: data * space], dtype=object).reshape(data, space), (DATA, SPACE))


def batch_spec(ndim: int = 4) -> P:
    """``P('data', 'space', None, ...)`` for a channels-last batch of rank ``ndim`` (>= 3)."""
    if ndim < 3:
        raise ValueError(f"ndim must be >= 3 (batch, at least one spatial axis, channels), got {ndim}")
    return P(DATA, SPACE, *([None] * (ndim - 2)))


def batch_sharding(mesh: Mesh, ndim: int = 4) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(ndim))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_batch(x: Any, mesh: Mesh) -> jax.Array:
    """Place ``x`` ``(N, H, ..., C)`` on ``mesh``: ``N`` split over ``'data'``, ``H`` over ``'space'``."""
    x = jnp.asarray(x)
    nd, ns = mesh.shape[DATA], mesh.shape[SPACE]
    if x.ndim < 3:
        raise ValueError(f"x must have rank >= 3 (N, spatial..., C), got shape {tuple(x.shape)}")
    if x.shape[0] % nd or x.shape[1] % ns:
        raise ValueError(
            f"x shape {tuple(x.shape)}: batch must be divisible by the 'data' axis ({nd}) "
            f"and the first spatial axis by the 'space' axis ({ns})"
        )
    return jax.device_put(x, batch_sharding(mesh, x.ndim))


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean((pred - target) ** 2)


def make_loss_and_grad(apply_fn: ApplyFn, mesh: Mesh, loss_fn: LossFn = mse, ndim: int = 4):
    """Jitted ``(params, x, y) -> (loss, grads)`` with ``x``, ``y`` batch-sharded, the rest replicated."""
    rep, bs = replicated(mesh), batch_sharding(mesh, ndim)

    def f(params, x, y):
        return jax.value_and_grad(lambda p: loss_fn(apply_fn(p, x), y))(params)

    return jax.jit(f, in_shardings=(rep, bs, bs), out_shardings=(rep, rep))


def make_train_step(apply_fn: ApplyFn, tx: Any, mesh: Mesh, loss_fn: LossFn = mse, ndim: int = 4):
    """Jitted ``(params, opt_state, x, y) -> (params, opt_state, loss)`` for an optax transform ``tx``."""
    import optax

    rep, bs = replicated(mesh), batch_sharding(mesh, ndim)

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(apply_fn(p, x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, in_shardings=(rep, rep, bs, bs), out_shardings=(rep, rep, rep))


def make_predict(apply_fn: ApplyFn, mesh: Mesh, ndim: int = 4):
    """Jitted ``(params, x) -> y`` whose output stays sharded like the input."""
    rep, bs = replicated(mesh), batch_sharding(mesh, ndim)
    return jax.jit(apply_fn, in_shardings=(rep, bs), out_shardings=bs)
