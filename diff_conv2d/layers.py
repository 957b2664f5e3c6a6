"""``DiffConv2dLayer``: the original layer, with the original module structure so its checkpoints load.

Parameters live in ``inter_layer`` (an ``nn.Conv2d``: ``weight``, ``bias``) and, with
``train_edge_kernel=True``, ``edge_layer`` (its own ``weight`` and ``bias``, used by every
output whose window reaches past the image). The forward pass is
:func:`diffconv.torch.functional.conv2d`.
"""

from __future__ import annotations

import torch
from torch import nn

from diffconv.torch import functional as DF

from .functional import DiffConv2d, check_bool, check_optimized_for

__all__ = ["DiffConv2dLayer"]


class DiffConv2dLayer(nn.Module):
    """Size-keeping padding-free ``Conv2d`` layer (stride 1, no dilation), the seed's constructor.

    Input ``(N, in_channels, H, W)``, output ``(N, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        groups: int = 1,
        bias: bool = True,
        keep_img_grad_at_invalid: bool = True,
        train_edge_kernel: bool = False,
        optimized_for: str = "memory",
    ) -> None:
        super().__init__()
        check_bool("keep_img_grad_at_invalid", keep_img_grad_at_invalid)
        check_bool("train_edge_kernel", train_edge_kernel)
        check_optimized_for(optimized_for)
        self.diff_model = DiffConv2d(kernel_size)
        # Created in the published order (interior first) so a seeded RNG gives the same initial weights.
        self.inter_layer = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=1, padding="same", dilation=1, groups=groups, bias=bias
        )
        self.edge_layer: nn.Conv2d | None = None
        if train_edge_kernel:
            self.edge_layer = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride=1, padding="same", dilation=1, groups=groups, bias=bias
            )
        self.keep_img_grad_at_invalid = keep_img_grad_at_invalid
        self.optimized_for = optimized_for

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_optimized_for(self.optimized_for)
        check_bool("keep_img_grad_at_invalid", self.keep_img_grad_at_invalid)
        edge = self.edge_layer
        return DF.conv2d(
            x,
            self.inter_layer.weight,
            self.inter_layer.bias,
            groups=self.inter_layer.groups,
            edge_weight=None if edge is None else edge.weight,
            edge_bias=None if edge is None else edge.bias,
            boundary_input_grad=self.keep_img_grad_at_invalid,
        )

    def extra_repr(self) -> str:
        return (
            f"keep_img_grad_at_invalid={self.keep_img_grad_at_invalid}, "
            f"train_edge_kernel={self.edge_layer is not None}, optimized_for={self.optimized_for!r}"
        )
