"""``DiffConv2d(kernel_size).conv2d(...)``: the original functional API over :func:`diffconv.torch.functional.conv2d`.

No mathematics lives here; arguments are checked, renamed and passed on.
"""

from __future__ import annotations

import numbers

import torch

from diffconv._checks import as_tuple, check_choice
from diffconv.torch import functional as DF

__all__ = ["DiffConv2d", "OPTIMIZED_FOR"]

#: Accepted values of ``optimized_for``. Both give the same numbers: diffconv has one fast path
#: (ghost padding + one convolution), which is already the cheapest in time and memory.
OPTIMIZED_FOR = ("memory", "speed")


def kernel_pair(kernel_size: int | tuple[int, int]) -> tuple[int, int]:
    """``kernel_size`` (an int, or a pair of ints for a non-square kernel) as ``(kh, kw)``."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (numbers.Integral, tuple, list)):
        raise TypeError(f"kernel_size must be an int (or a pair of ints), got {kernel_size!r}")
    return as_tuple("kernel_size", kernel_size, 2)


def check_optimized_for(value: object) -> None:
    check_choice("optimized_for", value, OPTIMIZED_FOR)


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")


class DiffConv2d:
    """Padding-free size-keeping 2-d convolution with a fixed kernel size (the seed's class).

    ``DiffConv2d(3).conv2d(input, weight)`` equals
    ``diffconv.torch.functional.conv2d(input, weight)``: input ``(N, C, H, W)``, weight
    ``(O, C/groups, k, k)``, output ``(N, O, H, W)``, no bias.
    """

    def __init__(self, kernel_size: int | tuple[int, int]) -> None:
        self._kernel = kernel_pair(kernel_size)
        self.kernel_size = kernel_size

    def __repr__(self) -> str:
        return f"DiffConv2d(kernel_size={self.kernel_size!r})"

    def conv2d(
        self,
        input: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
        groups: int = 1,
        keep_img_grad_at_invalid: bool = True,
        edge_kernel: torch.Tensor | None = None,
        optimized_for: str = "memory",
        *,
        img: torch.Tensor | None = None,
        kernel: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Size-keeping convolution of ``input`` ``(N, C, H, W)`` with ``weight`` ``(O, C/groups, k, k)``.

        ``edge_kernel`` (weight-shaped) is used by the outputs whose window reaches past the
        image; ``keep_img_grad_at_invalid=False`` stops those outputs' gradient to ``input``.
        ``optimized_for`` is ``'memory'`` or ``'speed'`` (same result). The published code's
        keyword names ``img=`` and ``kernel=`` are accepted for ``input`` and ``weight``.
        Returns ``(N, O, H, W)``.
        """
        input = _one_of("input", input, "img", img)
        weight = _one_of("weight", weight, "kernel", kernel)
        check_optimized_for(optimized_for)
        check_bool("keep_img_grad_at_invalid", keep_img_grad_at_invalid)
        for name, t in (("weight", weight), ("edge_kernel", edge_kernel)):
            if t is not None and not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if weight.dim() != 4 or tuple(weight.shape[2:]) != self._kernel:
            raise ValueError(
                f"weight must have shape (out_channels, in_channels/groups, {self._kernel[0]}, {self._kernel[1]}) "
                f"for kernel_size={self.kernel_size!r}, got {tuple(weight.shape)}"
            )
        if edge_kernel is not None and edge_kernel.shape != weight.shape:
            raise ValueError(
                f"edge_kernel must have the same shape as weight {tuple(weight.shape)}, got {tuple(edge_kernel.shape)}"
            )
        return DF.conv2d(
            input, weight, None, 1, 1, groups, edge_weight=edge_kernel, boundary_input_grad=keep_img_grad_at_invalid
        )


def _one_of(name: str, value: torch.Tensor | None, seed_name: str, seed_value: torch.Tensor | None) -> torch.Tensor:
    if value is not None and seed_value is not None:
        raise TypeError(f"conv2d got both {name} and {seed_name} (the same argument); pass one")
    chosen = value if value is not None else seed_value
    if chosen is None:
        raise TypeError(f"conv2d missing required argument {name!r}")
    return chosen
