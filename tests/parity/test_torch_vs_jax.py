"""torch and JAX give the same outputs and gradients, through the public APIs only; the inputs
select each torch form, and the test asserts which one ran."""

import numpy as np
import pytest

from parity_run import assert_same, run_both

pytest.importorskip("torch")


# A covering subsample of kernel size 1..7 (odd and even) x groups x bias x edge x switch x batch
# x dims x stride 1..3 x dilation 1..3: every value of every option appears, most pairs too.
GRID = [
    # nd, k, batch, groups, bias, edge, bgrad, stride, dilation
    (1, 1, 1, 1, True, False, True, 1, 1),
    (1, 2, 2, 2, False, True, False, 3, 1),
    (1, 7, 1, 1, True, True, True, 2, 2),
    (1, 6, 2, 2, True, False, False, 1, 3),
    (2, 3, 2, 1, True, True, False, 1, 1),
    (2, 4, 1, 2, False, False, True, 2, 1),
    (2, (5, 2), 2, 1, True, False, True, 3, 2),
    (2, 1, 1, 2, True, True, True, 1, 1),
    (3, 3, 1, 1, True, False, True, 2, 1),
    (3, (2, 3, 1), 2, 2, True, True, False, 1, 1),
]


@pytest.mark.parametrize("nd,k,batch,groups,bias,edge,bgrad,stride,dilation", GRID)
def test_float64_grid(x64, nd, k, batch, groups, bias, edge, bgrad, stride, dilation):
    """Small maps: torch's padded form."""
    got_t, got_j = run_both(nd, k, dtype="float64", batch=batch, groups=groups, bias=bias, edge=edge,
                            bgrad=bgrad, stride=stride, dilation=dilation, form="padded" if max(np.atleast_1d(k)) > 1 else None)
    assert_same(got_t, got_j, 1e-10)


@pytest.mark.parametrize("k,groups,length", [(3, 1, 11), (5, 2, 9), (7, 1, 30)])
def test_float64_1d(x64, k, groups, length):
    """Plain 1-d stride-1 layers with an odd kernel."""
    got_t, got_j = run_both(1, k, dtype="float64", batch=2, groups=groups, bias=True, edge=False, bgrad=True,
                            stride=1, dilation=1, lengths=(length,), form="padded")
    assert_same(got_t, got_j, 1e-10)


@pytest.mark.parametrize("k,groups,lengths,channels", [
    (3, 1, (64, 70), (3, 3)), (5, 2, (72, 64), (3, 2)), (7, 1, (66, 64), (2, 2)), (3, 1, (64, 66), (2, 3)),
])
def test_float64_large_maps(x64, k, groups, lengths, channels):
    """Maps longer than the dense fold's limit on at least one axis (the sparse fold)."""
    got_t, got_j = run_both(2, k, dtype="float64", batch=2, groups=groups, bias=True, edge=False, bgrad=True,
                            stride=1, dilation=1, lengths=lengths, channels=channels, form="padded")
    assert_same(got_t, got_j, 1e-10)


@pytest.mark.parametrize("nd,k,edge,bgrad,stride", [(1, 5, True, False, 2), (2, 3, False, True, 1), (2, 4, True, True, 2)])
def test_float32(nd, k, edge, bgrad, stride):
    got_t, got_j = run_both(nd, k, dtype="float32", batch=2, groups=1, bias=True, edge=edge, bgrad=bgrad,
                            stride=stride, dilation=1)
    assert_same(got_t, got_j, 1e-5)




@pytest.mark.parametrize("nd,k,lengths,stride,dilation,edge,bgrad", [
    (1, 3, (1,), 1, 1, False, True), (1, 5, (3,), 2, 1, True, False), (1, 4, (5,), 1, 2, False, True),
    (1, 3, (2,), 1, 3, True, True), (2, 3, (1, 2), 1, 1, True, True), (2, (5, 3), (4, 2), 1, 1, False, False),
    (2, 7, (3, 6), 2, 1, False, True), (3, 3, (1, 2, 3), 1, 1, True, True),
])
def test_float64_short_axes(x64, nd, k, lengths, stride, dilation, edge, bgrad):
    """Axes shorter than k*d (lower-order ghosts, docs/design.md): values and gradients agree."""
    got_t, got_j = run_both(nd, k, dtype="float64", batch=2, groups=1, bias=True, edge=edge, bgrad=bgrad,
                            stride=stride, dilation=dilation, lengths=lengths, form="padded")
    assert_same(got_t, got_j, 1e-10)
