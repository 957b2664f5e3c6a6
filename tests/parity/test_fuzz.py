"""Bounded hypothesis fuzz of torch-vs-JAX parity (``DIFFCONV_FUZZ_EXAMPLES`` sets its size).

Derandomized in CI and sized by the hypothesis profile of tests/conftest.py (``ci``: derandomized;
``dev``: random examples locally; ``thorough``: 5x the examples)."""

import os

import jax
import pytest

from parity_run import assert_same, run_both

pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
given, settings, st = hypothesis.given, hypothesis.settings, hypothesis.strategies


# DIFFCONV_FUZZ_EXAMPLES=200 pytest tests/parity -k fuzz   runs the long version by hand.
@settings(max_examples=int(os.environ.get("DIFFCONV_FUZZ_EXAMPLES", max(3, 3 * settings.default.max_examples // 100))))
@given(
    nd=st.integers(1, 2), k=st.integers(1, 6), batch=st.integers(1, 2), groups=st.integers(1, 2),
    bias=st.booleans(), edge=st.booleans(), bgrad=st.booleans(), stride=st.integers(1, 3), dilation=st.integers(1, 2),
)
def test_fuzz(nd, k, batch, groups, bias, edge, bgrad, stride, dilation):
    with jax.enable_x64(True):
        got_t, got_j = run_both(nd, k, dtype="float64", batch=batch, groups=groups, bias=bias, edge=edge,
                                 bgrad=bgrad, stride=stride, dilation=dilation, seed=k + 10 * nd)
    assert_same(got_t, got_j, 1e-10)
