"""The transposed-convolution accuracy experiment (diffconv.lab.transpose_accuracy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffconv.torch.functional import conv_transpose2d
from diffconv.lab.transpose_accuracy import KERNELS, METHODS, boundary_mask, transpose_accuracy, upsample


def _by(rows, **match):
    return {r["method"]: r for r in rows if all(r[k] == v for k, v in match.items())}


def test_kernels_interpolate_at_the_fine_cell_centres():
    """Each phase of a kernel sums to 1 and the linear one reproduces x at o/2 - 1/4 (coarse units)."""
    for taps, _ in KERNELS.values():
        np.testing.assert_allclose([taps[0::2].sum(), taps[1::2].sum()], [1.0, 1.0], rtol=1e-15)
    ramp = np.arange(6.0)[None, :, None] * np.ones((1, 1, 6))
    fine = upsample(ramp, "linear", "diffconv")[0, :, 0]
    np.testing.assert_allclose(fine, np.arange(12) / 2 - 0.25, atol=1e-12)


@pytest.mark.parametrize("kernel, field", [
    ("linear", lambda x, y: np.outer(1 + 2 * x, 3 - y)),                       # degree 1 per axis
    ("cubic", lambda x, y: np.outer(x**2 - 0.5 * x, 2 * y**2 + y + 1)),       # degree 2 per axis
])
def test_polynomials_the_kernel_reproduces_have_no_boundary_error_with_diffconv(kernel, field):
    rows, _ = transpose_accuracy({"poly": field}, sizes=(12,), kernels=(kernel,))
    by = _by(rows, kernel=kernel)
    assert by["diffconv"]["boundary_max"] < 1e-12 and by["diffconv"]["interior_max"] < 1e-12
    for method in ("zeros", "replicate", "reflect", "circular"):
        assert by[method]["boundary_max"] > 1e-3


def test_smooth_fields_boundary_error_falls_to_the_interior_level():
    rows, table = transpose_accuracy(sizes=(16, 32))
    for field in ("chebyshev 2", "chebyshev 5"):
        for kernel in KERNELS:
            fine = _by(rows, field=field, size=32, kernel=kernel)
            d = fine["diffconv"]
            assert d["boundary_mean"] < 2 * d["interior_mean"]
            assert all(d["boundary_mean"] < fine[m]["boundary_mean"] / 3 for m in METHODS if m != "diffconv")
            coarse = _by(rows, field=field, size=16, kernel=kernel)
            # diffconv converges at the kernel's interior order (4x linear, 8x cubic per halving of h);
            # zero padding does not converge at all
            assert coarse["diffconv"]["boundary_mean"] / d["boundary_mean"] > 3
            assert coarse["zeros"]["boundary_mean"] / fine["zeros"]["boundary_mean"] < 1.2
    assert len(table.splitlines()) == 3 + 3 * 2 * 2 and all(m in table.splitlines()[1] for m in METHODS)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_boundary_mask_is_where_ghosts_change_the_output(kernel):
    """Against the library: with a field of ones, DiffConvTranspose and the plain layer differ
    exactly on outputs whose sum reaches past the data (no kernel tap is zero here)."""
    taps, p = KERNELS[kernel]
    w = torch.tensor(np.outer(taps, np.ones(1)), dtype=torch.float64).reshape(1, 1, len(taps), 1)
    x = torch.ones(1, 1, 7, 1, dtype=torch.float64)
    ghosts = conv_transpose2d(x, w, None, (2, 1), (p, 0)) - F.conv_transpose2d(x, w, None, (2, 1), (p, 0))
    differs = ghosts.abs() > 1e-12
    np.testing.assert_array_equal(differs[0, 0, :, 0].numpy(), boundary_mask(7, len(taps), p))


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="method"):
        upsample(np.ones((1, 4, 4)), "linear", "mirror")
