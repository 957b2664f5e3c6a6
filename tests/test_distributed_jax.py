"""Sharded (data x space) training on 8 simulated CPU devices equals the one-device computation.

Runs in a subprocess: the device count is fixed when JAX starts, and must not leak into
the other tests' JAX.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from flax import linen as nn
    from jax.sharding import PartitionSpec as P
    from diffconv.jax.linen import DiffConv
    from diffconv.lab import sharding as S

    assert jax.device_count() == 8, jax.devices()

    class Net(nn.Module):
        edge: bool = False   # edge kernel in c1, boundary input gradient off in c0

        @nn.compact
        def __call__(self, x):
            x = nn.silu(DiffConv(4, (3, 3), boundary_input_grad=not self.edge, name="c0")(x))
            return DiffConv(1, (3, 3), edge_kernel=self.edge, name="c1")(x)

    net = Net()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 16, 6, 1)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(4, 16, 6, 1)), jnp.float32)
    params = jax.jit(net.init)(jax.random.key(0), x)["params"]
    apply = lambda p, v: net.apply({"params": p}, v)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    # One device, no sharding anywhere.
    def step(p, s, v, t):
        loss, g = jax.value_and_grad(lambda q: S.mse(apply(q, v), t))(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss, g
    p1, s1, loss1, g1 = jax.jit(step)(params, opt_state, x, y)
    out1 = jax.jit(apply)(params, x)

    mesh = S.make_mesh(2, 4)
    xs, ys = S.shard_batch(x, mesh), S.shard_batch(y, mesh)
    loss_g = S.make_loss_and_grad(apply, mesh)
    train_step = S.make_train_step(apply, tx, mesh)
    predict = S.make_predict(apply, mesh)
    loss2, g2 = loss_g(params, xs, ys)
    compiled_step = train_step.lower(params, opt_state, xs, ys).compile()
    p2, s2, loss3 = compiled_step(params, opt_state, xs, ys)
    out2 = predict(params, xs)

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    def tree_rel(a, b):
        return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(rel, a, b)))

    hlo = compiled_step.as_text()

    # The edge-kernel / no-boundary-input-gradient path: gradients only.
    edge_net = Net(edge=True)
    edge_params = jax.jit(edge_net.init)(jax.random.key(1), x)["params"]
    edge_apply = lambda p, v: edge_net.apply({"params": p}, v)
    _, ge1 = jax.jit(jax.value_and_grad(lambda p: S.mse(edge_apply(p, x), y)))(edge_params)
    _, ge2 = S.make_loss_and_grad(edge_apply, mesh)(edge_params, xs, ys)
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), p1, params)
    print(json.dumps({
        "loss": [float(loss1), float(loss2), float(loss3)],
        "grads_rel": tree_rel(g2, g1),
        "edge_grads_rel": tree_rel(ge2, ge1),
        "params_rel": tree_rel(p2, p1),
        "opt_state_rel": tree_rel(s2, s1),
        "out_rel": rel(out2, out1),
        "out_spec": str(out2.sharding.spec),
        "expected_spec": str(P("data", "space", None, None)),
        "shard_shapes": sorted({tuple(s.data.shape) for s in out2.addressable_shards}),
        "n_shards": len(out2.addressable_shards),
        "xs_spec": str(xs.sharding.spec),
        "update_size": min(jax.tree_util.tree_leaves(moved)),
        "collectives": {op: hlo.count(op) for op in ("all-reduce", "collective-permute", "all-gather", "all-to-all")},
    }))
    """
)


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory) -> dict:
    script = tmp_path_factory.mktemp("sharded") / "sharded.py"
    script.write_text(SCRIPT)
    # Eight CPU devices; XLA's cheap backend settings, as compile time is nearly all the run time.
    flags = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sharded_train_step_matches_single_device(sharded_run):
    r = sharded_run
    loss1, loss2, loss3 = r["loss"]
    assert abs(loss2 - loss1) <= 1e-5 * abs(loss1) and abs(loss3 - loss1) <= 1e-5 * abs(loss1)
    assert r["grads_rel"] <= 1e-5
    assert r["params_rel"] <= 1e-5 and r["opt_state_rel"] <= 1e-5
    assert r["update_size"] > 1e-3          # the Adam step (lr 1e-2) really moved every parameter
    assert r["out_rel"] <= 1e-5
    assert r["out_spec"] == r["expected_spec"] == r["xs_spec"]
    assert r["n_shards"] == 8 and r["shard_shapes"] == [[2, 4, 6, 1]]
    assert r["collectives"]["all-reduce"] >= 1  # gradients are summed over the shards


@pytest.mark.slow
def test_sharded_edge_kernel_gradients_match_single_device(sharded_run):
    assert sharded_run["edge_grads_rel"] <= 1e-5
