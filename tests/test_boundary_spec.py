"""The framework-neutral boundary rules (:mod:`diffconv.boundary`) against the oracle: every
mode, order, dilation and short axis; the default equal to the paper's ghost weights; errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import oracle
from diffconv import boundary_from_well
from diffconv.boundary import ghost_operator, parse_boundary, parse_order
from diffconv.coefficients import ghost_weights

MODES = ("diff", "zeros", "reflect", "replicate", "circular")


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 17])
@pytest.mark.parametrize("k, d", [(2, 1), (3, 1), (4, 2), (5, 1), (3, 3), (7, 1)])
@pytest.mark.parametrize("low, high", [m for m in itertools.product(MODES, MODES)
                                       if (m[0] == "circular") == (m[1] == "circular")])
def test_every_side_rule_is_the_oracle_padding_exactly(length, k, d, low, high):
    before, after = oracle.same_widths(k, d)
    for order in sorted({None, 0, 1, k - 1} & set(range(k)) | {None}, key=str):
        try:
            op = ghost_operator(length, k, d, before, after, (low, high), order)
        except ValueError as e:            # reflect/circular need enough samples, as torch's modes do
            assert ("reflect" in (low, high) and length <= max(before, after)) or \
                   ("circular" in (low, high) and length < max(before, after)), e
            continue
        want = np.array(oracle.pad_matrix(length, before, after, (low, high), k, d, order), dtype=float)
        np.testing.assert_array_equal(op.dense(), want)
        for side, rows in ((False, want[:before]), (True, want[before + length:])):
            copied = [np.flatnonzero(r)[0] if len(np.flatnonzero(r)) == 1 and r.max() == 1.0 else None for r in rows]
            expect = None if not len(rows) or None in copied else np.array(copied)
            got = op.copies(side)
            assert (got is None) == (expect is None) and (got is None or np.array_equal(got, expect)), (side, got, rows)


@pytest.mark.parametrize("k, d, length", [(3, 1, 10), (5, 2, 30), (7, 1, 7), (4, 3, 5), (6, 1, 100)])
def test_default_is_the_papers_ghost_weights_bit_for_bit(k, d, length):
    before, after = oracle.same_widths(k, d)
    op = ghost_operator(length, k, d, before, after)
    g = ghost_weights(k, d, length=length)
    assert np.array_equal(op.low, g.low) and np.array_equal(op.high, g.high)
    assert op.low_start == 0 and op.high_start == length - g.high.shape[1]


def test_order_zero_is_replicate_and_one_is_linear_extrapolation():
    op0 = ghost_operator(9, 5, 1, 2, 2, order=0)
    rep = ghost_operator(9, 5, 1, 2, 2, ("replicate", "replicate"))
    np.testing.assert_array_equal(op0.dense(), rep.dense())
    op1 = ghost_operator(9, 3, 1, 1, 1, order=1)
    x = 2.0 + 0.5 * np.arange(9)
    np.testing.assert_allclose(op1.dense() @ x, 2.0 + 0.5 * np.arange(-1, 10), rtol=0, atol=1e-14)


def test_noise_amplification_of_the_outermost_ghost():
    """The l2 norms quoted in the docs: 4.4, 67 and 1,325 for k = 3, 5, 7 (order k - 1)."""
    for k, want in ((3, 4.36), (5, 67.0), (7, 1325.0)):
        op = ghost_operator(20, k, 1, k // 2, k // 2)
        assert abs(np.linalg.norm(op.low[0]) - want) / want < 0.01
        q = k // 2              # linear extrapolation, q steps out: (q + 1) * u0 - q * u1
        assert np.linalg.norm(ghost_operator(20, k, 1, q, q, order=1).low[0]) == pytest.approx(np.hypot(q + 1, q))


@pytest.mark.parametrize("spec, nd, want", [
    ("zeros", 2, (("zeros", "zeros"),) * 2),
    (["diff", ("reflect", "replicate")], 2, (("diff", "diff"), ("reflect", "replicate"))),
    ((("circular", "circular"),), 1, (("circular", "circular"),)),
])
def test_parse_boundary(spec, nd, want):
    assert parse_boundary(spec, nd) == want


@pytest.mark.parametrize("spec, nd, match", [
    ("mirror", 2, r"boundary must be one of \['diff', 'zeros', 'reflect', 'replicate', 'circular'\], got 'mirror'"),
    (["diff"], 2, r"one entry per spatial axis \(2 for a 2-d convolution\), got 1 entries"),
    ([("circular", "diff")], 1, r"spatial axis 0 is circular on one side only \('circular', 'diff'\)"),
    (["diff", ("zeros",)], 2, r"boundary\[1\] must be a mode or a \(low, high\) pair of modes, got \('zeros',\)"),
    (["diff", ("zeros", "wrap")], 2, r"boundary\[1\]\[1\] must be one of .*got 'wrap'"),
])
def test_bad_boundary_specs_are_named(spec, nd, match):
    with pytest.raises(ValueError, match=match):
        parse_boundary(spec, nd)


def test_bad_orders_are_named():
    with pytest.raises(ValueError, match=r"order 3 on spatial axis 1 is out of range: .* degree 0 to 2"):
        parse_order(3, 2, [4, 2])
    with pytest.raises(ValueError, match=r"order must be None, an int or one per spatial axis \(2\)"):
        parse_order([1], 2, [2, 2])
    with pytest.raises(TypeError, match="order must contain ints or None"):
        parse_order([True], 1, [2])
    assert parse_order([None, 1], 2, [2, 2]) == (None, 1)


def test_reflect_and_circular_on_too_short_axes_name_the_axis():
    with pytest.raises(ValueError, match=r"'reflect' on spatial axis 1 \(low side\) .* needs at least 3 samples; "
                                         r"the axis has 2"):
        ghost_operator(2, 5, 1, 2, 2, ("reflect", "diff"), None, 1)
    with pytest.raises(ValueError, match=r"'circular' on spatial axis 0 \(low side\) .* needs at least 2 samples; "
                                         r"the axis has 1"):
        ghost_operator(1, 5, 1, 2, 2, ("circular", "circular"))


def test_boundary_from_well():
    class Kind:
        def __init__(self, name):
            self.name = name
    assert boundary_from_well(["WALL", "PERIODIC", Kind("OPEN")]) == ("diff", "circular", "diff")
    with pytest.raises(ValueError, match="boundary condition 'SYMMETRIC' on axis 0"):
        boundary_from_well(["SYMMETRIC"])
