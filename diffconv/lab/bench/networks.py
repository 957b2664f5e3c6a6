"""The registry of models ``diffconv speed`` times: :data:`MODELS`, filled by :func:`register`.

Own models (both frameworks, zero padding vs DiffConv, width ``--channels``, kernel ``--kernel-sizes``):

- ``stack``: four ``k x k`` convs of constant width, ReLU; input ``8 x C x 96²``, no optimizer step;
- ``unet``: 3 -> 3, three levels (C, 2C, 4C), max-pool down, transposed conv up; ``4 x 3 x 96²``;
- ``gelu``: five convs 3 -> C -> 2C -> 2C -> C -> 3, GELU; ``4 x 3 x 96²``;
- ``resnet``: three residual stages joined by stride-2 convs; ``4 x 3 x 96²``;
- ``decoder``: three stride-2 transposed convs 4C -> 2C -> C -> 3; ``4 x 4C x 12²`` -> 96².

MONAI's networks (torch only, zero padding vs reflect padding vs DiffConv, their own widths,
k = 3, MONAI's default norms and activations, two output channels; :data:`MONAI_MODELS`):

- ``basicunet``: ``BasicUNet`` 2-D, features (32, 32, 64, 128, 256, 32); ``4 x 1 x 96²``;
- ``resunet``: ``UNet`` 2-D, channels (16, 32, 64, 128, 256), strides 2, two residual units; ``4 x 1 x 96²``;
- ``segresnet``: ``SegResNet`` 2-D, 8 initial filters, blocks down (1, 2, 2, 4); ``4 x 1 x 96²``;
- ``dynunet3d``: ``DynUNet`` 3-D, filters (32, 64, 128, 256), strides (1, 2, 2, 2); ``1 x 1 x 32³``;
- ``attentionunet``: ``AttentionUnet`` 2-D, channels (16, 32, 64, 128, 256), strides 2; ``4 x 1 x 64²``.

Every model runs forward + MSE loss + backward + an Adam step (the ``stack``: no Adam step).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .monai_networks import VARIANTS as MONAI_VARIANTS
from .monai_networks import monai_builder

__all__ = ["BenchModel", "MODELS", "MONAI_MODELS", "ALIASES", "register", "input_side", "image_side", "missing"]


@dataclass(frozen=True)
class BenchModel:
    """A model ``diffconv speed`` times.

    ``torch(variant, channels, k)`` and ``jax(variant, channels, k, dtype)`` build it in one of
    ``variants`` (``'zero'``: zero padding, ``'reflect'``: reflect padding, ``'diff'``: DiffConv);
    ``None`` where the model does not exist in that framework. A model's torch variants share
    state-dict keys, its Flax variants one parameter tree.

    ``in_channels(channels)``: the input's features (the target has the output's shape);
    ``batch``: default batch size; ``adam``: the step includes an Adam update (else gradients
    only); ``size``: default image side, ``quick_size`` the one under ``--quick``;
    ``size_multiple``: the side must be a multiple of it; ``input_divisor``: the input's side is
    the image side divided by it (an upsampling model's output has the image side); ``dims``:
    spatial dimensions; ``channels`` / ``kernel_size``: fixed width / kernel (``None``: taken
    from ``--channels`` / ``--kernel-sizes``); ``requires``: modules the model imports;
    ``fullgraph``: ``--torch-compile`` compiles it whole (``False``: the model's own code breaks
    the graph, and dynamo splits it there).
    """

    name: str
    torch: Callable[[str, int, int], Any] | None
    jax: Callable[[str, int, int, Any], Any] | None
    in_channels: Callable[[int], int]
    batch: int = 4
    adam: bool = True
    size: int = 96
    quick_size: int = 8
    size_multiple: int = 1
    input_divisor: int = 1
    dims: int = 2
    channels: int | None = None
    kernel_size: int | None = None
    variants: tuple[str, ...] = ("zero", "diff")
    requires: tuple[str, ...] = ()
    fullgraph: bool = True


MODELS: dict[str, BenchModel] = {}


def register(model: BenchModel) -> BenchModel:
    """Add ``model`` to :data:`MODELS` (and to ``--models``' choices)."""
    MODELS[model.name] = model
    return model


def input_side(model: BenchModel, size: int) -> int:
    """The side of ``model``'s input for image side ``size``."""
    return size // model.input_divisor


def image_side(model: BenchModel, size: int | None, quick: bool = False) -> int:
    """The image side ``model`` runs at: ``size`` if given, else its default; under ``quick``
    its quick side (capped by ``size``)."""
    if quick:
        return model.quick_size if size is None else min(size, model.quick_size)
    return model.size if size is None else size


def missing(model: BenchModel) -> list[str]:
    """The modules ``model`` requires that cannot be imported."""
    absent = []
    for name in model.requires:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    return absent


# ----------------------------------------------------------------------------------- own models


def _own(name: str, cls: str, **options: Any) -> BenchModel:
    """A model built as ``cls(conv, channels, k)`` from :mod:`.torch_models` / :mod:`.flax_models`."""

    def build_torch(variant: str, channels: int, k: int) -> Any:
        from . import torch_models

        return getattr(torch_models, cls)(torch_models.torch_conv(variant), channels, k)

    def build_flax(variant: str, channels: int, k: int, dtype: Any) -> Any:
        from . import flax_models

        return getattr(flax_models, cls)(flax_models.flax_conv(variant, dtype), channels, k)

    return register(BenchModel(name, torch=build_torch, jax=build_flax, **options))


_own("stack", "Stack", in_channels=lambda c: c, batch=8, adam=False)
_own("unet", "UNet", in_channels=lambda c: 3, size_multiple=4)
_own("gelu", "Gelu", in_channels=lambda c: 3)
_own("resnet", "ResNet", in_channels=lambda c: 3, size_multiple=4)


def _decoder_geometry(k: int) -> dict[str, int]:
    """Padding and output padding that make a stride-2 transposed convolution of kernel ``k`` double its input."""
    return {"kernel_size": k, "stride": 2, "padding": (k - 1) // 2, "output_padding": k % 2}


def _torch_decoder(variant: str, c: int, k: int) -> Any:
    from diffconv.lab.models.decoder import torch_decoder
    from diffconv.torch import DiffConvTranspose2d

    return torch_decoder((4 * c, 2 * c, c), 3, transposed=DiffConvTranspose2d if variant == "diff" else None,
                         **_decoder_geometry(k))


def _flax_decoder(variant: str, c: int, k: int, dtype: Any) -> Any:
    import flax.linen as nn

    from diffconv.jax.linen import DiffConvTranspose
    from diffconv.lab.models.decoder import flax_decoder

    cls = DiffConvTranspose if variant == "diff" else nn.ConvTranspose
    return flax_decoder((4 * c, 2 * c, c), 3, transposed=functools.partial(cls, dtype=dtype, param_dtype=dtype),
                        **_decoder_geometry(k))


register(BenchModel("decoder", torch=_torch_decoder, jax=_flax_decoder, in_channels=lambda c: 4 * c,
                    size_multiple=8, input_divisor=8))


# ---------------------------------------------------------------------------------------- MONAI


def _monai(name: str, cls: str, *, width: int, size: int, size_multiple: int, dims: int = 2, batch: int = 4,
           **kwargs: Any) -> str:
    """Register MONAI's ``cls(**kwargs)`` with one input and two output channels, first-level
    width ``width``, in zero / reflect / DiffConv variants; returns ``name``."""
    register(BenchModel(
        name, torch=monai_builder(cls, spatial_dims=dims, in_channels=1, out_channels=2, **kwargs), jax=None,
        in_channels=lambda c: 1, batch=batch, size=size, quick_size=2 * size_multiple, size_multiple=size_multiple,
        dims=dims, channels=width, kernel_size=3, variants=MONAI_VARIANTS, requires=("monai",),
        fullgraph=False,                    # MONAI's forward calls torch.jit.isinstance, which dynamo skips
    ))
    return name


MONAI_MODELS: tuple[str, ...] = (
    _monai("basicunet", "BasicUNet", width=32, size=96, size_multiple=16, features=(32, 32, 64, 128, 256, 32)),
    _monai("resunet", "UNet", width=16, size=96, size_multiple=16, channels=(16, 32, 64, 128, 256),
           strides=(2, 2, 2, 2), num_res_units=2),
    _monai("segresnet", "SegResNet", width=8, size=96, size_multiple=8, init_filters=8, blocks_down=(1, 2, 2, 4),
           blocks_up=(1, 1, 1)),
    _monai("dynunet3d", "DynUNet", width=32, size=32, size_multiple=8, dims=3, batch=1, kernel_size=(3, 3, 3, 3),
           strides=(1, 2, 2, 2), upsample_kernel_size=(2, 2, 2), filters=(32, 64, 128, 256)),
    _monai("attentionunet", "AttentionUnet", width=16, size=64, size_multiple=16, channels=(16, 32, 64, 128, 256),
           strides=(2, 2, 2, 2)),
)

# Names ``--models`` also accepts, for a group of models.
ALIASES: dict[str, tuple[str, ...]] = {"monai": MONAI_MODELS}
