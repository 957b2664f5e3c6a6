"""PyTorch backend of diffconv."""

from . import functional
from .modules import DiffConv1d, DiffConv2d, DiffConv3d
from .conv_transpose import DiffConvTranspose1d, DiffConvTranspose2d, DiffConvTranspose3d
from .convert import convert

__all__ = ["functional", "DiffConv1d", "DiffConv2d", "DiffConv3d",
           "DiffConvTranspose1d", "DiffConvTranspose2d", "DiffConvTranspose3d", "convert"]
