"""Shared helpers of the JAX tests (a uniquely named module: test directories share sys.path)."""

import numpy as np

from diffconv.reference import reference_conv


def to_torch_kernel(k: np.ndarray) -> np.ndarray:
    """Flax ``(*k, in/g, out)`` -> ``(out, in/g, *k)``."""
    return np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2)))


def reference_cl(x, kernel, bias=None, strides=1, dilation=1, groups=1, edge_kernel=None, edge_bias=None):
    """:func:`diffconv.reference.reference_conv` in channels-last layout (float64 truth)."""
    y = reference_conv(
        np.moveaxis(np.asarray(x, np.float64), -1, 1), to_torch_kernel(np.asarray(kernel, np.float64)),
        None if bias is None else np.asarray(bias, np.float64), strides, dilation, groups,
        None if edge_kernel is None else to_torch_kernel(np.asarray(edge_kernel, np.float64)),
        None if edge_bias is None else np.asarray(edge_bias, np.float64),
    )
    return np.moveaxis(y, 1, -1)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))
