"""MONAI's segmentation networks as benchmark models, in three border variants.

MONAI is an optional dependency (``pip install 'diffconv[bench]'``, which needs only torch and
NumPy); it is imported when a network is first built. The variants share state-dict keys:

- ``zero``: the network as MONAI builds it (zero-padded size-keeping convolutions);
- ``reflect``: ``padding_mode='reflect'`` on every size-keeping convolution;
- ``diff``: ``diffconv.torch.convert`` of the network (DiffConv on the same convolutions).
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["VARIANTS", "with_border", "monai_builder"]

VARIANTS = ("zero", "reflect", "diff")


def with_border(net: Any, variant: str) -> Any:
    """``net`` (a torch module) with the border ``variant`` on its size-keeping convolutions
    (the ones ``diffconv.torch.convert`` replaces); modified in place and returned."""
    from diffconv.torch import convert
    from diffconv.torch.convert import is_size_keeping

    if variant == "zero":
        return net
    if variant == "reflect":
        for m in net.modules():
            if is_size_keeping(m):
                m.padding_mode = "reflect"
        return net
    if variant == "diff":
        return convert(net)
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def monai_builder(cls: str, **kwargs: Any) -> Callable[[str, int, int], Any]:
    """``build(variant, channels, k)``: ``monai.networks.nets.<cls>(**kwargs)`` in border ``variant``.

    ``channels`` and ``k`` are ignored: the network's widths and kernels are ``kwargs``'."""

    def build(variant: str, channels: int, k: int) -> Any:
        from monai.networks import nets

        return with_border(getattr(nets, cls)(**kwargs), variant)

    return build
