"""DistributedDataParallel (gloo, 2 CPU processes) over a converted UNet gives full-batch gradients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

WORLD = 2

# One DDP rank: python ddp.py RANK PORT OUT (spawned twice by the test).
WORKER = textwrap.dedent(
    """
    import os, sys
    import torch, torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from ddp_common import WORLD, data, model

    rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    net = DDP(model())
    x, y = data()
    F.mse_loss(net(x.chunk(WORLD)[rank]), y.chunk(WORLD)[rank]).backward()
    torch.save({n: p.grad for n, p in net.module.named_parameters()}, f"{out}/grads{rank}.pt")
    dist.barrier()          # neither rank tears gloo down while the other still talks to it
    dist.destroy_process_group()
    """
)

COMMON = textwrap.dedent(
    """
    import torch
    from diffconv.lab.models.torch_nets import UNet
    from diffconv.torch import convert

    WORLD = 2

    def model():
        torch.manual_seed(0)
        return convert(UNet(1, 1, width=2, depth=1).double(), edge_kernel=True)

    def data():
        g = torch.Generator().manual_seed(1)
        return (torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64),
                torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_gradients_equal_single_process_full_batch(tmp_path):
    (tmp_path / "ddp.py").write_text(WORKER)
    (tmp_path / "ddp_common.py").write_text(COMMON)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    port = str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, str(tmp_path / "ddp.py"), str(r), port, str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for r in range(WORLD)
    ]
    try:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-4000:]

    # The same model and batch in this process, without DDP.
    namespace: dict = {}
    exec(COMMON, namespace)
    net = namespace["model"]()
    x, y = namespace["data"]()
    F.mse_loss(net(x), y).backward()
    single = {n: p.grad for n, p in net.named_parameters()}

    ranks = [torch.load(tmp_path / f"grads{r}.pt") for r in range(WORLD)]
    assert any(n.endswith("edge_weight") for n in single)      # edge kernels are trained too
    for name, g in single.items():
        assert g is not None and g.abs().max() > 0, name
        for grads in ranks:
            torch.testing.assert_close(grads[name], g, rtol=1e-10, atol=1e-12, msg=name)
