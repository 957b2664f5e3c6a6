"""Constructor-argument helpers shared by the Flax linen and NNX layers."""

from __future__ import annotations

import numbers
from typing import Sequence


def kernel_size_tuple(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    """Flax convention: an int ``k`` is the 1-d kernel ``(k,)``; sequences give 1-3 spatial dims."""
    if isinstance(kernel_size, numbers.Integral) and not isinstance(kernel_size, bool):
        ks: tuple = (int(kernel_size),)
    else:
        try:
            ks = tuple(kernel_size)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"kernel_size must be an int or a sequence of 1-3 ints, got {kernel_size!r}") from None
    if not 1 <= len(ks) <= 3 or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1 for k in ks):
        raise ValueError(f"kernel_size must be an int >= 1 or a sequence of 1-3 ints >= 1, got {kernel_size!r}")
    return tuple(int(k) for k in ks)


def per_axis(value: None | int | Sequence[int], nd: int) -> int | tuple[int, ...]:
    """Flax's ``None`` sentinel means 1; sequences are passed on for validation as they are."""
    if value is None:
        return 1
    return value if isinstance(value, numbers.Integral) else tuple(value)
