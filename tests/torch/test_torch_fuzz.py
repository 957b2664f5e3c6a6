"""Bounded property-based fuzz of polynomial exactness (more examples: DIFFCONV_FUZZ_EXAMPLES=500 or
HYPOTHESIS_PROFILE=thorough). Derandomized in CI by the ``ci`` profile of tests/conftest.py."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from test_torch_polynomial import check_polynomial_exactness  # noqa: E402


BOTH_PADDINGS = False     # random shapes, on the default padding only (conftest.ghost_kernels)

# 25 under the default profiles (ci, dev), scaled with the profile (thorough: 125)
EXAMPLES = int(os.environ.get("DIFFCONV_FUZZ_EXAMPLES", 25 * settings.default.max_examples // 100))


@st.composite
def configurations(draw):
    nd = draw(st.integers(1, 3))
    kmax = (9, 6, 4)[nd - 1]                       # keeps the float64 rounding bound (and the runtime) small
    ks = tuple(draw(st.integers(1, kmax)) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    lengths = tuple(max(k * d, 1) + draw(st.integers(0, 3)) for k, d in zip(ks, dil))
    groups = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return nd, ks, lengths, stride, dil, groups, seed


@settings(max_examples=EXAMPLES)   # deadline, health checks, derandomize: from the profile
@given(configurations())
def test_fuzz_polynomial_exactness(config):
    nd, ks, lengths, stride, dil, groups, seed = config
    check_polynomial_exactness(nd, ks, lengths, stride, dil, groups, seed=seed, cin=1, cout=1)
