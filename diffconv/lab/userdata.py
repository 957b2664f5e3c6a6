"""A user's own arrays for ``diffconv accuracy --data`` and ``diffconv train --data``.

A file is a ``.npy`` array or an ``.npz`` archive of one or more arrays. With ``ndim`` spatial
axes (2 by default), an array of shape ``spatial``, ``(N, *spatial)`` or ``(N, C, *spatial)``
becomes ``(N, C, *spatial)`` float64: ``N`` samples of ``C`` channels. Whatever makes a file
unusable raises :class:`DataError` with a one-line message that names the file and array, so
the commands can print it and exit with status 2.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["DataError", "UserArray", "as_samples", "layouts", "load_arrays", "require_extent"]

_SPATIAL = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


class DataError(ValueError):
    """A data file or array the commands cannot use; the message is one line."""


@dataclass(frozen=True)
class UserArray:
    """One array of a data file: ``samples`` is ``(N, C, *spatial)`` float64, ``shape`` as stored."""

    name: str
    samples: np.ndarray
    shape: tuple[int, ...]


def layouts(ndim: int) -> str:
    """The accepted shapes for ``ndim`` spatial axes, e.g. ``(H, W), (N, H, W) or (N, C, H, W)``."""
    s = _SPATIAL[ndim]
    forms = [s, ("N", *s), ("N", "C", *s)]
    text = [f"({', '.join(f)}{',' if len(f) == 1 else ''})" for f in forms]
    return f"{text[0]}, {text[1]} or {text[2]}"


def _float_array(array: np.ndarray, where: str) -> np.ndarray:
    kind = array.dtype.kind
    if kind == "c":
        raise DataError(f"{where} has complex dtype {array.dtype}; save its real part, imaginary part or magnitude")
    if kind not in "biuf":
        raise DataError(f"{where} has dtype {array.dtype}, which cannot be cast to floating point")
    with np.errstate(over="ignore"):
        return array.astype(np.float64)


def as_samples(array: np.ndarray, where: str, ndim: int = 2) -> np.ndarray:
    """``array`` as ``(N, C, *spatial)`` float64; ``where`` names it in error messages."""
    if ndim not in _SPATIAL:
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")
    values = _float_array(np.asarray(array), where)
    if not ndim <= values.ndim <= ndim + 2:
        raise DataError(f"{where} has shape {values.shape}; {ndim}-D fields need {layouts(ndim)}")
    if values.size == 0:
        raise DataError(f"{where} is empty (shape {values.shape})")
    bad = ~np.isfinite(values)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{where} has {int(bad.sum())} non-finite values (NaN or inf), the first at index {first}")
    if values.ndim == ndim:
        return values[None, None]
    return values[:, None] if values.ndim == ndim + 1 else values


def _read(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    """The raw content: one array (``.npy``) or a dict of arrays (``.npz``)."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a .npy or .npz file")
    try:
        content = np.load(path, allow_pickle=False)
        if isinstance(content, np.ndarray):
            return content
        with content:
            return {name: content[name] for name in content.files}
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise DataError(f"{path}: holds Python objects (dtype object), not numbers") from None
        if "pickled" in str(exc):        # neither .npy nor .npz: NumPy would fall back to pickle
            raise DataError(f"{path}: not a NumPy .npy or .npz array file") from None
        raise DataError(f"{path}: not a NumPy .npy or .npz array file ({_one_line(exc)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{path}: not a NumPy .npy or .npz array file ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def load_arrays(path: str | Path, ndim: int = 2, names: Sequence[str] | None = None) -> list[UserArray]:
    """The arrays of ``path`` (``.npy``: one, named after the file; ``.npz``: each, by its key).

    ``names`` picks arrays of an ``.npz`` by key, in that order. Raises :class:`DataError`.
    """
    path = Path(path)
    content = _read(path)
    if isinstance(content, np.ndarray):
        if names:
            raise DataError(f"{path}: a .npy file holds one array; array names apply to .npz archives")
        content = {path.stem: content}
    if not content:
        raise DataError(f"{path}: the archive holds no arrays")
    if names:
        missing = [n for n in names if n not in content]
        if missing:
            raise DataError(f"{path}: no array {missing[0]!r} (the archive holds {', '.join(content)})")
        content = {n: content[n] for n in names}
    return [
        UserArray(name, as_samples(a, f"{path}: array {name!r}", ndim), tuple(np.shape(a)))
        for name, a in content.items()
    ]


def require_extent(arrays: Sequence[UserArray], minimum: int, reason: str, path: str | Path) -> None:
    """Raise :class:`DataError` when a spatial axis of an array is shorter than ``minimum``."""
    for a in arrays:
        spatial = a.samples.shape[2:]
        if min(spatial) < minimum:
            raise DataError(
                f"{path}: array {a.name!r} has spatial shape {spatial}; {reason} needs at least "
                f"{minimum} samples per axis"
            )
