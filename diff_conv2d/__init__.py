"""The original paper code's API (``diff_conv2d``), kept as a thin shim over :mod:`diffconv.torch`.

``from diff_conv2d.functional import DiffConv2d`` and ``from diff_conv2d.layers import
DiffConv2dLayer`` work as in the published code, for every kernel size diffconv supports.
"""

from .functional import DiffConv2d
from .layers import DiffConv2dLayer

__all__ = ["DiffConv2d", "DiffConv2dLayer"]
