"""PyTorch backend of diffconv."""

import torch as _torch

from ._validate import require_torch as _require_torch

_require_torch(_torch.__version__)

from . import functional  # noqa: E402
from .modules import DiffConv1d, DiffConv2d, DiffConv3d  # noqa: E402
from .conv_transpose import DiffConvTranspose1d, DiffConvTranspose2d, DiffConvTranspose3d  # noqa: E402
from .convert import convert  # noqa: E402

__all__ = ["functional", "DiffConv1d", "DiffConv2d", "DiffConv3d",
           "DiffConvTranspose1d", "DiffConvTranspose2d", "DiffConvTranspose3d", "convert"]
