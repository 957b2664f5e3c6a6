"""PyTorch backend of diffconv."""

from . import functional
from .modules import DiffConv1d, DiffConv2d, DiffConv3d
from .convert import convert

__all__ = ["functional", "DiffConv1d", "DiffConv2d", "DiffConv3d", "convert"]
