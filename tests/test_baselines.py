"""The boundary-handling baselines against independent truths (torch padding/convolution, hand counts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffconv.lab import baselines as B


def _image(shape=(2, 3, 7, 9), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize(
    "pad, torch_mode",
    [
        (B.pad_zero, "constant"),
        (B.pad_reflect, "reflect"),
        (B.pad_replicate, "replicate"),
        (B.pad_circular, "circular"),
    ],
)
@pytest.mark.parametrize("pw", [((1, 1), (1, 1)), ((2, 3), (0, 1)), ((3, 2), (2, 2))])
def test_classic_paddings_match_torch(pad, torch_mode, pw):
    x = _image()
    (t, b), (l, r) = pw
    expect = F.pad(torch.from_numpy(x), (l, r, t, b), mode=torch_mode).numpy()
    np.testing.assert_array_equal(pad(x, pw), expect)


def test_reflect_and_replicate_by_hand():
    row = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)
    np.testing.assert_array_equal(B.pad_reflect(row, ((0, 0), (2, 1)))[0, 0, 0], [3, 2, 1, 2, 3, 2])
    np.testing.assert_array_equal(B.pad_replicate(row, ((0, 0), (2, 1)))[0, 0, 0], [1, 1, 1, 2, 3, 3])
    np.testing.assert_array_equal(B.pad_circular(row, ((0, 0), (2, 1)))[0, 0, 0], [2, 3, 1, 2, 3, 1])


@pytest.mark.parametrize("order", [1, 2, 3])
def test_extrapolation_is_exact_up_to_its_order(order):
    """Ghosts of a degree-``order`` polynomial are that polynomial; degree ``order+1`` is not."""
    pw = ((order, order + 1), (2, order))
    (t, b), (l, r) = pw
    rng = np.random.default_rng(order)
    xs = np.arange(-t, 9 + b, dtype=np.float64)
    ys = np.arange(-l, 8 + r, dtype=np.float64)

    def field(deg: int) -> np.ndarray:
        cx, cy = rng.standard_normal(deg + 1), rng.standard_normal(deg + 1)
        return np.outer(np.polyval(cx, xs), np.polyval(cy, ys))[None, None]

    exact = field(order)
    padded = B.pad_extrapolate(exact[..., t:t + 9, l:l + 8], pw, order)
    np.testing.assert_allclose(padded, exact, rtol=0, atol=1e-9 * np.abs(exact).max())
    higher = field(order + 1)
    padded = B.pad_extrapolate(higher[..., t:t + 9, l:l + 8], pw, order)
    assert np.abs(padded - higher).max() > 1e-3 * np.abs(higher).max()


def test_linear_extrapolation_by_hand():
    row = np.array([5.0, 2.0, 4.0, 1.0]).reshape(1, 1, 1, 4)
    # linear through (5, 2) going left: 8, 11; through (4, 1) going right: -2
    np.testing.assert_allclose(B.pad_extrapolate(row, ((0, 0), (2, 1)), 1)[0, 0, 0], [11, 8, 5, 2, 4, 1, -2])


def test_valid_conv_matches_torch():
    x, w, b = _image((2, 3, 9, 8)), _image((4, 3, 3, 5), 1), _image((4,), 2)
    expect = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(B.valid_conv(x, w, b), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_registry_paddings_match_torch_conv(k):
    x, w, b = _image((1, 2, 10, 11)), _image((3, 2, k, k), 3), _image((3,), 4)
    methods = B.boundary_methods()
    before, after = (k - 1) // 2, k // 2
    torch_modes = {"zero": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}
    for name, mode in torch_modes.items():
        padded = F.pad(torch.from_numpy(x), (before, after, before, after), mode=mode)
        expect = F.conv2d(padded, torch.from_numpy(w), torch.from_numpy(b)).numpy()
        np.testing.assert_allclose(methods[name](x, w, b), expect, rtol=1e-12, atol=1e-12, err_msg=name)
    for name, f in methods.items():
        assert f(x, w, b, rng=np.random.default_rng(0)).shape == (1, 3, 10, 11), name


def test_partial_conv_interior_is_zero_padded_conv_and_corners_are_reweighted():
    x, w, b = _image((1, 1, 6, 7)), _image((2, 1, 3, 3), 5), np.array([0.5, -1.0])
    out = B.partial_conv(x, w, b)
    zero = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()
    np.testing.assert_allclose(out[..., 1:-1, 1:-1], zero[..., 1:-1, 1:-1], rtol=1e-12, atol=1e-12)
    # Top-left corner: the 3x3 window holds 4 image samples, so the sum is scaled by 9/4.
    corner = 9 / 4 * (w[:, 0, 1:, 1:] * x[0, 0, :2, :2]).sum(axis=(1, 2)) + b
    np.testing.assert_allclose(out[0, :, 0, 0], corner, rtol=1e-12)
    # Top edge, column 3: 6 image samples, scale 9/6.
    edge = 9 / 6 * (w[:, 0, 1:, :] * x[0, 0, :2, 2:5]).sum(axis=(1, 2)) + b
    np.testing.assert_allclose(out[0, :, 0, 3], edge, rtol=1e-12)


def test_random_padding_follows_the_edge_band_statistics():
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(2.0, 0.5, (1, 1, 3, 4000)), rng.normal(-1.0, 3.0, (1, 1, 5, 4000))], axis=2)
    padded = B.pad_random(x, ((2, 0), (0, 0)), band=3, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(padded[..., 2:, :], x)
    ghosts = padded[0, 0, :2]
    band = x[0, 0, :3]
    assert abs(ghosts.mean() - band.mean()) < 0.03
    assert abs(ghosts.std() - band.std()) < 0.03
    again = B.pad_random(x, ((2, 0), (0, 0)), band=3, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(padded, again)


@pytest.mark.parametrize("shape, k, rows, cols", [((6, 7), 3, [0, 5], [0, 6]), ((7, 8), 4, [0, 5, 6], [0, 6, 7])])
def test_boundary_ring_is_where_the_window_leaves_the_image(shape, k, rows, cols):
    ring = B.boundary_ring(shape, (k, k))
    expect = np.zeros(shape, dtype=bool)
    expect[rows, :] = True
    expect[:, cols] = True
    np.testing.assert_array_equal(ring, expect)


def test_bad_arguments_are_named():
    x = _image()
    with pytest.raises(TypeError, match="pad_width"):
        B.pad_zero(x, (1, 1))
    with pytest.raises(ValueError, match="pad_width"):
        B.pad_reflect(x, ((1, -1), (0, 0)))
    with pytest.raises(ValueError, match="shape \\(N, C, L\\), \\(N, C, H, W\\) or \\(N, C, D, H, W\\)"):
        B.pad_zero(x[0, 0], ((1, 1), (1, 1)))
    with pytest.raises(TypeError, match="one \\(before, after\\) pair per spatial axis \\(1 here\\)"):
        B.pad_zero(x[0], ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="shape \\(N, C, L\\), \\(N, C, H, W\\)"):
        B.valid_conv(x[0, 0], np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="order"):
        B.pad_extrapolate(x, ((1, 1), (1, 1)), -1)
    with pytest.raises(ValueError, match="band"):
        B.pad_random(x, ((1, 1), (1, 1)), 0)
    with pytest.raises(ValueError, match="weight must have shape"):
        B.valid_conv(x, np.ones((2, 2, 3, 3)))


TORCH_CONV = {1: F.conv1d, 3: F.conv3d}


@pytest.mark.parametrize("dims, shape, k", [(1, (2, 3, 11), (4,)), (3, (1, 2, 6, 7, 5), (3, 2, 3))])
def test_valid_conv_matches_torch_in_1d_and_3d(dims, shape, k):
    x, w, b = _image(shape), _image((4, shape[1], *k), 1), _image((4,), 2)
    expect = TORCH_CONV[dims](torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(B.valid_conv(x, w, b), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dims, shape", [(1, (1, 2, 9)), (3, (1, 1, 6, 7, 8))])
def test_registry_paddings_match_torch_conv_in_1d_and_3d(dims, shape):
    k = 3
    x, w = _image(shape), _image((2, shape[1]) + (k,) * dims, 3)
    torch_modes = {"zero": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}
    methods = B.boundary_methods()
    for name, mode in torch_modes.items():
        padded = F.pad(torch.from_numpy(x), (1, 1) * dims, mode=mode)
        expect = TORCH_CONV[dims](padded, torch.from_numpy(w)).numpy()
        np.testing.assert_allclose(methods[name](x, w), expect, rtol=1e-12, atol=1e-12, err_msg=name)
    for name, f in methods.items():
        assert f(x, w, rng=np.random.default_rng(0)).shape == (1, 2) + shape[2:], name


def test_extrapolation_is_exact_on_a_3d_polynomial_of_its_order():
    """Order 1 (k = 3): ghosts of a function linear in each axis are the function itself."""
    axes = [np.arange(-1, n + 1, dtype=np.float64) for n in (5, 6, 7)]
    grid = np.meshgrid(*axes, indexing="ij")
    full = (1 + 2 * grid[0]) * (3 - grid[1]) * (0.5 + grid[2])
    padded = B.pad_extrapolate(full[None, None, 1:-1, 1:-1, 1:-1], ((1, 1),) * 3, 1)
    np.testing.assert_allclose(padded[0, 0], full, rtol=0, atol=1e-12)


def test_partial_conv_1d_by_hand():
    x, w = np.array([[[1.0, 2.0, 4.0]]]), np.array([[[1.0, 10.0, 100.0]]])
    # Left edge: window (ghost, 1, 2) -> (10*1 + 100*2) * 3/2; right edge: (2, 4, ghost) -> (2 + 40) * 3/2.
    np.testing.assert_allclose(B.partial_conv(x, w)[0, 0], [315.0, 1 + 20 + 400, 63.0])


def test_boundary_ring_3d_is_the_shell():
    ring = B.boundary_ring((4, 5, 6), (3, 3, 3))
    expect = np.ones((4, 5, 6), dtype=bool)
    expect[1:-1, 1:-1, 1:-1] = False
    np.testing.assert_array_equal(ring, expect)
    np.testing.assert_array_equal(B.boundary_ring((6,), (4,)), [True, False, False, False, True, True])
