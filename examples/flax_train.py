"""Train a small CNN with DiffConv in Flax linen + optax, starting from an nn.Conv model's parameters.

    python examples/flax_train.py --steps 200

``diffconv.jax.linen.DiffConv`` takes the ``nn.Conv`` constructor minus ``padding`` and names
its parameters ``kernel``/``bias``, so swapping the class keeps the parameter tree: the
parameters (or a checkpoint) of the zero-padding model are used as they are.
Task: 4x super-resolution of smooth random fields (diffconv.lab.models.synthetic).
"""

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from diffconv.jax.linen import DiffConv
from diffconv.lab.models.synthetic import make_pair, ring_errors


class CNN(nn.Module):
    conv: Any = nn.Conv   # nn.Conv (zero 'SAME' padding) or DiffConv

    @nn.compact
    def __call__(self, x):
        # Explicit names: the tree is then the same whichever class builds the layers.
        x = nn.silu(self.conv(8, (3, 3), name="conv0")(x))
        x = nn.silu(self.conv(8, (5, 5), name="conv1")(x))
        x = nn.silu(self.conv(8, (3, 3), name="conv2")(x))
        return nn.Conv(1, (1, 1), name="head")(x)


def train(model: nn.Module, params, steps: int, size: int, seed: int):
    tx = optax.adam(3e-3)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(steps):
        x, y = (jnp.asarray(a)[..., None] for a in make_pair("superres", np.random.default_rng([seed, i]), 8, size))
        params, opt_state, loss = step(params, opt_state, x, y)
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    zero, diff = CNN(conv=nn.Conv), CNN(conv=DiffConv)
    params = jax.jit(zero.init)(jax.random.key(args.seed), jnp.zeros((1, args.size, args.size, 1)))["params"]
    # Same tree: the nn.Conv parameters (e.g. restored from a checkpoint) drive the DiffConv model.
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        jax.eval_shape(diff.init, jax.random.key(0), jnp.zeros((1, args.size, args.size, 1)))["params"]
    )

    x_eval, y_eval = make_pair("superres", np.random.default_rng([args.seed, 10**6]), 32, args.size)
    for name, model in (("zero padding", zero), ("DiffConv", diff)):
        trained = train(model, params, args.steps, args.size, args.seed)
        pred = np.asarray(jax.jit(model.apply)({"params": trained}, jnp.asarray(x_eval)[..., None]))[..., 0]
        e = ring_errors(pred, y_eval, ring=3)
        print(f"{name:12s} RMSE boundary ring {e['boundary_rmse']:.4f}  interior {e['interior_rmse']:.4f}")


if __name__ == "__main__":
    main()
