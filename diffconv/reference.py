"""The paper's form, kept small and slow on purpose: the truth the fast paths are tested against.

Each output whose window reaches past the data evaluates the transformed kernel
``K' = T K`` (:func:`diffconv.coefficients.transformation_matrix_1d`, per axis) on its nearest
complete window, with no padding anywhere. NumPy, float64, channels-first.
"""

from __future__ import annotations

import numpy as np

from .coefficients import transformation_matrix_1d
from .plan import axis_plan

__all__ = ["reference_conv"]

_SPACE, _TAP, _OUT = "xyz", "ijk", "tuv"


def _tap_operator(length: int, k: int, d: int) -> np.ndarray:
    """``A[t, j, x]``: how tap ``j`` of the stride-1 output ``t`` reads the samples ``x``."""
    if k > 1 and length < k * d:
        raise ValueError(
            f"the transformed-kernel form needs a complete window on every lattice: length {length} < "
            f"kernel_size*dilation = {k * d} (short axes have no such window)"
        )
    plan = axis_plan(length, k, d, 1)
    A = np.zeros((length, k, length))
    for t in range(length):
        first = t - plan.before                       # position of tap 0
        last = first + (k - 1) * d
        if first < 0:                                 # nearest complete window: lowest lattice nodes
            node0 = first % d
        elif last > length - 1:                       # ... or highest nodes on the same lattice
            node0 = first + ((length - 1 - last) // d) * d
        else:
            A[t, np.arange(k), first + np.arange(k) * d] = 1.0
            continue
        T = transformation_matrix_1d(k, (first - node0) // d)   # T[m, j] = L_m(shift + j)
        A[t, :, node0 + np.arange(k) * d] = T
    return A


def _is_boundary(length: int, k: int, d: int) -> np.ndarray:
    plan = axis_plan(length, k, d, 1)
    t = np.arange(length)
    return (t < plan.before) | (t > length - 1 - plan.after)


def reference_conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, ...] = 1,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    edge_weight: np.ndarray | None = None,
    edge_bias: np.ndarray | None = None,
) -> np.ndarray:
    """Padding-free convolution by the transformed-kernel form.

    x: ``(N, C, *L)``; weight: ``(O, C/groups, *k)``; returns ``(N, O, *ceil(L/stride))``.
    Outputs whose window reaches a ghost use ``edge_weight``/``edge_bias`` when given.
    """
    nd = x.ndim - 2
    stride = (stride,) * nd if np.isscalar(stride) else tuple(stride)
    dilation = (dilation,) * nd if np.isscalar(dilation) else tuple(dilation)
    ks = weight.shape[2:]
    ops = [_tap_operator(L, k, d) for L, k, d in zip(x.shape[2:], ks, dilation)]
    spec = (
        "oc" + _TAP[:nd] + ","
        + ",".join(_OUT[a] + _TAP[a] + _SPACE[a] for a in range(nd)) + ","
        + "nc" + _SPACE[:nd] + "->no" + _OUT[:nd]
    )

    def full(w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        cin, cout = x.shape[1] // groups, w.shape[0] // groups
        parts = [
            np.einsum(spec, w[g * cout:(g + 1) * cout], *ops, x[:, g * cin:(g + 1) * cin], optimize=True)
            for g in range(groups)
        ]
        y = np.concatenate(parts, axis=1)
        if b is not None:
            y = y + np.asarray(b).reshape((1, -1) + (1,) * nd)
        return y

    y = full(weight, bias)
    if edge_weight is not None or edge_bias is not None:
        y_edge = full(weight if edge_weight is None else edge_weight, bias if edge_bias is None else edge_bias)
        mask = np.zeros(x.shape[2:], dtype=bool)
        for a, (L, k, d) in enumerate(zip(x.shape[2:], ks, dilation)):
            shape = [1] * nd
            shape[a] = L
            mask = mask | _is_boundary(L, k, d).reshape(shape)
        y = np.where(mask, y_edge, y)
    return y[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
