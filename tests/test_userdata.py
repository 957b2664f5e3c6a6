"""Loading a user's arrays: accepted layouts, casts, and one clear error per kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest

from diffconv.lab.userdata import DataError, UserArray, as_samples, layouts, load_arrays, require_extent


@pytest.mark.parametrize(
    "shape, ndim, expect",
    [
        ((5, 6), 2, (1, 1, 5, 6)),
        ((3, 5, 6), 2, (3, 1, 5, 6)),
        ((3, 2, 5, 6), 2, (3, 2, 5, 6)),
        ((7,), 1, (1, 1, 7)),
        ((4, 7), 1, (4, 1, 7)),
        ((4, 3, 5, 6, 7), 3, (4, 3, 5, 6, 7)),
    ],
)
def test_layouts_become_samples_by_channels(tmp_path, shape, ndim, expect):
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.save(tmp_path / "field.npy", a)
    (arr,) = load_arrays(tmp_path / "field.npy", ndim)
    assert arr.name == "field" and arr.shape == shape and arr.samples.dtype == np.float64
    assert arr.samples.shape == expect
    np.testing.assert_array_equal(arr.samples.reshape(a.shape), a.astype(np.float64))


def test_integer_and_bool_arrays_are_cast(tmp_path):
    np.save(tmp_path / "i.npy", np.arange(12, dtype=np.int16).reshape(3, 4))
    np.testing.assert_array_equal(load_arrays(tmp_path / "i.npy")[0].samples[0, 0], np.arange(12.0).reshape(3, 4))
    assert as_samples(np.eye(3, dtype=bool), "x")[0, 0, 1, 1] == 1.0


def test_npz_arrays_by_key_and_chosen_by_name(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 5, 5)), b=np.ones((5, 5)), c=np.full((1, 3, 4, 4), 2.0))
    arrays = load_arrays(tmp_path / "d.npz")
    assert [a.name for a in arrays] == ["a", "b", "c"]
    assert [a.samples.shape for a in arrays] == [(2, 1, 5, 5), (1, 1, 5, 5), (1, 3, 4, 4)]
    picked = load_arrays(tmp_path / "d.npz", names=["c", "b"])
    assert [a.name for a in picked] == ["c", "b"] and picked[0].samples.max() == 2.0


def _write(tmp_path, kind):
    p = tmp_path / "bad.npy"
    if kind == "text":
        p.write_text("x,y\n1,2\n")
    elif kind == "empty file":
        p.write_bytes(b"")
    elif kind == "truncated":
        np.save(p, np.ones((50, 50)))
        p.write_bytes(p.read_bytes()[:300])
    elif kind == "bad zip":
        p = tmp_path / "bad.npz"
        p.write_bytes(b"PK\x03\x04 not really a zip")
    elif kind == "objects":
        np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "strings":
        np.save(p, np.array([["a", "b"], ["c", "d"]]))
    elif kind == "complex":
        np.save(p, np.ones((4, 4), dtype=complex))
    elif kind == "structured":
        np.save(p, np.zeros((4, 4), dtype=[("u", "f8"), ("v", "f8")]))
    elif kind == "nan":
        a = np.zeros((2, 4, 4))
        a[1, 2, 3], a[0, 0, 1] = np.nan, np.inf
        np.save(p, a)
    elif kind == "rank":
        np.save(p, np.zeros(9))
    elif kind == "empty array":
        np.save(p, np.zeros((0, 4, 4)))
    elif kind == "empty archive":
        p = tmp_path / "bad.npz"
        np.savez(p)
    return p


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", "bad.npy: not a NumPy .npy or .npz array file"),
        ("empty file", "bad.npy: not a NumPy .npy or .npz array file"),
        ("truncated", "bad.npy: not a NumPy .npy or .npz array file"),
        ("bad zip", "bad.npz: not a NumPy .npy or .npz array file"),
        ("objects", "bad.npy: holds Python objects (dtype object), not numbers"),
        ("strings", "array 'bad' has dtype <U1, which cannot be cast to floating point"),
        ("complex", "array 'bad' has complex dtype complex128; save its real part"),
        ("structured", "which cannot be cast to floating point"),
        ("nan", "array 'bad' has 2 non-finite values (NaN or inf), the first at index (0, 0, 1)"),
        ("rank", "array 'bad' has shape (9,); 2-D fields need (H, W), (N, H, W) or (N, C, H, W)"),
        ("empty array", "array 'bad' is empty (shape (0, 4, 4))"),
        ("empty archive", "bad.npz: the archive holds no arrays"),
    ],
)
def test_bad_files_raise_one_line(tmp_path, kind, message):
    with pytest.raises(DataError) as info:
        load_arrays(_write(tmp_path, kind))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_paths_names_and_directories(tmp_path):
    with pytest.raises(DataError, match="nope.npy: no such file"):
        load_arrays(tmp_path / "nope.npy")
    with pytest.raises(DataError, match="is a directory"):
        load_arrays(tmp_path)
    np.savez(tmp_path / "d.npz", u=np.zeros((4, 4)), v=np.zeros((4, 4)))
    with pytest.raises(DataError, match=r"no array 'w' \(the archive holds u, v\)"):
        load_arrays(tmp_path / "d.npz", names=["w"])
    np.save(tmp_path / "one.npy", np.zeros((4, 4)))
    with pytest.raises(DataError, match="array names apply to .npz archives"):
        load_arrays(tmp_path / "one.npy", names=["one"])


def test_layout_text_and_extent():
    assert layouts(1) == "(L,), (N, L) or (N, C, L)"
    assert layouts(3) == "(D, H, W), (N, D, H, W) or (N, C, D, H, W)"
    with pytest.raises(DataError, match=r"shape \(2, 3, 4, 5, 6, 7\); 3-D fields need"):
        as_samples(np.zeros((2, 3, 4, 5, 6, 7)), "array 'x'", 3)
    arrays = [UserArray("x", as_samples(np.zeros((2, 9, 4)), "x"), (2, 9, 4))]
    require_extent(arrays, 4, "a kernel of size 3", "f.npy")
    with pytest.raises(DataError, match=r"f.npy: array 'x' has spatial shape \(9, 4\); a kernel of size 3 needs at "
                                        r"least 5 samples per axis"):
        require_extent(arrays, 5, "a kernel of size 3", "f.npy")
