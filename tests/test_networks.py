"""MONAI's networks converted by ``diffconv.torch.convert``: they run, train, differ from zero
padding only where a convolution's window reaches past the data, and keep their state dicts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("monai")

from diffconv.lab.bench.networks import MODELS, MONAI_MODELS  # noqa: E402
from diffconv.torch.convert import is_size_keeping  # noqa: E402

# The 3-d network (seconds per test) runs in the slow step.
NETWORKS = [pytest.param(name, marks=pytest.mark.slow) if MODELS[name].dims == 3 else name for name in MONAI_MODELS]

def build(name: str, variant: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS[name].torch(variant, 0, 3)


def sample(name: str, batch: int = 1) -> torch.Tensor:
    """An input of ``name``'s quick side ``(batch, 1, S, ...)``."""
    spec = MODELS[name]
    return torch.randn(batch, 1, *[spec.quick_size] * spec.dims, generator=torch.Generator().manual_seed(1))


def interior(conv: nn.Module, in_shape: torch.Size) -> tuple[slice, ...] | None:
    """The outputs of ``conv`` whose window lies inside the input, ``(:, :, slice per spatial
    axis)``; ``None`` where there are none (maps narrower than the kernel).

    Output ``i`` of an axis reads inputs ``i*s - lo .. i*s - lo + e - 1``, ``lo = (e - 1) // 2``,
    ``e`` the dilated extent; every other output sees padding (or ghosts)."""
    index = [slice(None), slice(None)]
    for L, k, s, d in zip(in_shape[2:], conv.kernel_size, conv.stride, conv.dilation):
        e = (k - 1) * d + 1
        lo = (e - 1) // 2
        first = -(-lo // s)                                   # smallest i with i*s - lo >= 0
        last = (L - e + lo) // s                              # largest i with i*s - lo + e - 1 <= L - 1
        if first > last:
            return None
        index.append(slice(first, last + 1))
    return tuple(index)


@pytest.mark.parametrize("name", NETWORKS)
def test_converted_network_trains(name):
    """Every size-keeping convolution becomes a DiffConv layer; the converted network keeps the
    output shape and three Adam steps change its loss."""
    zero, diff = build(name, "zero"), build(name, "diff")
    kept = sum(is_size_keeping(m) for m in zero.modules())
    converted = sum(type(m).__name__.startswith("DiffConv") for m in diff.modules())
    assert kept >= 10 and converted == kept
    assert not any(is_size_keeping(m) for m in diff.modules())
    x = sample(name)
    target = torch.randn_like(zero(x))
    opt = torch.optim.Adam(diff.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.mse_loss(diff(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] != losses[0]


@pytest.mark.parametrize("name", NETWORKS)
def test_converted_network_differs_from_zero_padding_only_at_the_border(name):
    """Same weights: the first convolution run sees the same input in both networks and gives the
    same interior outputs (those whose window lies inside the data) and different border outputs;
    every converted layer, fed the zero-padded layer's input, gives that layer's interior."""
    zero = build(name, "zero")
    diff = build(name, "diff", seed=1)
    diff.load_state_dict(zero.state_dict(), strict=True)
    seen: dict[str, list] = {"zero": [], "diff": []}

    def recorder(variant: str, layer: str):
        def hook(module, inputs, output):
            seen[variant].append((layer, inputs[0].detach().clone(), output.detach().clone()))  # nets add in place
        return hook

    layers = [layer for layer, m in zero.named_modules() if is_size_keeping(m)]
    for variant, net in (("zero", zero), ("diff", diff)):
        for layer in layers:
            net.get_submodule(layer).register_forward_hook(recorder(variant, layer))
    x = sample(name)
    with torch.no_grad():
        zero(x), diff(x)

    layer, x0, y0 = seen["zero"][0]
    layer_d, x1, y1 = seen["diff"][0]
    assert layer_d == layer and torch.equal(x0, x1)
    inside = interior(zero.get_submodule(layer), x0.shape)
    assert inside is not None
    torch.testing.assert_close(y1[inside], y0[inside], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y1, y0, rtol=1e-3, atol=1e-3)

    checked = 0
    with torch.no_grad():
        for layer, xin, yz in seen["zero"]:
            yd = diff.get_submodule(layer)(xin)
            inside = interior(zero.get_submodule(layer), xin.shape)
            assert yd.shape == yz.shape
            checked += inside is not None
            if inside is not None:
                torch.testing.assert_close(yd[inside], yz[inside], rtol=1e-4, atol=1e-5, msg=f"{name}.{layer}")
    assert checked >= len(layers) // 2


@pytest.mark.parametrize("name", NETWORKS)
def test_state_dicts_round_trip(name):
    """The converted and reflect-padded networks load the original's state dict with strict=True,
    and the original loads theirs: after a training step of the converted network, a fresh
    original holds the trained weights."""
    zero, diff, reflect = build(name, "zero"), build(name, "diff", seed=1), build(name, "reflect", seed=2)
    assert list(diff.state_dict()) == list(zero.state_dict()) == list(reflect.state_dict())
    diff.load_state_dict(zero.state_dict(), strict=True)
    reflect.load_state_dict(zero.state_dict(), strict=True)
    assert sum(getattr(m, "padding_mode", None) == "reflect" for m in reflect.modules()) == \
        sum(is_size_keeping(m) for m in zero.modules())

    x = sample(name)
    diff(x).square().mean().backward()
    torch.optim.SGD(diff.parameters(), lr=0.1).step()
    fresh = build(name, "zero", seed=3)
    fresh.load_state_dict(diff.state_dict(), strict=True)
    for (key, a), b in zip(fresh.state_dict().items(), diff.state_dict().values()):
        assert torch.equal(a, b), key
    changed = [k for k, v in diff.state_dict().items() if not torch.equal(v, zero.state_dict()[k])]
    assert changed
