"""diffconv.torch.convert: which convs it replaces, and that the replacements compute DiffConv."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import oracle
from diffconv.lab.models.torch_nets import ResNet, UNet, diff_conv
from diffconv.torch import DiffConv1d, DiffConv2d, DiffConv3d, convert
from diffconv.torch.convert import is_size_keeping

torch.manual_seed(0)

DIFF = (DiffConv1d, DiffConv2d, DiffConv3d)


def _convs(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}


# (constructor, input spatial shape) of convs that must be replaced
SIZE_KEEPING = [
    (lambda: nn.Conv1d(2, 3, 5, padding=2), (11,)),
    (lambda: nn.Conv1d(2, 3, 4, padding="same"), (9,)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (7, 8)),
    (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), (9, 8)),
    (lambda: nn.Conv2d(2, 4, 3, stride=(1, 3), padding=1, groups=2), (7, 10)),
    (lambda: nn.Conv2d(2, 3, (3, 5), padding=(1, 2), padding_mode="reflect"), (7, 8)),
    (lambda: nn.Conv2d(2, 3, (1, 3), padding=(0, 1), padding_mode="replicate"), (5, 6)),
    (lambda: nn.Conv2d(2, 3, 4, padding="same", bias=False), (8, 9)),
    (lambda: nn.Conv2d(2, 3, 3, dilation=2, padding="same"), (10, 9)),
    (lambda: nn.Conv2d(2, 3, 3, dilation=2, padding=2), (10, 9)),
    (lambda: nn.Conv3d(2, 3, 3, padding=1), (5, 6, 7)),
]

# convs that must be left alone
NOT_SIZE_KEEPING = [
    nn.Conv2d(2, 3, 3, padding=0),
    nn.Conv2d(2, 3, 3, padding="valid"),
    nn.Conv2d(2, 3, 1),
    nn.Conv2d(2, 3, 3, padding=2),
    nn.Conv2d(2, 3, 3, padding=(1, 0)),
    nn.Conv2d(2, 3, 4, padding=2),
    nn.Conv2d(2, 3, 4, padding=1),
    nn.Conv2d(2, 3, 3, dilation=2, padding=1),
    nn.ConvTranspose2d(2, 3, 3, padding=1),
    nn.ConvTranspose1d(2, 3, 3, padding=1),
    DiffConv2d(2, 3, 3),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("make,spatial", SIZE_KEEPING)
def test_single_conv_becomes_diffconv_matching_reference(make, spatial):
    conv = make().double()
    new = convert(conv)
    assert isinstance(new, DIFF[len(spatial) - 1]) and new is not conv
    assert new.weight is conv.weight and new.bias is conv.bias
    x = torch.randn(2, 2, *spatial, dtype=torch.float64)
    y_new, y_old = new(x), conv(x)
    # Same output size as the original, every output equal to the transformed-kernel form.
    assert y_new.shape == y_old.shape
    bias = None if conv.bias is None else conv.bias.detach().numpy()
    ref = oracle.diff_conv(x.numpy(), conv.weight.detach().numpy(), bias, conv.stride, conv.dilation, conv.groups)
    np.testing.assert_allclose(y_new.detach().numpy(), ref, rtol=1e-10, atol=1e-10)
    # Outputs whose window lies inside the data are those of the original conv.
    inner = ~oracle.boundary_mask(spatial, conv.kernel_size, conv.stride, conv.dilation)
    assert inner.any()
    np.testing.assert_allclose(y_new.detach().numpy()[..., inner], y_old.detach().numpy()[..., inner],
                               rtol=1e-12, atol=1e-12)
    # ... and the border ones differ (zeros/reflect/replicate are not Lagrange ghosts).
    assert not torch.allclose(y_new, y_old)


@pytest.mark.parametrize("conv", NOT_SIZE_KEEPING, ids=repr)
def test_other_convs_left_alone(conv):
    assert not is_size_keeping(conv)
    before = copy.deepcopy(conv.state_dict())
    assert convert(conv) is conv
    holder = nn.Sequential(conv)
    assert convert(holder)[0] is conv
    for k, v in conv.state_dict().items():
        assert torch.equal(v, before[k])


def test_resnet_conversion_counts_and_equals_manual_construction():
    model = ResNet(3, 5, widths=(4, 8, 8), blocks=1).double().eval()
    old = _convs(model)
    converted = convert(copy.deepcopy(model))
    new = _convs(converted)
    replaced = {n for n in new if isinstance(new[n], DiffConv2d)}
    # stem + two 3x3 convs per block (3 blocks); the stride-2 3x3 convs (padding=1) included.
    assert replaced == {"stem"} | {f"layers.{i}.conv{j}" for i in range(3) for j in (1, 2)}
    assert new["layers.1.conv1"].stride == new["layers.2.conv1"].stride == (2, 2)
    # 1x1 stride-2 projection shortcuts (padding=0) stay nn.Conv2d.
    shortcuts = {"layers.1.downsample.0", "layers.2.downsample.0"}
    assert {n for n in new if n not in replaced} == shortcuts
    assert all(type(new[n]) is nn.Conv2d and torch.equal(new[n].weight, old[n].weight) for n in shortcuts)
    assert set(old) == set(new)

    manual = ResNet(3, 5, widths=(4, 8, 8), blocks=1, conv=diff_conv).double().eval()
    manual.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(converted(x), manual(x), rtol=0, atol=0)
    assert not torch.allclose(converted(x), model(x))


def test_unet_conversion_and_strict_checkpoint_load():
    model = UNet(1, 2, width=4, depth=2).double()
    checkpoint = copy.deepcopy(model.state_dict())
    converted = convert(UNet(1, 2, width=4, depth=2).double())
    kinds = [type(m) for m in converted.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert kinds.count(DiffConv2d) == 10 and kinds.count(nn.Conv2d) == 1   # 1x1 head untouched
    converted.load_state_dict(checkpoint, strict=True)
    manual = UNet(1, 2, width=4, depth=2, conv=diff_conv).double()
    manual.load_state_dict(checkpoint, strict=True)
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(converted(x), manual(x), rtol=0, atol=0)


class _Mixed(nn.Module):
    """Convs of every kind side by side, some frozen, in a container and at the top level."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular")
        self.c = nn.Conv2d(4, 4, 1)
        self.d = nn.Conv2d(4, 4, 5, padding="same", bias=False)
        self.up = nn.ConvTranspose2d(4, 4, 3, padding=1)
        self.seq = nn.Sequential(nn.Conv1d(4, 4, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.d(self.c(self.b(self.a(x)))))
        n, c, h, w = x.shape
        return self.seq(x.reshape(n, c, h * w))


def test_dtype_device_requires_grad_training_flag_and_parameter_identity_kept():
    model = _Mixed().to(torch.float64)
    model.a.weight.requires_grad_(False)
    model.eval()
    model.seq.train()
    params = dict(model.named_parameters())
    converted = convert(model)
    assert type(converted.a) is DiffConv2d and type(converted.d) is DiffConv2d
    assert type(converted.seq[0]) is DiffConv1d
    assert type(converted.b) is DiffConv2d and converted.b.boundary == "circular"   # periodic stays periodic
    assert type(converted.c) is nn.Conv2d
    assert type(converted.up) is nn.ConvTranspose2d
    for name, p in converted.named_parameters():
        assert p is params[name]                       # an optimizer built before stays valid
        assert p.dtype == torch.float64 and p.device == params[name].device
    assert not converted.a.weight.requires_grad and converted.a.bias.requires_grad
    assert not converted.a.training and not converted.d.training and converted.seq[0].training
    assert converted.d.bias is None


def test_edge_kernel_and_boundary_switch_are_passed_on():
    model = _Mixed().double()
    model.a.weight.requires_grad_(False)
    ref = copy.deepcopy(model)
    checkpoint = copy.deepcopy(model.state_dict())
    converted = convert(model, edge_kernel=True, boundary_input_grad=False)
    diff = [m for m in converted.modules() if isinstance(m, DIFF)]
    assert len(diff) == 4
    for m in diff:
        assert m.edge_kernel and not m.boundary_input_grad
        assert m.edge_weight is not m.weight and torch.equal(m.edge_weight, m.weight)
        assert m.edge_weight.requires_grad == m.weight.requires_grad
        assert (m.edge_bias is None) == (m.bias is None)
    assert converted.d.edge_bias is None
    # The original (edge-free) checkpoint loads strictly; edge params start as weight/bias.
    with torch.no_grad():
        for m in diff:
            m.edge_weight.zero_()
    converted.load_state_dict(checkpoint, strict=True)
    for m in diff:
        assert torch.equal(m.edge_weight, m.weight)

    # Equal to a hand-built twin with the same options, in value and in gradients.
    twin = DiffConv2d(2, 4, 3, edge_kernel=True, boundary_input_grad=False).double()
    twin.load_state_dict(ref.a.state_dict(), strict=True)
    x1 = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    converted.a(x1).square().sum().backward()
    twin(x2).square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=0)
    torch.testing.assert_close(converted.a.edge_bias.grad, twin.edge_bias.grad, rtol=0, atol=0)


def test_converted_conv_trains():
    conv = nn.Conv2d(1, 1, 3, padding=1).double()
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    model = convert(conv)
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    before = model.weight.detach().clone()
    model(x).sum().backward()
    opt.step()                                          # optimizer built on the original conv
    assert not torch.equal(model.weight, before)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"module": "conv"}, TypeError, "module must be a torch.nn.Module, got str"),
        ({"edge_kernel": 1}, TypeError, "edge_kernel must be a bool, got 1"),
        ({"boundary_input_grad": None}, TypeError, "boundary_input_grad must be a bool, got None"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    args = {"module": nn.Conv2d(1, 1, 3, padding=1), **kwargs}
    module = args.pop("module")
    with pytest.raises(exc, match=match):
        convert(module, **args)


# ------------------------------------------------------------------------ transposed convolutions

def _transposed_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.Sequential(nn.ConvTranspose2d(4, 3, 4, 2, 1), nn.ReLU()),
        nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, bias=False),
    )


def test_transposed_convs_are_left_alone_by_default():
    from diffconv.torch import DiffConvTranspose2d

    model = convert(_transposed_model())
    assert isinstance(model[0], DiffConv2d)
    assert type(model[2][0]) is nn.ConvTranspose2d and type(model[3]) is nn.ConvTranspose2d
    assert not any(isinstance(m, DiffConvTranspose2d) for m in model.modules())


def test_transposed_true_swaps_every_conv_transpose_keeping_parameters_and_checkpoints():
    from diffconv.torch import DiffConvTranspose1d, DiffConvTranspose2d, DiffConvTranspose3d
    from diffconv.torch.functional import conv_transpose2d

    model = _transposed_model().double().eval()
    state = copy.deepcopy(model.state_dict())
    weights = [model[2][0].weight, model[3].weight]
    model = convert(model, transposed=True)
    assert type(model[2][0]) is DiffConvTranspose2d and type(model[3]) is DiffConvTranspose2d
    assert [model[2][0].weight, model[3].weight] == weights and model[3].bias is None
    assert not model[3].training
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    h = torch.relu(model[0](x))
    h = torch.relu(conv_transpose2d(h, weights[0], model[2][0].bias, 2, 1))
    torch.testing.assert_close(model(x), conv_transpose2d(h, weights[1], None, 2, 1, 1))
    assert convert(model, transposed=True)[3] is model[3]             # twins are not converted again
    for plain, twin in ((nn.ConvTranspose1d(2, 2, 3), DiffConvTranspose1d),
                        (nn.ConvTranspose3d(2, 2, 3), DiffConvTranspose3d)):
        assert type(convert(plain, transposed=True)) is twin
    with pytest.raises(TypeError, match="transposed"):
        convert(model, transposed="yes")


def test_circular_layers_stay_circular_and_a_given_boundary_applies_to_all():
    """``boundary=None``: a ``padding_mode='circular'`` conv computes exactly what it computed
    (circular padding is DiffConv's circular boundary); a given spec and order reach every layer."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), nn.Conv2d(3, 2, 5, padding=2)).double()
    x = torch.randn(2, 2, 7, 9, dtype=torch.float64)
    want = model[0](x)
    converted = convert(copy.deepcopy(model))
    assert converted[0].boundary == "circular" and converted[1].boundary == "diff"
    torch.testing.assert_close(converted[0](x), want, rtol=1e-13, atol=1e-13)
    spec = ("circular", ("zeros", "diff"))
    given = convert(copy.deepcopy(model), boundary=spec, order=1)
    for layer, conv in zip(given, model):
        assert layer.boundary == spec and layer.order == 1
        w = conv.weight.detach().numpy()
        inp = x if conv is model[0] else model[0](x)
        truth = oracle.diff_conv(inp.detach().numpy(), w, conv.bias.detach().numpy(), boundary=spec, order=1)
        np.testing.assert_allclose(layer(inp).detach().numpy(), truth, rtol=1e-10, atol=1e-10)
