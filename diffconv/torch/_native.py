"""The ghost padding and its transpose as one C++ pass each, for the eager layer on the CPU.

:class:`~diffconv.torch._padded.GhostConv` pads with :meth:`Plan.pad` and folds with
:meth:`Plan.fold` where :func:`plan_for` returns a plan: a contiguous floating-point CPU tensor
and the kernels built. One call replaces the dozen small PyTorch operations of
:func:`~diffconv.torch._ghosts.pad`/:func:`~diffconv.torch._ghosts.fold` (slices, products,
casts, ``cat``), whose fixed cost made a converted network's small layers slower than reflect
padding. The matrices still come from :mod:`diffconv.boundary`; ``csrc/ghosts.cpp`` only applies
them, and gives the same values as the PyTorch operations (tested). The same extension holds a
transposed layer's ghost-ring gathers (``Slots``, ``taps_of``, ``add_taps_``; used by
:mod:`~diffconv.torch._ring`).

The kernels are compiled by ``torch.utils.cpp_extension`` on first use (a C++ compiler and
``ninja``; about 25 s, then cached in torch's extension folder, ``TORCH_EXTENSIONS_DIR``).
Where the build fails, one warning says why and the layer keeps the PyTorch operations, as it
does on other devices, under tracing and for double backward. ``DIFFCONV_NATIVE=0`` in the
environment skips the build.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ._ghosts import AxisGhosts, Matrix

#: The environment variable that turns the kernels off (``0``).
ENV = "DIFFCONV_NATIVE"

_SOURCE = Path(__file__).with_name("csrc") / "ghosts.cpp"
_FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_state: dict[str, Any] = {"enabled": os.environ.get(ENV, "1") != "0", "module": None, "failed": None}
_PLANS: dict = {}


def kernels() -> Any | None:
    """The compiled extension (built on the first call), or ``None`` where it is off or failed to build."""
    if not _state["enabled"] or _state["failed"] is not None:
        return None
    if _state["module"] is None:
        try:
            from torch.utils.cpp_extension import load

            _state["module"] = load("diffconv_ghosts", [str(_SOURCE)], extra_cflags=["-O3"], verbose=False)
        except Exception as err:  # no compiler, no ninja, a read-only cache: keep the PyTorch operations
            _state["failed"] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            warnings.warn(f"diffconv: the C++ ghost kernels did not build ({_state['failed']}); the torch layer "
                          f"pads with PyTorch operations instead (slower on small maps). Set {ENV}=0 to skip "
                          "the build.", RuntimeWarning, stacklevel=3)
            return None
    return _state["module"]


def available() -> bool:
    """Whether the eager CPU layer runs on the C++ kernels (builds them if needed)."""
    return kernels() is not None


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block, the eager layer pads with PyTorch operations (for tests and comparisons)."""
    before = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = before


def side_rows(matrix: Matrix, start: int) -> list[list[tuple[int, float]]]:
    """One side's ghosts as, per ghost, the (sample, weight) pairs of its nonzero weights."""
    return [[(start + j, v) for j, v in enumerate(row) if v != 0.0] for row in matrix]


def _build(axes: Sequence[AxisGhosts]) -> Any:
    spec = [(g.length, g.before, g.after, side_rows(g.low, g.low_start), side_rows(g.high, g.high_start)) for g in axes]
    return kernels().Plan(spec)


def plan_for(x: torch.Tensor, axes: Sequence[AxisGhosts]) -> Any | None:
    """The plan that pads ``x`` ``(N, C, *L)`` along ``axes`` (all of its spatial dims, in
    order), or ``None`` where the PyTorch operations must do it."""
    if not (_state["enabled"] and x.device.type == "cpu" and x.dtype in _FLOATING and x.is_contiguous()):
        return None
    if kernels() is None:
        return None
    # Keyed by identity, as the matrices are (layouts are cached, so their axes are the same objects).
    key = id(axes)
    hit = _PLANS.get(key)
    if hit is None or hit[0] is not axes:
        if len(_PLANS) > 2048:
            _PLANS.clear()
        hit = _PLANS[key] = (axes, _build(axes))
    return hit[1]
