"""Same weights in torch DiffConv2d, linen DiffConv and NNX DiffConv; the ``diffconv parity`` command."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flax import nnx  # noqa: E402

from diffconv.lab.cli import main  # noqa: E402
from diffconv.interop import load_torch_into_nnx, nnx_to_torch_state_dict, torch_to_flax_params  # noqa: E402
from diffconv.jax import linen as dlinen  # noqa: E402
from diffconv.jax import nnx as dnnx  # noqa: E402
from diffconv.torch import DiffConv2d  # noqa: E402


def test_three_modules_agree(x64):
    torch.manual_seed(0)
    t = DiffConv2d(4, 6, (3, 4), stride=(1, 2), groups=2, edge_kernel=True).double()
    with torch.no_grad():
        t.edge_weight.mul_(1.5)                 # make the edge parameters differ from the main ones
        t.edge_bias.add_(0.25)
    x = np.random.default_rng(1).standard_normal((2, 4, 9, 10))
    want = t(torch.tensor(x)).detach().numpy()
    x_cl = np.moveaxis(x, 1, -1)

    linen_layer = dlinen.DiffConv(6, (3, 4), strides=(1, 2), feature_group_count=2, edge_kernel=True,
                                  param_dtype=np.float64)
    y_linen = jax.jit(linen_layer.apply)({"params": torch_to_flax_params(t.state_dict())}, x_cl)

    nnx_layer = dnnx.DiffConv(4, 6, (3, 4), strides=(1, 2), feature_group_count=2, edge_kernel=True,
                              param_dtype=np.float64, rngs=nnx.Rngs(0))
    load_torch_into_nnx(nnx_layer, t.state_dict())
    y_nnx = nnx.jit(lambda m, x: m(x))(nnx_layer, x_cl)

    for y in (y_linen, y_nnx):
        got = np.moveaxis(np.asarray(y), -1, 1)
        assert got.shape == want.shape == (2, 6, 9, 5)
        assert np.abs(got - want).max() < 1e-12 * np.abs(want).max()
    back = nnx_to_torch_state_dict(nnx_layer)
    for name, value in t.state_dict().items():
        assert torch.equal(back[name], value)


def test_parity_command(capsys):
    args = ["parity", "--dims", "1", "--kernel-sizes", "3", "4", "--options", "plain", "edge", "--size", "9"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "torch vs JAX, float64" in out
    assert "4/4 cases within tolerance" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("1 ")]
    assert [(r[1], r[2], r[-1]) for r in rows] == [("3", "plain", "ok"), ("3", "edge", "ok"), ("4", "plain", "ok"), ("4", "edge", "ok")]
    assert all(float(v) < 1e-10 for r in rows for v in r[3:-1] if v != "-")

    assert main(["parity", "--dims", "1", "--kernel-sizes", "3", "--options", "plain", "--dtype", "float32",
                 "--tol", "1e-30"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0/1 cases within tolerance" in out
